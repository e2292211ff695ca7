/** Bucket state in Redis: one EVALSHA of lua.ts deciding every bucket of a request. */
import type { Redis, Cluster } from 'ioredis'
import { decideBuckets, type BucketDecision, type BucketRequest } from './algorithm.js'
import { TOKEN_BUCKET_LUA } from './lua.js'

type ScriptClient = (Redis | Cluster) & {
  flaggateTokenBucket (numKeys: number, ...keysAndArgs: Array<string | number>): Promise<unknown>
}

/** the script's command name on the client; the composition keeps it out of auto-pipelining (store/redis.ts selfBatchedCommands) */
export const TOKEN_BUCKET_SCRIPT = 'flaggateTokenBucket'
const scriptDefined = new WeakSet<object>()

function withScript (client: Redis | Cluster): ScriptClient {
  if (!scriptDefined.has(client)) {
    client.defineCommand(TOKEN_BUCKET_SCRIPT, { lua: TOKEN_BUCKET_LUA })
    scriptDefined.add(client)
  }
  return client as ScriptClient
}

export interface BucketsDecision { allowed: boolean; limits: BucketDecision[] }

/**
 * The answers of `count` requests in a row from the script's reply (the instant and each
 * bucket's TAT before the call): decideBuckets replays what the script did, on the same doubles.
 */
function replay (reply: unknown, requests: readonly BucketRequest[], count: number): BucketsDecision[] {
  const n = requests.length
  if (!Array.isArray(reply) || reply.length < 1 || reply.length > n + 1 || typeof reply[0] !== 'string') {
    throw new Error(`unexpected token-bucket script reply ${Array.isArray(reply) ? `of length ${reply.length}` : typeof reply}`)
  }
  const now = Number(reply[0])
  // Lua drops trailing nils from a reply: a missing entry is a bucket without a key
  const tats = new Array<number | undefined>(n)
  for (let i = 0; i < n; i++) {
    const v: unknown = reply[i + 1]
    // what Lua's tonumber() reads as no number (a value someone else wrote) is no bucket there too
    const tat = typeof v === 'string' ? Number(v) : NaN
    tats[i] = Number.isNaN(tat) ? undefined : tat
  }
  const commit = (i: number, tat: number): void => { tats[i] = tat }
  const out = new Array<BucketsDecision>(count)
  for (let r = 0; r < count; r++) out[r] = decideBuckets(now, requests, tats, commit)
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
  return replay(reply, requests, count)
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
