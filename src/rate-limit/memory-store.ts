/** Bucket state in process memory: a single instance's whole state, and the Redis fallback. */
import { LRUCache } from 'lru-cache'
import { decideBuckets, type BucketDecision, type BucketRequest } from './algorithm.js'
import { systemClock, type Clock } from '../shared/clock.js'

/** Bounded in-memory buckets: the whole state of a single instance, and the Redis fallback. */
export class MemoryBuckets {
  readonly #clock: Clock
  readonly #cache: LRUCache<string, number>
  #purgeTimer: NodeJS.Timeout | undefined

  constructor (opts: { maxKeys?: number; clock?: Clock; purgeIntervalMs?: number } = {}) {
    this.#clock = opts.clock ?? systemClock
    // `max` bounds memory whatever the traffic; evicting a half-empty bucket only ever makes the
    // limiter more lenient for that one client, never refuses a legitimate request. No TTLs: a
    // TAT in the past decides exactly like no entry (decideBuckets clamps it to now), so a full
    // bucket is harmless until the sweep drops it, and the hot path pays for no expiry
    // bookkeeping (lru-cache's TTL checks and timestamps on every get and set).
    this.#cache = new LRUCache<string, number>({ max: opts.maxKeys ?? DEFAULT_MAX_KEYS })
    // Full buckets would otherwise sit until LRU eviction reaches them; a sweep every few seconds
    // keeps the map close to the set of buckets that are really partly spent.
    const purgeMs = opts.purgeIntervalMs ?? 10_000
    if (purgeMs > 0) {
      this.#purgeTimer = setInterval(() => { this.purgeStale() }, purgeMs)
      this.#purgeTimer.unref()
    }
  }

  /** Decides one request; synchronous, never throws. */
  take (requests: readonly BucketRequest[], now = this.#clock()): { allowed: boolean; limits: BucketDecision[] } {
    const cache = this.#cache
    const tats = new Array<number | undefined>(requests.length)
    for (let i = 0; i < requests.length; i++) tats[i] = cache.get(requests[i]!.key)
    return decideBuckets(now, requests, tats, (i, tat) => { cache.set(requests[i]!.key, tat) })
  }

  /** Number of buckets held (including full ones the sweep has not dropped yet). */
  get size (): number { return this.#cache.size }
  get maxKeys (): number { return this.#cache.max }

  /** Drops the buckets that are full again (their TAT is past). */
  purgeStale (now = this.#clock()): void {
    const full: string[] = []
    for (const [key, tat] of this.#cache.entries()) if (tat <= now) full.push(key)
    for (const key of full) this.#cache.delete(key)
  }

  clear (): void { this.#cache.clear() }

  close (): void {
    if (this.#purgeTimer !== undefined) clearInterval(this.#purgeTimer)
    this.#purgeTimer = undefined
  }
}

/**
 * Enough buckets for every client that is mid-burst at once on a busy instance (a bucket that
 * is full again needs no entry, and one spent token refills in `1 / rate` seconds). A bucket costs
 * about 250 bytes of heap with the LRU's bookkeeping (bench/ratelimit.ts), so this caps the
 * limiter's state near 50 MB whatever the traffic.
 */
export const DEFAULT_MAX_KEYS = 200_000
