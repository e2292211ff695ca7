/**
 * Everything the composition (gateway.ts) needs from the rate limits: the `rate-limit` step, the
 * `store` section of `/admin/status`, and `close()` on shutdown (the Redis store itself belongs to
 * the composition, since blocking and the cache share it).
 */
import type { Capability, PluginEntry } from '../contracts/capability.js'
import type { RedisStore } from '../store/redis.js'
import { createMemoryLimiter, createRedisLimiter, type RateLimiter, type MemoryLimiterOptions } from './core.js'
import rateLimitPlugin, { type RateLimitPluginOptions } from './plugin.js'
import { AddressBudget } from './address-budget.js'
import { UnknownKeys } from './unknown-keys.js'
import unknownKeysStep, { type UnknownKeysStepOptions } from './unknown-keys-step.js'

/** The limiter for a gateway: fleet-wide through the shared Redis store when there is one. */
export function createLimiter (redis: RedisStore | undefined, opts: MemoryLimiterOptions = {}): RateLimiter {
  return redis === undefined
    ? createMemoryLimiter(opts)
    : createRedisLimiter(redis, { fallbackMaxKeys: opts.maxKeys, clock: opts.clock })
}

export interface RateLimitCapability extends Capability {
  limiter: RateLimiter
  steps: { 'rate-limit': PluginEntry; 'unknown-keys': PluginEntry }
  /** `unknownKeys`: the keys Core accepted and each address's budget for the others */
  unknownKeys: UnknownKeys
  /** the Flagsmith webhook's own limit (`webhooks.flagsmith.limit`), per client address */
  webhookBudget: AddressBudget
}

export function createRateLimit (deps: { redis: RedisStore | undefined; metrics: RateLimitPluginOptions['metrics']; maxKeys?: number }): RateLimitCapability {
  const limiter = createLimiter(deps.redis, { maxKeys: deps.maxKeys })
  const opts: RateLimitPluginOptions = { limiter, metrics: deps.metrics }
  // webhook senders are few: a small LRU is plenty, and a flood of addresses only evicts full buckets
  const webhookBudget = new AddressBudget('webhook', { maxKeys: 10_000 })
  const unknownKeys = new UnknownKeys()
  const unknownKeysOpts: UnknownKeysStepOptions = { keys: unknownKeys }
  return {
    name: 'rate-limit',
    limiter,
    webhookBudget,
    unknownKeys,
    steps: { 'rate-limit': { plugin: rateLimitPlugin, opts }, 'unknown-keys': { plugin: unknownKeysStep, opts: unknownKeysOpts } },
    admin: {
      /** `store` section of `/admin/status`: `{kind, healthy, mode, liveReplicas?}` */
      status: (): { store: Record<string, unknown> } => ({
        store: deps.redis === undefined
          ? { kind: 'memory', healthy: true, mode: 'memory' }
          : deps.redis.status()
      })
    },
    close: async () => {
      webhookBudget.close()
      unknownKeys.close()
      await limiter.close()
    }
  }
}
