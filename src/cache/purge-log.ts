/**
 * The purge log: the recent purges of this replica, numbered, so a fill that started before a
 * purge covering its document gives the answer to its waiters without storing it, and a document
 * stored just after a purge is revalidated unconditionally while Core's Last-Modified lags.
 */
import type { CachedDocument, PurgeTarget } from './document.js'
import { matches } from './purge-target.js'

/**
 * Core reads Last-Modified from a per-process environment cache that a change does not clear
 * (Flagsmith Core caches it per worker process): for about a minute after a change a worker can still answer an
 * If-Modified-Since with 304. So after a purge we revalidate unconditionally for this long.
 */
export const CORE_LAST_MODIFIED_LAG_MS = 60_000
const PURGE_LOG_MAX = 1024

interface PurgeRecord { gen: number; at: number; target: PurgeTarget }

export class PurgeLog {
  #gen = 0
  #log: PurgeRecord[] = []

  /** the number of the last purge recorded (a fill remembers it when it starts) */
  get generation (): number { return this.#gen }

  record (target: PurgeTarget, at: number): void {
    this.#gen++
    this.#log.push({ gen: this.#gen, at, target })
    if (this.#log.length > PURGE_LOG_MAX) this.#log.splice(0, this.#log.length - PURGE_LOG_MAX)
  }

  /** Was a purge matching this document recorded after `gen`? (unknown history counts as yes) */
  purgedSince (gen: number, envKey: string, doc: CachedDocument | undefined): boolean {
    if (gen === this.#gen) return false
    const oldest = this.#log[0]
    if (oldest === undefined || oldest.gen > gen + 1) return true
    for (let i = this.#log.length - 1; i >= 0 && this.#log[i]!.gen > gen; i--) {
      if (matches(this.#log[i]!.target, envKey, doc)) return true
    }
    return false
  }

  /** When did the last purge matching this document happen, if within the lag window? */
  recentPurgeAt (envKey: string, doc: CachedDocument | undefined, now: number): number | undefined {
    for (let i = this.#log.length - 1; i >= 0; i--) {
      const p = this.#log[i]!
      if (now - p.at >= CORE_LAST_MODIFIED_LAG_MS) break
      if (matches(p.target, envKey, doc)) return p.at
    }
    return undefined
  }
}
