/** Bucket state in process memory: a single instance's whole state, and the Redis fallback. */
import { LRUCache } from 'lru-cache'
import { decideBuckets, type BucketDecision, type BucketRequest } from './algorithm.js'
import { systemClock, type Clock } from '../shared/clock.js'

const READ_STALE = { allowStale: true, noDeleteOnStaleGet: true } as const

/** Bounded in-memory buckets: the whole state of a single instance, and the Redis fallback. */
export class MemoryBuckets {
  readonly #clock: Clock
  readonly #cache: LRUCache<string, number>
  #purgeTimer: NodeJS.Timeout | undefined

  constructor (opts: { maxKeys?: number; clock?: Clock; purgeIntervalMs?: number } = {}) {
    this.#clock = opts.clock ?? systemClock
    const clock = this.#clock
    this.#cache = new LRUCache<string, number>({
      // `max` bounds memory whatever the traffic; evicting a half-empty bucket only ever makes
      // the limiter more lenient for that one client, never refuses a legitimate request.
      max: opts.maxKeys ?? DEFAULT_MAX_KEYS,
      // The TTL drops a bucket once it is full again (it is then equivalent to no entry).
      // Same clock as the arithmetic, and no cached "now" (ttlResolution 0), so an entry never
      // outlives the moment its bucket is full by the cache's own reckoning.
      perf: { now: clock },
      ttlResolution: 0,
      ttlAutopurge: false
    })
    // Expired entries would otherwise sit until LRU eviction reaches them; a sweep every few
    // seconds keeps the map close to the set of buckets that are really partly spent.
    const purgeMs = opts.purgeIntervalMs ?? 10_000
    if (purgeMs > 0) {
      this.#purgeTimer = setInterval(() => { this.#cache.purgeStale() }, purgeMs)
      this.#purgeTimer.unref()
    }
  }

  /** Decides one request; synchronous, never throws. */
  take (requests: readonly BucketRequest[], now = this.#clock()): { allowed: boolean; limits: BucketDecision[] } {
    const cache = this.#cache
    const tats = new Array<number | undefined>(requests.length)
    // A stale TAT (bucket full again) decides exactly like a missing one (decideBuckets clamps
    // it to now), so it is read as is and left for the periodic sweep. Deleting on read is
    // costly here: when lru-cache drops its last entry it clear()s, filling arrays of `max`
    // slots, which with one busy client happened on every request.
    for (let i = 0; i < requests.length; i++) tats[i] = cache.get(requests[i]!.key, READ_STALE)
    return decideBuckets(now, requests, tats, (i, tat, ttlMs) => { cache.set(requests[i]!.key, tat, { ttl: ttlMs }) })
  }

  /** Number of buckets held (including ones that expired since the last sweep). */
  get size (): number { return this.#cache.size }
  get maxKeys (): number { return this.#cache.max }

  purgeStale (): void { this.#cache.purgeStale() }

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
