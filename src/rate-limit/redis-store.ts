/** Bucket state in Redis: one EVALSHA of lua.ts deciding every bucket of a request. */
import type { Redis, Cluster } from 'ioredis'
import type { BucketDecision, BucketRequest } from './algorithm.js'
import { TOKEN_BUCKET_LUA } from './lua.js'

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

export interface BucketsDecision { allowed: boolean; limits: BucketDecision[] }

function parseReply (reply: unknown, n: number, count: number): BucketsDecision[] {
  const per = 1 + 4 * n
  if (!Array.isArray(reply) || reply.length !== count * per) throw new Error(`unexpected token-bucket script reply of length ${Array.isArray(reply) ? reply.length : typeof reply}`)
  const out = new Array<BucketsDecision>(count)
  for (let r = 0; r < count; r++) {
    const base = r * per
    const limits = new Array<BucketDecision>(n)
    for (let i = 0; i < n; i++) {
      const o = base + 1 + 4 * i
      limits[i] = { allowed: reply[o] === 1, remaining: Number(reply[o + 1]), retryAfterMs: Number(reply[o + 2]), resetMs: Number(reply[o + 3]) }
    }
    out[r] = { allowed: reply[base] === 1, limits }
  }
  return out
}

/**
 * One round trip deciding all `requests` in Redis. Throws on any Redis error (the caller falls
 * back). `now` is for tests only (see {@link TOKEN_BUCKET_LUA}).
 */
export async function takeRedis (client: Redis | Cluster, keyPrefix: string, requests: readonly BucketRequest[], now?: number): Promise<BucketsDecision> {
  return (await takeRedisBatch(client, keyPrefix, requests, 1, now))[0]!
}

/**
 * `count` requests for the same buckets decided in one round trip, one after the other: the same
 * answers, in order, as `count` calls of {@link takeRedis} at the same instant.
 */
export async function takeRedisBatch (client: Redis | Cluster, keyPrefix: string, requests: readonly BucketRequest[], count: number, now?: number): Promise<BucketsDecision[]> {
  const n = requests.length
  const args = new Array<string | number>(n + 2 + 3 * n)
  for (let i = 0; i < n; i++) args[i] = keyPrefix + requests[i]!.key
  args[n] = now === undefined ? '' : String(now)
  args[n + 1] = String(count)
  for (let i = 0; i < n; i++) {
    const p = requests[i]!.params
    const o = n + 2 + 3 * i
    // String() of a double is its shortest exact form, which Lua's tonumber reads back exactly.
    args[o] = String(p.intervalMs)
    args[o + 1] = String(p.toleranceMs)
    args[o + 2] = p.shadow ? '1' : '0'
  }
  const reply = await withScript(client).flaggateTokenBucket(n, ...args)
  return parseReply(reply, n, count)
}

/** What the limiter needs from the shared Redis connection (src/store/redis.ts provides it). */
export interface LimiterRedisStore {
  readonly client: Redis | Cluster
  readonly keyPrefix: string
  /** the longest a command may take (store.redis.commandTimeout) */
  readonly commandTimeoutMs: number
  /** breaker closed and connection ready: worth sending a command */
  readonly usable: boolean
  readonly healthy: boolean
  /** replicas seen alive the last time Redis answered; at least 1 */
  readonly liveReplicas: number
  /** the command failed or timed out: open the breaker */
  reportFailure (err: unknown): void
}
