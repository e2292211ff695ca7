/**
 * Replayed Flagsmith webhooks cost nothing. A signed body captured once (a proxy log, a
 * misrouted request) stays valid for ever: the signature covers only the body, and Flagsmith's
 * body has no nonce we could check. So the digest of every body that purged something is
 * remembered for `replayWindow`: the same bytes again within the window purge nothing.
 *
 * Bounded memory: at most `maxEntries` digests (32 bytes of SHA-256 as 64 hex characters, about
 * 200 bytes each with the LRU's bookkeeping), least recently seen dropped first. A body older than
 * the window (or pushed out by more than `maxEntries` distinct signed bodies, which only Flagsmith
 * can make) purges once more when replayed: one purge per window per captured body, never one
 * per request.
 *
 * Flagsmith's own retries (on a connection error or timeout, 2 s and 4 s later) send the same
 * bytes; the first of them that arrived did the purge, so ignoring the others loses nothing.
 */
import { createHash } from 'node:crypto'
import { LRUCache } from 'lru-cache'
import { systemClock, type Clock } from '../shared/clock.js'

export const DEFAULT_REPLAY_MAX_ENTRIES = 10_000

export class ReplayFilter {
  readonly #seen: LRUCache<string, true>

  constructor (opts: { maxEntries?: number; clock?: Clock } = {}) {
    const clock = opts.clock ?? systemClock
    // ttlResolution 0: the clock is read at every check (lru-cache would otherwise reuse a reading
    // for a while, which a stepped clock never advances)
    this.#seen = new LRUCache<string, true>({ max: opts.maxEntries ?? DEFAULT_REPLAY_MAX_ENTRIES, ttlAutopurge: false, ttlResolution: 0, perf: { now: clock } })
  }

  /** The body's digest: what is remembered and what the log shows (never the body). */
  static digest (body: Buffer): string {
    return createHash('sha256').update(body).digest('hex')
  }

  /** true the first time within `windowMs` (and remembers it for that long); false for a replay. The window is the policy's at each call, so a reload applies to new bodies. */
  first (digest: string, windowMs: number): boolean {
    if (this.#seen.has(digest)) return false
    this.#seen.set(digest, true, { ttl: Math.max(1, windowMs) })
    return true
  }

  /** forgets a digest: its purge failed, so the same body must be able to try again */
  forget (digest: string): void { this.#seen.delete(digest) }

  get size (): number { return this.#seen.size }
}
