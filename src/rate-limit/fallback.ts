/**
 * The fleet's limiter and its fallback policy: buckets in Redis while the store is usable, local
 * buckets at each replica's fair share while it is not.
 */
import { bucketParams, type BucketParams, type BucketRequest } from './algorithm.js'
import { MemoryBuckets } from './memory-store.js'
import { takeRedis, type LimiterRedisStore } from './redis-store.js'
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

/**
 * The fleet's limiter: buckets in Redis, one EVALSHA per request; while the store's breaker is
 * open (Redis down, hung, or slower than commandTimeout) each replica decides on local buckets at
 * its fair share, and goes back to Redis as soon as the store's probe succeeds.
 */
export function createRedisLimiter (store: LimiterRedisStore, opts: RedisLimiterOptions = {}): RateLimiter & { readonly fallback: MemoryBuckets } {
  const fallback = new MemoryBuckets({ maxKeys: opts.fallbackMaxKeys, clock: opts.clock })
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
  return {
    kind: 'redis',
    get mode (): StoreMode { return store.usable ? 'redis' : 'local-fallback' },
    get healthy () { return store.healthy },
    fallback,
    async decide (requests) {
      if (store.usable) {
        try {
          const d = await takeRedis(store.client, store.keyPrefix, requests)
          return { allowed: d.allowed, limits: d.limits, source: 'redis' }
        } catch (err) {
          store.reportFailure(err)
          opts.onFallback?.(err)
        }
      }
      return local(requests)
    },
    decideLocal (requests) {
      return store.usable ? undefined : local(requests)
    },
    async close () { fallback.close() }
  }
}
