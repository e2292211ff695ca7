/**
 * The gateway's one Redis connection (standalone, Sentinel or Cluster), shared by every capability that
 * keeps fleet-wide state (rate limits, runtime blocks, cache purges over pub/sub).
 *
 * Redis sits on the request path, so it must fail fast and fail once (ioredis queues and retries by default):
 * - `enableOfflineQueue: false`: while disconnected a command fails at once instead of queueing;
 * - `maxRetriesPerRequest: 1` and `commandTimeout` from the policy: a hung server (SIGSTOP,
 *   CLIENT PAUSE) costs at most one timeout, since `connectTimeout` only covers the TCP connect;
 * - a breaker: after one failure nobody sends commands for a backoff, and a background probe
 *   (the heartbeat) decides when Redis is back. So a dead or hung Redis costs the requests in
 *   flight at that moment one timeout, and every later request nothing.
 * Rooms check {@link RedisStore.usable} before a command and call `reportFailure` when one fails;
 * while unusable they use local state.
 *
 * Heartbeats: every replica writes its id into a sorted set scored by Redis `TIME` every second
 * and reads how many ids are fresh. The count, learned while Redis is up, is what each replica
 * divides its limits by while Redis is down.
 */
import { loggableError } from '../shared/redact.js'
import { randomUUID } from 'node:crypto'
import { hostname } from 'node:os'
import { Redis, Cluster, type RedisOptions, type ClusterOptions } from 'ioredis'
import type { RedisData } from '../policy/schema.js'
import type { ComponentLogger } from '../shared/logger.js'
import { FleetChannel } from './fleet-channel.js'

/** What this module writes to: the one logger interface (shared/logger.ts). */
export type StoreLogger = Pick<ComponentLogger, 'info' | 'warn'>

/**
 * Where fleet-wide state is decided, for status and metrics: `memory` (no Redis configured),
 * `redis`, or `local-fallback` (Redis configured but unusable now: local state at a fair share).
 */
export type StoreMode = 'memory' | 'redis' | 'local-fallback'

export interface RedisStoreOptions {
  /** this replica's id in the heartbeat set; default hostname + pid + random */
  replicaId?: string
  /** heartbeat period while Redis is up */
  heartbeatMs?: number
  /** a replica missing this long is no longer counted */
  replicaTtlMs?: number
  /** first probe delay after a failure; doubles up to `maxBackoffMs` */
  minBackoffMs?: number
  maxBackoffMs?: number
  connectTimeoutMs?: number
  /** scripts that batch their own calls (the rate limiter's): kept out of auto-pipelining */
  selfBatchedCommands?: readonly string[]
}

const HEARTBEAT_LUA = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
if ARGV[1] ~= '' then redis.call('ZADD', KEYS[1], now, ARGV[1]) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - ttl)
redis.call('PEXPIRE', KEYS[1], ttl * 2)
return redis.call('ZCARD', KEYS[1])
`

type HeartbeatClient = (Redis | Cluster) & {
  flaggateHeartbeat (key: string, id: string, ttlMs: number): Promise<unknown>
}

function hostPort (s: string): { host: string; port: number } {
  const i = s.lastIndexOf(':')
  return { host: s.slice(0, i), port: Number(s.slice(i + 1)) }
}

/** Builds the ioredis client for `store.redis`; fail-fast options for every topology. */
export function createRedisClient (config: RedisData, opts: { connectTimeoutMs?: number; subscriber?: boolean; selfBatchedCommands?: readonly string[] } = {}): Redis | Cluster {
  // A subscriber waits for messages by design: no command timeout, and SUBSCRIBE issued while
  // connecting is queued (ioredis resubscribes by itself after a reconnect).
  const sub = opts.subscriber === true
  const common: RedisOptions = {
    enableOfflineQueue: sub,
    maxRetriesPerRequest: sub ? null : 1,
    ...(sub ? {} : { commandTimeout: config.commandTimeout }),
    // Commands of concurrent requests leave in one write per tick instead of one each: fewer
    // syscalls for the gateway and for Redis, which matters more than the round trip here. The
    // rate limiter's script batches and corks by itself (rate-limit/redis-limiter.ts), cheaper than the
    // Pipeline ioredis builds per tick; on a cluster it keeps auto-pipelining (a socket per node).
    enableAutoPipelining: !sub,
    ...(sub || config.cluster !== undefined || opts.selfBatchedCommands === undefined ? {} : { autoPipeliningIgnoredCommands: [...opts.selfBatchedCommands] }),
    connectTimeout: opts.connectTimeoutMs ?? 1000,
    // Reconnect quickly at first, then every 2 s: never give up (returning null would leave the
    // gateway on local state until a restart).
    retryStrategy: (times: number) => Math.min(50 * 2 ** Math.min(times, 6), 2000),
    ...(config.password !== undefined ? { password: config.password } : {})
  }
  if (config.cluster !== undefined) {
    const { retryStrategy: _unused, enableOfflineQueue: _q, ...redisOptions } = common
    const clusterOptions: ClusterOptions = {
      enableOfflineQueue: sub,
      clusterRetryStrategy: (times: number) => Math.min(50 * 2 ** Math.min(times, 6), 2000),
      redisOptions
    }
    return new Cluster(config.cluster.map(hostPort), clusterOptions)
  }
  if (config.sentinels !== undefined) {
    return new Redis({ ...common, sentinels: config.sentinels.map(hostPort), name: config.sentinelName })
  }
  return new Redis(config.url!, common)
}

export class RedisStore {
  readonly client: Redis | Cluster
  readonly keyPrefix: string
  readonly replicaId: string
  readonly commandTimeoutMs: number
  readonly #config: RedisData
  readonly #log: StoreLogger
  readonly #heartbeatMs: number
  readonly #replicaTtlMs: number
  readonly #minBackoffMs: number
  readonly #maxBackoffMs: number
  readonly #subscribers = new Set<Redis | Cluster>()
  /** starts open: nothing is sent before the first successful heartbeat */
  #open = true
  #everUp = false
  /** the first connection attempt has an outcome: answered, refused, or failed a probe */
  #firstOutcome = false
  #backoffMs: number
  #liveReplicas = 1
  #timer: NodeJS.Timeout | undefined
  #probing = false
  #closed = false
  #lastError: string | undefined
  #failures = 0

  constructor (config: RedisData, logger: StoreLogger, opts: RedisStoreOptions = {}) {
    this.#config = config
    this.#log = logger
    this.keyPrefix = config.keyPrefix
    this.commandTimeoutMs = config.commandTimeout
    this.replicaId = opts.replicaId ?? `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`
    this.#heartbeatMs = opts.heartbeatMs ?? 1000
    this.#replicaTtlMs = opts.replicaTtlMs ?? 3 * this.#heartbeatMs
    this.#minBackoffMs = opts.minBackoffMs ?? 250
    this.#maxBackoffMs = opts.maxBackoffMs ?? 2000
    this.#backoffMs = this.#minBackoffMs
    this.client = createRedisClient(config, { connectTimeoutMs: opts.connectTimeoutMs, ...(opts.selfBatchedCommands !== undefined ? { selfBatchedCommands: opts.selfBatchedCommands } : {}) })
    this.client.defineCommand('flaggateHeartbeat', { lua: HEARTBEAT_LUA, numberOfKeys: 1 })
    // Without a listener an ioredis error event would crash the process.
    this.client.on('error', (err: Error) => { this.#noteError(err) })
    this.client.on('close', () => { if (!this.#closed) this.#trip(new Error('connection closed')) })
    // A fresh connection is worth a probe now rather than at the end of the backoff.
    this.client.on('ready', () => { if (this.#open && !this.#closed) this.#schedule(0) })
    // Until the first 'ready', decisions are local; probing on that schedule also covers a
    // Redis that accepts connections but never answers.
    this.#schedule(this.#backoffMs)
  }

  /** Redis answered the last command or probe and the connection is up: send commands. */
  get usable (): boolean { return !this.#open && this.client.status === 'ready' }
  get healthy (): boolean { return this.usable }
  get mode (): Exclude<StoreMode, 'memory'> { return this.usable ? 'redis' : 'local-fallback' }
  /** replicas seen alive by the last successful heartbeat (this one included); at least 1 */
  get liveReplicas (): number { return this.#liveReplicas }
  get lastError (): string | undefined { return this.#lastError }
  /**
   * The first attempt to reach Redis has an outcome: it answered a probe ({@link usable}), the
   * connection failed, or a probe went unanswered for a command timeout. Until then "not usable"
   * only means "still connecting", which on a busy machine can take seconds.
   */
  get firstAttemptSettled (): boolean { return this.#firstOutcome }

  /** For `/admin/status`. */
  status (): { kind: 'redis'; healthy: boolean; mode: Exclude<StoreMode, 'memory'>; liveReplicas: number; lastError?: string } {
    return { kind: 'redis', healthy: this.healthy, mode: this.mode, liveReplicas: this.#liveReplicas, ...(this.#lastError !== undefined ? { lastError: this.#lastError } : {}) }
  }

  /** Prefixes a key with `store.redis.keyPrefix`. */
  key (suffix: string): string { return this.keyPrefix + suffix }

  /**
   * A command failed or timed out: stop using Redis until a probe succeeds. Call it from any
   * capability; it is cheap and idempotent while already open.
   */
  reportFailure (err: unknown): void {
    this.#trip(err)
  }

  /**
   * The fleet channel (pub/sub between replicas: purges, blocks) on this connection's one
   * subscriber; made on first use, closed with the store.
   */
  get fleet (): FleetChannel {
    return (this.#fleet ??= new FleetChannel(this, this.#log))
  }

  #fleet: FleetChannel | undefined

  /** A second connection for SUBSCRIBE (a subscribed connection can run nothing else); closed by {@link close}. */
  createSubscriber (): Redis | Cluster {
    const sub = createRedisClient(this.#config, { subscriber: true })
    sub.on('error', (err: Error) => { this.#noteError(err) })
    this.#subscribers.add(sub)
    return sub
  }

  async close (): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    if (this.#timer !== undefined) clearTimeout(this.#timer)
    await this.#fleet?.close()
    const clients = [this.client, ...this.#subscribers]
    if (this.usable) {
      // Leave the heartbeat set at once so the others' fair share grows without waiting for the TTL.
      await this.client.zrem(this.key('replicas'), this.replicaId).catch(() => undefined)
    }
    // QUIT would wait forever on a hung server; give it the command timeout, then cut.
    await Promise.all(clients.map(async (c) => {
      const quit = c.quit().catch(() => undefined)
      const timer = new Promise<void>((resolve) => setTimeout(resolve, Math.max(100, this.commandTimeoutMs)).unref())
      await Promise.race([quit, timer])
      c.disconnect()
    }))
  }

  #noteError (err: unknown): void {
    this.#firstOutcome = true
    const message = err instanceof Error ? err.message : String(err)
    // Reconnect attempts repeat the same error every backoff; log each distinct one once per outage.
    if (message !== this.#lastError) this.#log.warn({ err: loggableError(err) }, 'redis error')
    this.#lastError = message
  }

  #trip (err: unknown): void {
    this.#failures++
    if (this.#open || this.#closed) return
    this.#open = true
    this.#backoffMs = this.#minBackoffMs
    this.#lastError = err instanceof Error ? err.message : String(err)
    this.#log.warn({ err: loggableError(err), liveReplicas: this.#liveReplicas, probeInMs: this.#backoffMs }, 'redis unusable: deciding on local state at a fair share until it answers again')
    this.#schedule(this.#backoffMs)
  }

  #schedule (delayMs: number): void {
    if (this.#closed) return
    if (this.#timer !== undefined) clearTimeout(this.#timer)
    this.#timer = setTimeout(() => { void this.#beat() }, delayMs)
    this.#timer.unref()
  }

  /** Heartbeat while up, probe while open: the same command either way. */
  async #beat (): Promise<void> {
    this.#timer = undefined
    if (this.#closed || this.#probing) return
    if (this.client.status !== 'ready') {
      // Nothing to probe until ioredis reconnects; the 'ready' listener reschedules sooner.
      if (!this.#open) this.#trip(new Error(`redis connection is ${this.client.status}`))
      else this.#schedule(this.#nextBackoff())
      return
    }
    this.#probing = true
    try {
      const n = Number(await (this.client as HeartbeatClient).flaggateHeartbeat(this.key('replicas'), this.replicaId, this.#replicaTtlMs))
      if (Number.isFinite(n) && n >= 1) this.#liveReplicas = n
      this.#firstOutcome = true
      if (this.#open) {
        this.#open = false
        this.#lastError = undefined
        if (this.#everUp) this.#log.info({ liveReplicas: this.#liveReplicas, failedCommands: this.#failures }, 'redis usable again: limits are fleet-wide again')
        else this.#log.info({ liveReplicas: this.#liveReplicas, replicaId: this.replicaId }, 'redis connected: limits are fleet-wide')
        this.#everUp = true
        this.#failures = 0
      }
      this.#schedule(this.#heartbeatMs)
    } catch (err) {
      this.#firstOutcome = true
      if (this.#open) this.#schedule(this.#nextBackoff())
      else this.#trip(err)
    } finally {
      this.#probing = false
    }
  }

  #nextBackoff (): number {
    const b = this.#backoffMs
    this.#backoffMs = Math.min(this.#backoffMs * 2, this.#maxBackoffMs)
    return b
  }
}

/** `createRedisStore(policy.data.store.redis, logger)`: the connection, breaker and heartbeats. */
export function createRedisStore (config: RedisData, logger: StoreLogger, opts?: RedisStoreOptions): RedisStore {
  return new RedisStore(config, logger, opts)
}
