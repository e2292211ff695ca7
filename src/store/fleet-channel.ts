/**
 * The fleet channel: how one replica tells the others about a change (a cache purge, a block made
 * or lifted), over Redis pub/sub on the shared connection's subscriber. One subscriber connection
 * per replica carries every topic; each topic keeps its own Redis channel, `<keyPrefix><topic>`
 * (`purge`, `blocks`), so replicas of an older release, which subscribe to those names, still hear
 * a newer one and are heard by it.
 *
 * What every topic needs, done here once:
 * - messages of this replica are skipped: each message carries `from`, this channel's id;
 * - a message is handed to the topic's `parse`, the one place its shape is checked (a schema plugs
 *   in there); what does not parse, or does not parse as JSON, is logged once per topic and dropped,
 *   never thrown (anyone who can write to Redis can publish anything);
 * - pub/sub delivers only to connected subscribers, so when a dropped subscription is back
 *   (ioredis resubscribes by itself and says 'ready') each topic hears `missed()` and catches up
 *   its own way (the cache drops everything, blocks reload the hash);
 * - a publish that fails (Redis down) is retried every second for a while with {@link FleetTopic.publish},
 *   since a late message still beats a missed one; {@link FleetTopic.publishNow} lets a caller
 *   that keeps its own queue of pending writes (blocks) see the failure instead.
 */
import { randomUUID } from 'node:crypto'
import type { Redis, Cluster } from 'ioredis'
import { loggableError } from '../shared/redact.js'
import type { ComponentLogger } from '../shared/logger.js'
import { MAX_MESSAGE_BYTES } from './fleet-messages.js'

type FleetLogger = Pick<ComponentLogger, 'info' | 'warn'>

/** What the channel needs from the RedisStore (src/store/redis.ts). */
export interface FleetRedis {
  readonly client: Redis | Cluster
  readonly keyPrefix: string
  readonly usable: boolean
  createSubscriber (): Redis | Cluster
}

export interface FleetTopicOptions<M> {
  /** the Redis channel's suffix after the key prefix: `purge`, `blocks` */
  name: string
  /**
   * Checks one message (already JSON-parsed, `from` still in it) and returns it typed, or
   * undefined when it is not a message of this topic: it is then logged and dropped.
   */
  parse (raw: unknown): M | undefined
  /** a message from another replica */
  receive (message: M): void
  /** the subscription was interrupted and is back: messages may have been missed */
  missed (): void
  /** what to say when the first SUBSCRIBE fails (the topic's own consequence) */
  subscribeFailed?: string
}

export interface FleetTopic {
  readonly channel: string
  /** Publishes now; a failure is retried every second until `retryForMs` after this call. */
  publish (message: object): void
  /** Publishes once; rejects when Redis does not take it (the caller keeps its own retry). */
  publishNow (message: object): Promise<void>
  /** Stops hearing this topic and drops its publishes still waiting for a retry. */
  close (): void
}

const RETRY_EVERY_MS = 1000
const MAX_PENDING = 100

interface Topic {
  readonly options: FleetTopicOptions<unknown>
  readonly channel: string
  subscribedOnce: boolean
  badLogged: boolean
}

export class FleetChannel {
  /** this replica's id in every message it publishes */
  readonly id = randomUUID()
  readonly #redis: FleetRedis
  readonly #log: FleetLogger
  readonly #retryForMs: number
  readonly #topics = new Set<Topic>()
  #subscriber: Redis | Cluster | undefined
  #pending: Array<{ topic: Topic; message: string; until: number }> = []
  #timer: NodeJS.Timeout | undefined
  #closed = false

  constructor (redis: FleetRedis, logger: FleetLogger, opts: { retryForMs?: number } = {}) {
    this.#redis = redis
    this.#log = logger
    this.#retryForMs = opts.retryForMs ?? 60_000
  }

  /** Subscribes to a topic (in the background: this returns at once) and returns how to publish on it. */
  topic<M> (options: FleetTopicOptions<M>): FleetTopic {
    const channel = `${this.#redis.keyPrefix}${options.name}`
    const topic: Topic = { options: options as FleetTopicOptions<unknown>, channel, subscribedOnce: false, badLogged: false }
    this.#topics.add(topic)
    const sub = this.#subscribe()
    sub.subscribe(channel).then(() => { topic.subscribedOnce = true }, (err: unknown) => {
      this.#log.warn({ err: loggableError(err), channel }, options.subscribeFailed ?? `${options.name} subscription failed; messages from other replicas will not arrive until it reconnects`)
    })
    return {
      channel,
      publish: (message) => { this.#publish(topic, this.#stamp(message), Date.now() + this.#retryForMs) },
      publishNow: async (message) => { await this.#redis.client.publish(channel, this.#stamp(message)) },
      close: () => {
        this.#topics.delete(topic)
        this.#pending = this.#pending.filter((p) => p.topic !== topic)
      }
    }
  }

  async close (): Promise<void> {
    this.#closed = true
    if (this.#timer !== undefined) clearTimeout(this.#timer)
    this.#pending = []
    // No UNSUBSCRIBE: on a subscriber connection it waits in the offline queue while Redis is
    // down, which would hang shutdown. The RedisStore quits the connection, bounded, on close.
  }

  #subscribe (): Redis | Cluster {
    if (this.#subscriber !== undefined) return this.#subscriber
    const sub = this.#subscriber = this.#redis.createSubscriber()
    sub.on('message', (channel: string, raw: string) => {
      if (this.#closed) return
      for (const topic of this.#topics) if (topic.channel === channel) this.#receive(topic, raw)
    })
    // ioredis resubscribes by itself after a reconnect; 'ready' tells us that happened
    sub.on('ready', () => {
      if (this.#closed) return
      for (const topic of this.#topics.values()) if (topic.subscribedOnce) topic.options.missed()
    })
    return sub
  }

  /** `{ v, from, ...rest }`: `from` second, as replicas have always written it */
  #stamp (message: object): string {
    const { v, ...rest } = message as { v?: unknown }
    return JSON.stringify({ v, from: this.id, ...rest })
  }

  #receive (topic: Topic, raw: string): void {
    let json: unknown
    // anyone who can write to Redis can publish here: bounded, parsed, then the topic's schema
    try { json = raw.length > MAX_MESSAGE_BYTES ? undefined : JSON.parse(raw) } catch { json = undefined }
    if (typeof json === 'object' && json !== null && (json as { from?: unknown }).from === this.id) return
    let message: unknown
    try { message = json === undefined ? undefined : topic.options.parse(json) } catch { message = undefined }
    if (message === undefined) {
      // once per topic: a writer flooding the channel must not flood the log
      if (!topic.badLogged) this.#log.warn({ channel: topic.channel, bytes: raw.length }, 'ignored a malformed message from Redis')
      topic.badLogged = true
      return
    }
    try {
      topic.options.receive(message)
    } catch (err) {
      this.#log.warn({ err: loggableError(err), channel: topic.channel }, 'a message from another replica could not be applied')
    }
  }

  #publish (topic: Topic, message: string, until: number): void {
    if (!this.#redis.usable) { this.#queue(topic, message, until); return }
    this.#redis.client.publish(topic.channel, message).catch((err: unknown) => {
      this.#log.warn({ err: loggableError(err), channel: topic.channel }, 'fleet message not published; retrying')
      this.#queue(topic, message, until)
    })
  }

  #queue (topic: Topic, message: string, until: number): void {
    if (this.#closed || until <= Date.now() || !this.#topics.has(topic)) return
    this.#pending.push({ topic, message, until })
    if (this.#pending.length > MAX_PENDING) this.#pending.splice(0, this.#pending.length - MAX_PENDING)
    if (this.#timer === undefined) {
      this.#timer = setTimeout(() => { this.#timer = undefined; this.#flush() }, RETRY_EVERY_MS)
      this.#timer.unref()
    }
  }

  #flush (): void {
    const due = this.#pending
    this.#pending = []
    for (const p of due) this.#publish(p.topic, p.message, p.until)
  }
}
