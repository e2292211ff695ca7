/**
 * What the plugin calls: a RateLimiter deciding every limit of a request, over memory (one
 * instance) or Redis with a local fallback (fallback.ts).
 */
import type { BucketRequest, BucketDecision } from './algorithm.js'
import { MemoryBuckets } from './memory-store.js'
import type { Clock } from '../shared/clock.js'
import type { StoreMode } from '../store/redis.js'

export type { StoreMode }

/** The answer for all the limits of one request, in the order they were asked. */
export interface RateLimitDecision {
  /** every non-shadow limit allowed it; tokens were spent only in that case */
  readonly allowed: boolean
  readonly limits: readonly BucketDecision[]
  /** which state decided: `local-fallback` while Redis is unusable */
  readonly source: StoreMode
}

export interface RateLimiter {
  /** Decides all the limits of one request at once. Never throws, never waits longer than the store's command timeout. */
  decide (requests: readonly BucketRequest[]): Promise<RateLimitDecision>
  /**
   * The decision without a promise when it needs no I/O (memory store, or Redis fallback), so
   * the hot path skips the microtask hops; undefined when only `decide` can answer.
   */
  decideLocal (requests: readonly BucketRequest[]): RateLimitDecision | undefined
  readonly kind: 'memory' | 'redis'
  /** `redis`, `local-fallback` (Redis configured but unusable right now) or `memory` */
  readonly mode: StoreMode
  readonly healthy: boolean
  close (): Promise<void>
}

export interface MemoryLimiterOptions { maxKeys?: number; clock?: Clock; purgeIntervalMs?: number }

/** A single instance's limiter: all state in process memory. */
export function createMemoryLimiter (opts: MemoryLimiterOptions = {}): RateLimiter & { readonly buckets: MemoryBuckets } {
  const buckets = new MemoryBuckets(opts)
  return {
    kind: 'memory',
    mode: 'memory',
    healthy: true,
    buckets,
    async decide (requests) {
      const d = buckets.take(requests)
      return { allowed: d.allowed, limits: d.limits, source: 'memory' }
    },
    decideLocal (requests) {
      const d = buckets.take(requests)
      return { allowed: d.allowed, limits: d.limits, source: 'memory' }
    },
    async close () { buckets.close() }
  }
}
