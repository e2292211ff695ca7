/**
 * Automatic blocks (`abuse`): a client whose requests keep being refused with 429 past
 * `rejections` in the window is blocked for `blockFor`.
 *
 * The client is what the refusing limit counted (the rate-limit step records it on the request):
 * the key, the key from one IP for an `[environmentKey, ip]` limit, or the IP for an `ip` limit.
 * So a runaway SDK instance is blocked without blocking its colleagues behind the same key, and a
 * NAT address is blocked only when a limit counted that address as the client.
 *
 * The rejection counter is rate-limiter-flexible's fixed window (one point per 429, `points` =
 * `rejections`, `duration` = the window): in Redis (RateLimiterRedis) so that rejections on every
 * replica add up, with an in-memory insurance limiter while Redis fails; in memory alone without
 * Redis. Counter keys hold the key's digest, never the key. RateLimiterRedis floors durations to
 * whole seconds (its `duration` is in seconds), so the window is rounded to at least 1 s.
 */
import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes, type RateLimiterAbstract } from 'rate-limiter-flexible'
import { keyDigest } from '../shared/key-digest.js'
import { loggableError } from '../shared/redact.js'
import type { BlockLogger } from './backend.js'
import type { BlockSyncRedis } from './redis-sync.js'

export interface AbuseSettings {
  /** rejections allowed in the window; one more blocks */
  rejections: number
  windowMs: number
  blockForMs: number
}

/** What a refusing limit counted as the client (see RequestGateway.limitedClient). */
export interface LimitedClient { key?: string; ip?: string }

export interface AbuseEvent {
  client: LimitedClient
  /** a stable name of the client (digest for keys): same client, same automatic block id */
  target: string
  route: string
  limit: string
  rejections: number
  settings: AbuseSettings
}

export interface AbuseDetectorOptions {
  redis?: BlockSyncRedis
  logger: BlockLogger
  onAbuse: (event: AbuseEvent) => void
}

export function abuseTarget (c: LimitedClient): string | undefined {
  if (c.key !== undefined) return c.ip === undefined ? `k${keyDigest(c.key)}` : `k${keyDigest(c.key)}|${c.ip}`
  return c.ip === undefined ? undefined : `i${c.ip}`
}

export class AbuseDetector {
  readonly #opts: AbuseDetectorOptions
  #settings: AbuseSettings | undefined
  #memory: RateLimiterMemory | undefined
  #redisLimiter: RateLimiterAbstract | undefined

  constructor (opts: AbuseDetectorOptions) {
    this.#opts = opts
  }

  get settings (): AbuseSettings | undefined { return this.#settings }

  /** On start and every reload; counters start afresh only when the numbers change. */
  configure (settings: AbuseSettings | undefined): void {
    const s = this.#settings
    if (s !== undefined && settings !== undefined && s.rejections === settings.rejections && s.windowMs === settings.windowMs) {
      this.#settings = settings
      return
    }
    this.#settings = settings
    this.#memory = undefined
    this.#redisLimiter = undefined
    if (settings === undefined) return
    const duration = Math.max(1, Math.round(settings.windowMs / 1000))
    const keyPrefix = `abuse:${settings.rejections}:${duration}`
    this.#memory = new RateLimiterMemory({ points: settings.rejections, duration, keyPrefix })
    const redis = this.#opts.redis
    if (redis !== undefined) {
      this.#redisLimiter = new RateLimiterRedis({
        storeClient: redis.client,
        keyPrefix: `${redis.keyPrefix}${keyPrefix}`,
        points: settings.rejections,
        duration,
        rejectIfRedisNotReady: true,
        insuranceLimiter: this.#memory
      })
    }
  }

  /** One 429 answered to `client` by `limit` on `route`. Never throws; decides in the background. */
  record (client: LimitedClient, route: string, limit: string): void {
    const settings = this.#settings
    if (settings === undefined) return
    const target = abuseTarget(client)
    if (target === undefined) return
    const redis = this.#opts.redis
    // the store's breaker says Redis is unusable: count here rather than wait for a timeout
    const limiter = redis !== undefined && redis.usable ? this.#redisLimiter! : this.#memory!
    limiter.consume(target, 1).then(() => {}, (res: unknown) => {
      if (res instanceof RateLimiterRes) {
        this.#opts.onAbuse({ client, target, route, limit, rejections: res.consumedPoints, settings })
        return
      }
      // the insurance limiter answers for Redis, so this is unexpected; the next 429 counts again
      this.#opts.logger.warn({ err: loggableError(res) }, 'abuse counter failed')
    })
  }
}
