/**
 * Purges on every replica (within one second). The replica that receives the purge
 * (admin API, CLI, webhook) applies it at once, then publishes it on `<keyPrefix>purge`; every other
 * replica applies it when the message arrives, which on a healthy Redis is milliseconds.
 *
 * The fleet channel (src/store/fleet-channel.ts) retries a publish that fails (Redis down) for a
 * while, and says when the subscription was interrupted: a replica that may have missed purges
 * then drops its whole cache (one upstream request per key follows, no more).
 */
import { PurgeMessageSchema } from '../store/fleet-messages.js'
import type { DocumentCache } from './core.js'
import type { PurgeTarget } from './document.js'
import { keyDigestOf } from './purge-target.js'
import { redactKey } from '../shared/redact.js'
import type { FleetChannel, FleetTopic } from '../store/fleet-channel.js'
import type { ComponentLogger } from '../shared/logger.js'

/** What the bus needs from `src/store/redis.ts`'s RedisStore: its fleet channel. */
export interface PurgeBusRedis {
  readonly fleet: FleetChannel
}

/** What the bus writes to: the one logger interface (shared/logger.ts). */
export type PurgeLogger = Pick<ComponentLogger, 'info' | 'warn'>

export interface PurgeBusOptions {
  cache: DocumentCache
  /** omit for a single in-memory replica */
  redis?: PurgeBusRedis
  logger: PurgeLogger
  /** another replica's purge, after this replica's cache applied it (local evaluation refreshes its documents on it) */
  onRemote?: (target: PurgeTarget) => void
}

/**
 * On the wire a key purge names the key by its digest (`{keyDigest}`), never in clear: whoever
 * can read Redis must not learn server keys from it (bucket keys are hashed for the same reason).
 * v2; v1 messages (which carried `{key}`) from replicas not yet upgraded are still applied.
 * `from` is the sending replica's fleet channel id (the channel skips this replica's own).
 */
export interface PurgeMessage { v: 1 | 2; from: string; target: PurgeTarget }

function isPurgeTarget (t: unknown): t is PurgeTarget {
  if (typeof t !== 'object' || t === null) return false
  const o = t as Record<string, unknown>
  return o.all === true || typeof o.key === 'string' || typeof o.keyDigest === 'string' || Number.isInteger(o.envId) || Number.isInteger(o.projectId)
}

/** The purge topic's check of a message: the one place a schema of it plugs in. */
export function parsePurgeMessage (raw: unknown): PurgeMessage | undefined {
  // anyone who can write to Redis can publish here: the schema first, before any field is read
  if (!PurgeMessageSchema.safeParse(raw).success) return undefined
  const msg = raw as Partial<PurgeMessage>
  if ((msg.v !== 1 && msg.v !== 2) || typeof msg.from !== 'string' || !isPurgeTarget(msg.target)) return undefined
  return msg as PurgeMessage
}

export class PurgeBus {
  readonly #cache: DocumentCache
  readonly #redis: PurgeBusRedis | undefined
  readonly #log: PurgeLogger
  readonly #onRemote: ((target: PurgeTarget) => void) | undefined
  #topic: FleetTopic | undefined
  #closed = false

  constructor (opts: PurgeBusOptions) {
    this.#cache = opts.cache
    this.#redis = opts.redis
    this.#log = opts.logger
    this.#onRemote = opts.onRemote
  }

  /** the Redis channel purges travel on, `<keyPrefix>purge`; undefined on a single in-memory replica */
  get channel (): string | undefined { return this.#topic?.channel }

  /** Subscribes to the other replicas' purges; resolves at once (the subscription completes in the background). */
  start (): void {
    if (this.#redis === undefined || this.#topic !== undefined) return
    this.#topic = this.#redis.fleet.topic({
      name: 'purge',
      parse: parsePurgeMessage,
      receive: (msg) => {
        if (this.#closed) return
        const n = this.#cache.purge(msg.target)
        this.#log.info({ purged: n, target: describeTarget(msg.target) }, 'cache purge from another replica')
        this.#onRemote?.(msg.target)
      },
      missed: () => {
        if (this.#closed) return
        const n = this.#cache.purge({ all: true })
        this.#log.warn({ purged: n }, 'cache purge subscription was interrupted: dropped the whole cache, purges may have been missed')
      },
      subscribeFailed: 'cache purge subscription failed; purges from other replicas will not arrive until it reconnects'
    })
  }

  /** Purges here at once and tells the other replicas; returns what this replica dropped. */
  purge (target: PurgeTarget): number {
    const n = this.#cache.purge(target)
    if (this.#topic !== undefined) {
      const wire: PurgeTarget = 'key' in target ? { keyDigest: keyDigestOf(target.key) } : target
      this.#topic.publish({ v: 2, target: wire })
    }
    return n
  }

  async close (): Promise<void> {
    this.#closed = true
    this.#topic?.close()
  }
}

/** A purge target as it may appear in logs: never a key in full. */
export function describeTarget (t: PurgeTarget): Record<string, unknown> {
  if ('key' in t) return { key: redactKey(t.key) }
  return { ...t }
}
