/**
 * Purges on every replica (within one second). The replica that receives the purge
 * (admin API, CLI, webhook) applies it at once, then publishes it on `<keyPrefix>purge`; every other
 * replica applies it when the message arrives, which on a healthy Redis is milliseconds.
 *
 * Pub/sub delivers only to connected subscribers, so two gaps are closed here:
 * - a publish that fails (Redis down) is retried every second for a while, since a late purge
 *   still beats a missed one;
 * - a replica whose subscription dropped may have missed purges meanwhile, so when it is
 *   subscribed again it drops its whole cache (one upstream request per key follows, no more).
 */
import { loggableError } from '../shared/redact.js'
import { randomUUID } from 'node:crypto'
import type { Redis, Cluster } from 'ioredis'
import type { DocumentCache } from './core.js'
import type { PurgeTarget } from './document.js'
import { keyDigestOf } from './purge-target.js'
import { redactKey } from '../shared/redact.js'

/** What the bus needs from `src/store/redis.ts`'s RedisStore. */
export interface PurgeBusRedis {
  readonly client: Redis | Cluster
  readonly keyPrefix: string
  readonly usable: boolean
  createSubscriber (): Redis | Cluster
}

export interface PurgeLogger {
  info (obj: object, msg: string): void
  warn (obj: object, msg: string): void
}

export interface PurgeBusOptions {
  cache: DocumentCache
  /** omit for a single in-memory replica */
  redis?: PurgeBusRedis
  logger: PurgeLogger
  /** how long a failed publish keeps being retried */
  retryForMs?: number
}

/**
 * On the wire a key purge names the key by its digest (`{keyDigest}`), never in clear: whoever
 * can read Redis must not learn server keys from it (bucket keys are hashed for the same reason).
 * v2; v1 messages (which carried `{key}`) from replicas not yet upgraded are still applied.
 */
interface PurgeMessage { v: 1 | 2; from: string; target: PurgeTarget }

const RETRY_EVERY_MS = 1000
const MAX_PENDING = 100

function isPurgeTarget (t: unknown): t is PurgeTarget {
  if (typeof t !== 'object' || t === null) return false
  const o = t as Record<string, unknown>
  return o.all === true || typeof o.key === 'string' || typeof o.keyDigest === 'string' || Number.isInteger(o.envId) || Number.isInteger(o.projectId)
}

export class PurgeBus {
  readonly channel: string | undefined
  readonly #cache: DocumentCache
  readonly #redis: PurgeBusRedis | undefined
  readonly #log: PurgeLogger
  readonly #id = randomUUID()
  readonly #retryForMs: number
  #subscriber: Redis | Cluster | undefined
  #pending: Array<{ message: string; until: number }> = []
  #timer: NodeJS.Timeout | undefined
  #subscribedOnce = false
  #closed = false

  constructor (opts: PurgeBusOptions) {
    this.#cache = opts.cache
    this.#redis = opts.redis
    this.#log = opts.logger
    this.#retryForMs = opts.retryForMs ?? 60_000
    this.channel = opts.redis === undefined ? undefined : `${opts.redis.keyPrefix}purge`
  }

  /** Subscribes to the other replicas' purges; resolves at once (the subscription completes in the background). */
  start (): void {
    if (this.#redis === undefined || this.#subscriber !== undefined) return
    const sub = this.#subscriber = this.#redis.createSubscriber()
    const channel = this.channel!
    sub.on('message', (ch: string, raw: string) => { if (ch === channel && !this.#closed) this.#receive(raw) })
    // ioredis resubscribes by itself after a reconnect; 'ready' tells us that happened
    sub.on('ready', () => {
      if (this.#subscribedOnce && !this.#closed) {
        const n = this.#cache.purge({ all: true })
        this.#log.warn({ purged: n }, 'cache purge subscription was interrupted: dropped the whole cache, purges may have been missed')
      }
    })
    sub.subscribe(channel).then(() => { this.#subscribedOnce = true }, (err: unknown) => {
      this.#log.warn({ err: loggableError(err), channel }, 'cache purge subscription failed; purges from other replicas will not arrive until it reconnects')
    })
  }

  /** Purges here at once and tells the other replicas; returns what this replica dropped. */
  purge (target: PurgeTarget): number {
    const n = this.#cache.purge(target)
    if (this.#redis !== undefined) {
      const wire: PurgeTarget = 'key' in target ? { keyDigest: keyDigestOf(target.key) } : target
      this.#publish(JSON.stringify({ v: 2, from: this.#id, target: wire } satisfies PurgeMessage), Date.now() + this.#retryForMs)
    }
    return n
  }

  async close (): Promise<void> {
    this.#closed = true
    if (this.#timer !== undefined) clearTimeout(this.#timer)
    this.#pending = []
    // No UNSUBSCRIBE: on a subscriber connection it waits in the offline queue while Redis is
    // down, which would hang shutdown. The RedisStore quits the connection, bounded, on close.
  }

  #receive (raw: string): void {
    let msg: Partial<PurgeMessage>
    try { msg = JSON.parse(raw) as Partial<PurgeMessage> } catch { return }
    if ((msg.v !== 1 && msg.v !== 2) || msg.from === this.#id || !isPurgeTarget(msg.target)) return
    const n = this.#cache.purge(msg.target)
    this.#log.info({ purged: n, target: describeTarget(msg.target) }, 'cache purge from another replica')
  }

  #publish (message: string, until: number): void {
    const redis = this.#redis!
    if (!redis.usable) { this.#queue(message, until); return }
    redis.client.publish(this.channel!, message).catch((err: unknown) => {
      this.#log.warn({ err: loggableError(err) }, 'cache purge not published; retrying')
      this.#queue(message, until)
    })
  }

  #queue (message: string, until: number): void {
    if (this.#closed || until <= Date.now()) return
    this.#pending.push({ message, until })
    if (this.#pending.length > MAX_PENDING) this.#pending.splice(0, this.#pending.length - MAX_PENDING)
    if (this.#timer === undefined) {
      this.#timer = setTimeout(() => { this.#timer = undefined; this.#flush() }, RETRY_EVERY_MS)
      this.#timer.unref()
    }
  }

  #flush (): void {
    const due = this.#pending
    this.#pending = []
    for (const p of due) this.#publish(p.message, p.until)
  }
}

/** A purge target as it may appear in logs: never a key in full. */
export function describeTarget (t: PurgeTarget): Record<string, unknown> {
  if ('key' in t) return { key: redactKey(t.key) }
  return { ...t }
}
