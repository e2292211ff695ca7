/**
 * The fleet's limiter and its fallback policy: buckets in Redis while the store is usable, local
 * buckets at each replica's fair share while it is not.
 */
import { bucketParams, type BucketParams, type BucketRequest } from './algorithm.js'
import { MemoryBuckets } from './memory-store.js'
import { takeRedisBatch, type BucketsDecision, type LimiterRedisStore } from './redis-store.js'
import type { RateLimitDecision, RateLimiter, StoreMode } from './limiter.js'
import type { Clock } from '../shared/clock.js'

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

/** At most this many requests of one lane in one script call (the rest take the next call). */
export const MAX_BATCH = 256

interface Waiter {
  readonly requests: readonly BucketRequest[]
  readonly resolve: (d: RateLimitDecision) => void
  /** ms on the limiter's clock when it started waiting */
  readonly since: number
}

/** The requests of one lane waiting for its call in flight; the lane exists while a call is. */
interface Lane { waiting: Waiter[] }

/**
 * The lane of a request: its buckets and their parameters objects. Requests of one lane can be
 * decided in one script call, one after the other.
 */
function laneOf (requests: readonly BucketRequest[]): string {
  let k = ''
  for (const r of requests) k += `${r.key}\u0000${paramsToken(r.params)}\u0000`
  return k
}

// A limit's params are one frozen object per compiled policy, so its identity stands for its
// numbers without formatting them on every request. Equal numbers in another object (after a
// reload) only make another lane, which is always safe.
const tokens = new WeakMap<BucketParams, string>()
let nextToken = 0
function paramsToken (p: BucketParams): string {
  let t = tokens.get(p)
  if (t === undefined) { t = (nextToken++).toString(36); tokens.set(p, t) }
  return t
}

/** The store's one socket, to cork while calls are queued; none for a cluster (a socket per node). */
function corkable (client: LimiterRedisStore['client']): { cork (): void; uncork (): void } | undefined {
  if ((client as { isCluster?: boolean }).isCluster === true) return undefined
  const stream = (client as { stream?: { cork?: unknown; uncork?: unknown } }).stream
  return typeof stream?.cork === 'function' && typeof stream.uncork === 'function' ? stream as { cork (): void; uncork (): void } : undefined
}

/**
 * The fleet's limiter: buckets in Redis; while the store's breaker is open (Redis down, hung, or
 * slower than commandTimeout) each replica decides on local buckets at its fair share, and goes
 * back to Redis as soon as the store's probe succeeds.
 *
 * Coalescing (written by hand; neither ioredis nor rate-limiter-flexible batches by key): a
 * client's requests that arrive while a call for its buckets is in flight wait for it, then go
 * together in the next call (takeRedisBatch), which decides them one after the other exactly as
 * separate calls would. A fleet hammering one key then costs Redis one call per round trip, not
 * one per request; every request still waits at most commandTimeout in all (a batch that would
 * outlast its oldest request's budget is decided locally, as a failed call would be).
 *
 * Calls leave at the end of a turn of the event loop, all lanes' together, in one write to the
 * socket (corked while they are queued): what ioredis' auto-pipelining would give, without the
 * Pipeline object it builds per turn (a few µs per call). The store turns auto-pipelining off for
 * this script on a single connection (store/redis.ts); a cluster keeps it, one socket per node.
 */
export function createRedisLimiter (store: LimiterRedisStore, opts: RedisLimiterOptions = {}): RateLimiter & { readonly fallback: MemoryBuckets } {
  const fallback = new MemoryBuckets({ maxKeys: opts.fallbackMaxKeys, clock: opts.clock })
  const now = opts.clock ?? Date.now
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

  const lanes = new Map<string, Lane>()

  // Lanes whose next call leaves at the end of this turn of the event loop, with every request
  // of the lane that arrived until then (under load, several sockets' worth)
  let outbox: Array<{ lane: string; state: Lane }> = []
  const flush = (): void => {
    const ready = outbox
    outbox = []
    const socket = corkable(store.client)
    socket?.cork()
    try {
      for (const { lane, state } of ready) send(lane, state, state.waiting.length <= MAX_BATCH ? state.waiting.splice(0) : state.waiting.splice(0, MAX_BATCH))
    } finally {
      socket?.uncork()
    }
  }
  const post = (lane: string, state: Lane): void => {
    if (outbox.push({ lane, state }) === 1) setImmediate(flush)
  }

  /** One script call for `batch` (all of one lane); then the lane's next batch, if any. */
  const send = (lane: string, state: Lane, batch: Waiter[]): void => {
    const budgetMs = store.commandTimeoutMs - (now() - batch[0]!.since)
    let settled = false
    let timer: NodeJS.Timeout | undefined
    const settle = (decisions: BucketsDecision[] | undefined, err?: unknown): void => {
      if (settled) return
      settled = true
      if (timer !== undefined) clearTimeout(timer)
      if (decisions !== undefined) {
        for (let i = 0; i < batch.length; i++) batch[i]!.resolve({ allowed: decisions[i]!.allowed, limits: decisions[i]!.limits, source: 'redis' })
      } else {
        if (err !== undefined) { store.reportFailure(err); opts.onFallback?.(err) }
        for (const w of batch) w.resolve(local(w.requests))
      }
      if (state.waiting.length === 0) { lanes.delete(lane); return }
      if (decisions === undefined || !store.usable) {
        // Redis just failed (or its breaker opened): those waiting decide locally, no second wait
        for (const w of state.waiting) w.resolve(local(w.requests))
        state.waiting = []
        lanes.delete(lane)
        return
      }
      post(lane, state)
    }
    // a batch whose oldest request has already waited for the previous call gets only what is
    // left of its budget; ioredis' own commandTimeout bounds the first call of a lane
    if (batch.length > 1 || budgetMs < store.commandTimeoutMs) {
      if (budgetMs <= 0) { settle(undefined); return }
      // a command sent and unanswered for its budget is a timeout like ioredis' own: it opens the
      // breaker, or every decision started meanwhile would go to Redis and pay the wait again
      timer = setTimeout(() => { settle(undefined, new Error(`redis did not answer within commandTimeout (${store.commandTimeoutMs} ms)`)) }, budgetMs)
    }
    takeRedisBatch(store.client, store.keyPrefix, batch[0]!.requests, batch.length).then(
      (d) => { settle(d) },
      // a failure after the budget settled the batch still tells the breaker (idempotent while open)
      (err: unknown) => { if (settled) store.reportFailure(err); else settle(undefined, err) })
  }

  return {
    kind: 'redis',
    get mode (): StoreMode { return store.usable ? 'redis' : 'local-fallback' },
    get healthy () { return store.healthy },
    fallback,
    async decide (requests) {
      if (!store.usable) return local(requests)
      return await new Promise<RateLimitDecision>((resolve) => {
        const lane = laneOf(requests)
        const w: Waiter = { requests, resolve, since: now() }
        const state = lanes.get(lane)
        if (state !== undefined) { state.waiting.push(w); return }
        const fresh: Lane = { waiting: [w] }
        lanes.set(lane, fresh)
        post(lane, fresh)
      })
    },
    decideLocal (requests) {
      return store.usable ? undefined : local(requests)
    },
    async close () { fallback.close() }
  }
}
