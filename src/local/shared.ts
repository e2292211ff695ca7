/**
 * Documents shared between replicas through Redis (refresher.ts says how they are used): the
 * last document each replica fetched, and a short claim per key per interval so that one
 * replica asks Core and the others adopt its copy.
 *
 * Keys name the environment by a digest of its server key, never the key. Whoever can write to
 * Redis can put a document here, as they can already forge blocks and limits; a document read
 * back is bounded in size and compiled like one from Core (an unreadable one is refused and the
 * previous one kept), so the worst they can do is serve wrong flags, not crash the gateway.
 */
import { randomUUID } from 'node:crypto'
import type { Redis, Cluster } from 'ioredis'
import type { SharedDocuments, SharedEntry } from './refresher.js'
import { keyDigest } from './outbox.js'

export interface SharedRedis {
  readonly client: Redis | Cluster
  readonly keyPrefix: string
  readonly usable: boolean
  /** the first connection attempt has an outcome (answered, refused, or a probe timed out) */
  readonly firstAttemptSettled: boolean
}

/** A document larger than this in Redis is ignored (Core's documents are KBs to a few MB). */
const MAX_SHARED_BYTES = 32 * 1024 * 1024
/** How long a shared document outlives its last confirmation: long enough to start from during an outage. */
const SHARED_TTL_MS = 7 * 24 * 3600 * 1000
/**
 * A backstop only: the wait for the first connection ends when that attempt has an outcome
 * (usually milliseconds, a connect timeout or one command timeout at worst). A fixed short wait
 * instead made every replica of a busy machine, still connecting after it, ask Core at start.
 */
const FIRST_CONNECT_WAIT_MS = 10_000

export function sharedDocuments (redis: SharedRedis): SharedDocuments {
  const id = randomUUID()
  const docKey = (k: string): string => `${redis.keyPrefix}local:doc:${keyDigest(k)}`
  const claimKey = (k: string): string => `${redis.keyPrefix}local:claim:${keyDigest(k)}`
  const unusable = (): Error => new Error('redis unusable')
  // the first refresh runs as the gateway starts, usually before the connection is ready: wait
  // for it once (bounded), or every replica would ask Core at start
  let first: Promise<void> | undefined = (async () => {
    // the store says usable once its first probe answered, a few ms after the connection is ready;
    // a refused connection or an unanswered probe settles it too (then each replica asks Core)
    for (const t0 = Date.now(); !redis.usable && !redis.firstAttemptSettled && Date.now() - t0 < FIRST_CONNECT_WAIT_MS;) await new Promise((resolve) => setTimeout(resolve, 20))
  })().then(() => { first = undefined })
  const connected = async (): Promise<void> => { if (first !== undefined) await first; if (!redis.usable) throw unusable() }
  return {
    async read (serverKey: string): Promise<SharedEntry | undefined> {
      await connected()
      const buf = await redis.client.getBuffer(docKey(serverKey))
      if (buf === null || buf.length > MAX_SHARED_BYTES) return undefined
      let v: unknown
      try { v = JSON.parse(buf.toString('utf8')) } catch { return undefined }
      const e = v as { raw?: unknown; lastModified?: unknown; confirmedAt?: unknown }
      if (typeof e.raw !== 'string' || typeof e.confirmedAt !== 'number' || !Number.isFinite(e.confirmedAt)) return undefined
      // a claim of confirmation in the future would stop every replica from asking Core
      const confirmedAt = Math.min(e.confirmedAt, Date.now())
      return { raw: Buffer.from(e.raw, 'utf8'), lastModified: typeof e.lastModified === 'string' ? e.lastModified : undefined, confirmedAt }
    },
    async write (serverKey: string, entry: SharedEntry): Promise<void> {
      await connected()
      await redis.client.set(docKey(serverKey), JSON.stringify({ raw: entry.raw.toString('utf8'), lastModified: entry.lastModified, confirmedAt: entry.confirmedAt }), 'PX', SHARED_TTL_MS)
    },
    async claim (serverKey: string, forMs: number): Promise<boolean> {
      await connected()
      // a little under the interval, so the next interval's claim is free again
      const ok = await redis.client.set(claimKey(serverKey), id, 'PX', Math.max(100, Math.floor(forMs * 0.9)), 'NX')
      return ok === 'OK'
    }
  }
}
