/**
 * Token buckets (GCRA), decided in one step for all the limits of a request.
 *
 * Pure: no fastify. The clock, the Redis store and the limits are arguments, so the same
 * arithmetic runs under a test clock (memory) and inside Redis (Lua), and one test table proves
 * both give the same answers.
 *
 * Why GCRA and our own Lua instead of rate-limiter-flexible (LIBRARIES.md section 5): RLF has no
 * token bucket (its limiters are fixed windows), RateLimiterRedis floors durations to whole
 * seconds (so `3/s` with burst 10 cannot be expressed, and a sub-second duration becomes a key
 * that never expires), and one RLF limiter is one key and one round trip: a route with two limits
 * would cost two round trips and could spend a token of the first limit for a request the second
 * one refuses. What no library does here is "several buckets, all-or-nothing, one round trip",
 * so that is the only part written by hand (about 40 lines of Lua mirrored by the same lines of
 * TypeScript); ioredis `defineCommand` gives EVALSHA with a transparent NOSCRIPT fallback and
 * lru-cache bounds the in-memory state.
 *
 * GCRA in one paragraph: a bucket is one number, its theoretical arrival time (TAT). With
 * interval `T = 1000 / rate` ms per token and tolerance `tau = burst * T`, the bucket holds
 * `(now + tau - TAT) / T` tokens (TAT ≤ now means full). Taking one token moves TAT to
 * `max(TAT, now) + T`; it is allowed when the new TAT is at most `now + tau`. A full bucket and a
 * missing bucket are the same thing, so a bucket's state can be dropped (Redis PEXPIRE, LRU TTL)
 * exactly when it is full again.
 */
import { LRUCache } from 'lru-cache'
import type { Redis, Cluster } from 'ioredis'
import { effectiveLimits, type CompiledLimit, type CompiledRoute, type Policy } from '../policy/compile.js'

/** Milliseconds since the epoch (or any monotonic origin, as long as one store uses one clock). */
export type Clock = () => number

/** A limit's numbers as the bucket arithmetic needs them, computed once per limit. */
export interface BucketParams {
  /** ms per token: `1000 / ratePerSec` */
  readonly intervalMs: number
  /** `burst * intervalMs`: how far TAT may run ahead of now */
  readonly toleranceMs: number
  readonly burst: number
  readonly ratePerSec: number
  /** counted, never refuses the request and never stops other limits from spending */
  readonly shadow: boolean
}

export function bucketParams (ratePerSec: number, burst: number, shadow = false): BucketParams {
  if (!(ratePerSec > 0) || !Number.isFinite(ratePerSec)) throw new Error(`rate must be a positive number of tokens per second, got ${ratePerSec}`)
  if (!(burst >= 1)) throw new Error(`burst must be at least 1, got ${burst}`)
  const intervalMs = 1000 / ratePerSec
  return Object.freeze({ intervalMs, toleranceMs: burst * intervalMs, burst, ratePerSec, shadow })
}

export interface BucketRequest {
  /** the bucket's key, without the store's prefix */
  readonly key: string
  readonly params: BucketParams
}

/** One limit's answer. */
export interface BucketDecision {
  /** this limit alone would let the request through (for a shadow limit: it would not refuse) */
  readonly allowed: boolean
  /** whole tokens left after this request */
  readonly remaining: number
  /** ms until one token exists (rounded up); 0 when allowed */
  readonly retryAfterMs: number
  /** ms until the bucket is full again (rounded up) */
  readonly resetMs: number
}

export type StoreMode = 'memory' | 'redis' | 'local-fallback'

/** The answer for all the limits of one request, in the order they were asked. */
export interface RateLimitDecision {
  /** every non-shadow limit allowed it; tokens were spent only in that case */
  readonly allowed: boolean
  readonly limits: readonly BucketDecision[]
  /** which state decided: `local-fallback` while Redis is unusable */
  readonly source: StoreMode
}

/**
 * Slack for float comparisons, in ms. Epoch milliseconds around 1.7e12 have an ulp of about
 * 0.00024 ms, so exact equality is meaningless; 1 µs is far below anything a client can observe.
 */
const EPS_MS = 0.001

/**
 * The decision for one request over several buckets, given their current TATs (undefined = full).
 * Writes the new TATs through `commit` only when the request is allowed. This function and the
 * Lua script below are the same algorithm line by line; change both or neither.
 */
function decideBuckets (
  now: number,
  requests: readonly BucketRequest[],
  tats: ReadonlyArray<number | undefined>,
  commit: (index: number, tat: number, ttlMs: number) => void
): { allowed: boolean; limits: BucketDecision[] } {
  const n = requests.length
  const current = new Array<number>(n)
  const next = new Array<number>(n)
  const conforming = new Array<boolean>(n)
  let allowed = true
  for (let i = 0; i < n; i++) {
    const p = requests[i]!.params
    const stored = tats[i]
    const tat = stored === undefined || stored < now ? now : stored
    const newTat = tat + p.intervalMs
    current[i] = tat
    next[i] = newTat
    conforming[i] = newTat - p.toleranceMs - now <= EPS_MS
    if (!conforming[i] && !p.shadow) allowed = false
  }
  const limits = new Array<BucketDecision>(n)
  for (let i = 0; i < n; i++) {
    const p = requests[i]!.params
    // All-or-nothing: a request refused by one limit spends nothing anywhere, so a client that
    // is over its per-instance limit does not also drain its fleet-wide bucket.
    const spend = allowed && conforming[i]!
    const tat = spend ? next[i]! : current[i]!
    const remaining = Math.max(0, Math.floor((now + p.toleranceMs - tat + EPS_MS) / p.intervalMs))
    const resetMs = Math.ceil(tat - now)
    const retryAfterMs = conforming[i]! ? 0 : Math.ceil(next[i]! - p.toleranceMs - now)
    if (spend) commit(i, tat, resetMs)
    limits[i] = { allowed: conforming[i]!, remaining, retryAfterMs, resetMs }
  }
  return { allowed, limits }
}

/**
 * The Redis side of {@link decideBuckets}: one EVALSHA for all the buckets of a request.
 *
 * Time comes from Redis `TIME`, not from the caller: every replica then measures every bucket
 * on the same clock, so a replica whose clock is 2 s ahead cannot refill buckets 2 s early (with
 * caller time, skew between replicas turns directly into extra tokens or false refusals). In a
 * cluster a bucket always lives on one node, so it still sees one clock. Redis ≥ 5 replicates
 * scripts by effects, which is what makes writing after TIME legal. `ARGV[1]` may carry an
 * explicit time: only the tests use it, to run the memory store's exact table against Lua.
 *
 * TATs are stored with `%.17g`, which round-trips a double exactly, so Lua and JavaScript compute
 * on bit-identical numbers. Each key expires (PX) when its bucket is full again.
 *
 * KEYS: the buckets. ARGV: now-or-empty, then per bucket: intervalMs, toleranceMs, shadow (0/1).
 * Reply: [allowed, then per bucket: allowed, remaining, retryAfterMs, resetMs].
 */
export const TOKEN_BUCKET_LUA = `
if redis.replicate_commands then pcall(redis.replicate_commands) end
local now = tonumber(ARGV[1])
-- A caller's clock (tests) runs apart from Redis' real-time expiry; a key kept longer decides
-- exactly as an expired one (a past TAT reads as a full bucket), so keep it a minute more.
local linger = 0
if now then linger = 60000 end
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
end
local eps = ${EPS_MS}
local n = #KEYS
local cur, nxt, conf, T, tau, shadow = {}, {}, {}, {}, {}, {}
local allowed = true
for i = 1, n do
  T[i] = tonumber(ARGV[3 * i - 1])
  tau[i] = tonumber(ARGV[3 * i])
  shadow[i] = ARGV[3 * i + 1] == '1'
  local tat = tonumber(redis.call('GET', KEYS[i]))
  if tat == nil or tat < now then tat = now end
  cur[i] = tat
  nxt[i] = tat + T[i]
  conf[i] = nxt[i] - tau[i] - now <= eps
  if not conf[i] and not shadow[i] then allowed = false end
end
local out = { allowed and 1 or 0 }
for i = 1, n do
  local spend = allowed and conf[i]
  local tat = cur[i]
  if spend then tat = nxt[i] end
  local remaining = math.max(0, math.floor((now + tau[i] - tat + eps) / T[i]))
  local reset = math.ceil(tat - now)
  local retry = 0
  if not conf[i] then retry = math.ceil(nxt[i] - tau[i] - now) end
  if spend then redis.call('SET', KEYS[i], string.format('%.17g', tat), 'PX', reset + linger) end
  out[#out + 1] = conf[i] and 1 or 0
  out[#out + 1] = remaining
  out[#out + 1] = retry
  out[#out + 1] = reset
end
return out
`

const READ_STALE = { allowStale: true, noDeleteOnStaleGet: true } as const

/** Bounded in-memory buckets: the whole state of a single instance, and the Redis fallback. */
export class MemoryBuckets {
  readonly #clock: Clock
  readonly #cache: LRUCache<string, number>
  #purgeTimer: NodeJS.Timeout | undefined

  constructor (opts: { maxKeys?: number; clock?: Clock; purgeIntervalMs?: number } = {}) {
    this.#clock = opts.clock ?? Date.now
    const clock = this.#clock
    this.#cache = new LRUCache<string, number>({
      // `max` bounds memory whatever the traffic; evicting a half-empty bucket only ever makes
      // the limiter more lenient for that one client, never refuses a legitimate request.
      max: opts.maxKeys ?? DEFAULT_MAX_KEYS,
      // The TTL drops a bucket once it is full again (it is then equivalent to no entry).
      // Same clock as the arithmetic, and no cached "now" (ttlResolution 0), so an entry never
      // outlives the moment its bucket is full by the cache's own reckoning.
      perf: { now: clock },
      ttlResolution: 0,
      ttlAutopurge: false
    })
    // Expired entries would otherwise sit until LRU eviction reaches them; a sweep every few
    // seconds keeps the map close to the set of buckets that are really partly spent.
    const purgeMs = opts.purgeIntervalMs ?? 10_000
    if (purgeMs > 0) {
      this.#purgeTimer = setInterval(() => { this.#cache.purgeStale() }, purgeMs)
      this.#purgeTimer.unref()
    }
  }

  /** Decides one request; synchronous, never throws. */
  take (requests: readonly BucketRequest[], now = this.#clock()): { allowed: boolean; limits: BucketDecision[] } {
    const cache = this.#cache
    const tats = new Array<number | undefined>(requests.length)
    // A stale TAT (bucket full again) decides exactly like a missing one (decideBuckets clamps
    // it to now), so it is read as is and left for the periodic sweep. Deleting on read is
    // costly here: when lru-cache drops its last entry it clear()s, filling arrays of `max`
    // slots, which with one busy client happened on every request.
    for (let i = 0; i < requests.length; i++) tats[i] = cache.get(requests[i]!.key, READ_STALE)
    return decideBuckets(now, requests, tats, (i, tat, ttlMs) => { cache.set(requests[i]!.key, tat, { ttl: ttlMs }) })
  }

  /** Number of buckets held (including ones that expired since the last sweep). */
  get size (): number { return this.#cache.size }
  get maxKeys (): number { return this.#cache.max }

  purgeStale (): void { this.#cache.purgeStale() }

  clear (): void { this.#cache.clear() }

  close (): void {
    if (this.#purgeTimer !== undefined) clearInterval(this.#purgeTimer)
    this.#purgeTimer = undefined
  }
}

/**
 * Enough buckets for every client that is mid-burst at once on a busy instance (a bucket that
 * is full again needs no entry, and one spent token refills in `1 / rate` seconds). A bucket costs
 * about 250 bytes of heap with the LRU's bookkeeping (bench/ratelimit.ts), so this caps the
 * limiter's state near 50 MB whatever the traffic.
 */
export const DEFAULT_MAX_KEYS = 200_000

type ScriptClient = (Redis | Cluster) & {
  flaggateTokenBucket (numKeys: number, ...keysAndArgs: Array<string | number>): Promise<unknown>
}

const SCRIPT_NAME = 'flaggateTokenBucket'
const scriptDefined = new WeakSet<object>()

function withScript (client: Redis | Cluster): ScriptClient {
  if (!scriptDefined.has(client)) {
    client.defineCommand(SCRIPT_NAME, { lua: TOKEN_BUCKET_LUA })
    scriptDefined.add(client)
  }
  return client as ScriptClient
}

function parseReply (reply: unknown, n: number): { allowed: boolean; limits: BucketDecision[] } {
  if (!Array.isArray(reply) || reply.length !== 1 + 4 * n) throw new Error(`unexpected token-bucket script reply of length ${Array.isArray(reply) ? reply.length : typeof reply}`)
  const limits = new Array<BucketDecision>(n)
  for (let i = 0; i < n; i++) {
    const o = 1 + 4 * i
    limits[i] = { allowed: reply[o] === 1, remaining: Number(reply[o + 1]), retryAfterMs: Number(reply[o + 2]), resetMs: Number(reply[o + 3]) }
  }
  return { allowed: reply[0] === 1, limits }
}

/**
 * One round trip deciding all `requests` in Redis. Throws on any Redis error (the caller falls
 * back). `now` is for tests only (see {@link TOKEN_BUCKET_LUA}).
 */
export async function takeRedis (client: Redis | Cluster, keyPrefix: string, requests: readonly BucketRequest[], now?: number): Promise<{ allowed: boolean; limits: BucketDecision[] }> {
  const n = requests.length
  const args = new Array<string | number>(n + 1 + 3 * n)
  for (let i = 0; i < n; i++) args[i] = keyPrefix + requests[i]!.key
  args[n] = now === undefined ? '' : String(now)
  for (let i = 0; i < n; i++) {
    const p = requests[i]!.params
    const o = n + 1 + 3 * i
    // String() of a double is its shortest exact form, which Lua's tonumber reads back exactly.
    args[o] = String(p.intervalMs)
    args[o + 1] = String(p.toleranceMs)
    args[o + 2] = p.shadow ? '1' : '0'
  }
  const reply = await withScript(client).flaggateTokenBucket(n, ...args)
  return parseReply(reply, n)
}

/** What the limiter needs from the shared Redis connection (src/store/redis.ts provides it). */
export interface LimiterRedisStore {
  readonly client: Redis | Cluster
  readonly keyPrefix: string
  /** breaker closed and connection ready: worth sending a command */
  readonly usable: boolean
  readonly healthy: boolean
  /** replicas seen alive the last time Redis answered; at least 1 */
  readonly liveReplicas: number
  /** the command failed or timed out: open the breaker */
  reportFailure (err: unknown): void
}

export interface RateLimiter {
  /** Decides all the limits of one request at once. Never throws, never waits longer than the store's command timeout. */
  decide (requests: readonly BucketRequest[]): Promise<RateLimitDecision>
  /**
   * The decision without a promise when it needs no I/O (memory store, or Redis fallback), so
   * the hot path skips the microtask hops; undefined when only `decide` can answer.
   */
  decideLocal (requests: readonly BucketRequest[]): RateLimitDecision | undefined
  readonly kind: 'memory' | 'redis'
  /** `redis`, `local-fallback` (Redis configured but unusable right now) or `memory` */
  readonly mode: StoreMode
  readonly healthy: boolean
  close (): Promise<void>
}

export interface MemoryLimiterOptions { maxKeys?: number; clock?: Clock; purgeIntervalMs?: number }

/** A single instance's limiter: all state in process memory. */
export function createMemoryLimiter (opts: MemoryLimiterOptions = {}): RateLimiter & { readonly buckets: MemoryBuckets } {
  const buckets = new MemoryBuckets(opts)
  return {
    kind: 'memory',
    mode: 'memory',
    healthy: true,
    buckets,
    async decide (requests) {
      const d = buckets.take(requests)
      return { allowed: d.allowed, limits: d.limits, source: 'memory' }
    },
    decideLocal (requests) {
      const d = buckets.take(requests)
      return { allowed: d.allowed, limits: d.limits, source: 'memory' }
    },
    async close () { buckets.close() }
  }
}

/**
 * A replica's fair share of a limit while Redis is unusable: rate and burst divided by the
 * replicas last seen alive. The tolerance `burst * interval` is unchanged by the division (both
 * scale by N), only the interval grows; the burst never drops below one token, or the bucket
 * could never admit anything.
 */
export function fairShare (params: BucketParams, replicas: number): BucketParams {
  if (replicas <= 1) return params
  return bucketParams(params.ratePerSec / replicas, Math.max(1, params.burst / replicas), params.shadow)
}

export interface RedisLimiterOptions {
  /** buckets kept locally while Redis is unusable (same bound as the memory limiter) */
  fallbackMaxKeys?: number
  clock?: Clock
  /** called when a decision had to be taken locally; the store already logs the transition */
  onFallback?: (err: unknown) => void
}

/**
 * The fleet's limiter: buckets in Redis, one EVALSHA per request; while the store's breaker is
 * open (Redis down, hung, or slower than commandTimeout) each replica decides on local buckets at
 * its fair share, and goes back to Redis as soon as the store's probe succeeds.
 */
export function createRedisLimiter (store: LimiterRedisStore, opts: RedisLimiterOptions = {}): RateLimiter & { readonly fallback: MemoryBuckets } {
  const fallback = new MemoryBuckets({ maxKeys: opts.fallbackMaxKeys, clock: opts.clock })
  // Fair-share params per (limit, replica count), so the fallback path allocates nothing per
  // request once warm; the WeakMap follows the policy's frozen limits and dies with a reload.
  const shares = new WeakMap<BucketParams, { replicas: number; params: BucketParams }>()
  const shareOf = (p: BucketParams, replicas: number): BucketParams => {
    const s = shares.get(p)
    if (s !== undefined && s.replicas === replicas) return s.params
    const params = fairShare(p, replicas)
    shares.set(p, { replicas, params })
    return params
  }
  const local = (requests: readonly BucketRequest[]): RateLimitDecision => {
    const replicas = store.liveReplicas
    const scaled = replicas <= 1 ? requests : requests.map((r) => ({ key: r.key, params: shareOf(r.params, replicas) }))
    const d = fallback.take(scaled)
    return { allowed: d.allowed, limits: d.limits, source: 'local-fallback' }
  }
  return {
    kind: 'redis',
    get mode (): StoreMode { return store.usable ? 'redis' : 'local-fallback' },
    get healthy () { return store.healthy },
    fallback,
    async decide (requests) {
      if (store.usable) {
        try {
          const d = await takeRedis(store.client, store.keyPrefix, requests)
          return { allowed: d.allowed, limits: d.limits, source: 'redis' }
        } catch (err) {
          store.reportFailure(err)
          opts.onFallback?.(err)
        }
      }
      return local(requests)
    },
    decideLocal (requests) {
      return store.usable ? undefined : local(requests)
    },
    async close () { fallback.close() }
  }
}

/**
 * For `flaggate explain`: the limits that apply to `envKey` on `route`, one line each, e.g.
 * `environment-document.1: 1/s, burst 10, by environmentKey+ip (override for this key)`.
 */
export function describeLimits (policy: Policy, route: CompiledRoute, envKey: string | undefined): string[] {
  const limits = effectiveLimits(policy, route, envKey)
  if (limits.length === 0) return ['no rate limit on this route']
  const overridden = limits !== route.limits
  return limits.map((l: CompiledLimit) => {
    const by = l.by.map((d) => d === 'environmentKey' && envKey === undefined ? 'environmentKey (absent: ip)' : d).join('+')
    const refill = l.burst / l.ratePerSec
    const parts = [`${l.id}: ${l.rateText}, burst ${l.burst}, by ${by}`, `full again after ${formatSeconds(refill)}`]
    if (l.shadow) parts.push('shadow: counted and logged, never rejects')
    if (overridden) parts.push('override for this key')
    return parts.join('; ')
  })
}

function formatSeconds (s: number): string {
  if (s < 1) return `${Math.round(s * 1000)}ms`
  if (s < 120) return `${Number(s.toFixed(2))}s`
  if (s < 7200) return `${Number((s / 60).toFixed(1))}m`
  return `${Number((s / 3600).toFixed(1))}h`
}
