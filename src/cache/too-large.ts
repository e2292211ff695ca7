/**
 * The too-large memory: cache keys whose document passed `maxEntrySize`, remembered until the
 * rule's ttl so their requests go straight to the proxy instead of buffering a body we will not
 * store. Bounded in bytes.
 */
import { LRUCache } from 'lru-cache'
import type { Clock } from '../shared/clock.js'
import type { PurgeTarget } from './document.js'
import { keysNamed } from './negative.js'

/** bytes of memory for the keys remembered as too large (key length + bookkeeping, each) */
const TOO_LARGE_MAX_BYTES = 1024 * 1024
const TOO_LARGE_ENTRY_OVERHEAD = 96

export class TooLargeKeys {
  readonly #lru: LRUCache<string, true>

  constructor (clock: Clock) {
    this.#lru = new LRUCache<string, true>({
      maxSize: TOO_LARGE_MAX_BYTES,
      sizeCalculation: (_v, k) => k.length + TOO_LARGE_ENTRY_OVERHEAD,
      ttlResolution: 0,
      perf: { now: clock }
    })
  }

  get size (): number { return this.#lru.size }

  has (key: string): boolean { return this.#lru.size > 0 && this.#lru.has(key) }

  remember (key: string, ttlMs: number): void { this.#lru.set(key, true, { ttl: ttlMs }) }

  /** Forgets what `target` names (not counted: nothing is stored for these keys). */
  purge (target: PurgeTarget, digests: Map<string, string>): void {
    if ('all' in target) { this.#lru.clear(); return }
    for (const k of keysNamed(this.#lru.keys(), target, digests)) this.#lru.delete(k)
  }
}
