/**
 * Fair admission under a concurrency limit, with no queue: which request may take a slot to the
 * upstream when several environment keys want more than the limit allows. Pure: no timers, the
 * caller passes the time and the limit in force.
 *
 * A *partition* is an environment key, or the client address for requests without one. A
 * partition is *active* while it has requests in flight or asked within the last second (1–2 s:
 * idle partitions are forgotten by a sweep once a second). With `n` partitions active, each one's
 * *share* is `limit / n`, and at least 1.
 *
 *   - under the limit, every request is admitted: work-conserving, a key may use capacity nobody
 *     else wants, however much;
 *   - at the limit, while some partition holds more than its share, a partition holding nothing
 *     is admitted (one request: a storm locks no key out); and a partition under its share is still admitted as long as what all
 *     partitions hold, each counted only up to its share, stays under the limit; a partition at
 *     or over its share is refused. So a storm that filled the limit while it was alone cannot keep another
 *     key out: the newcomer gets its share at once, on top, and the storm gets no new slot until
 *     the total is back under the limit.
 *
 * The price of never queueing is that overshoot: the total can exceed the limit by what the
 * partitions under their share hold (together at most the limit; {@link HARD_CAP_FACTOR} bounds it
 * absolutely), for as long as the storm's requests take. Netflix concurrency-limits'
 * AbstractPartitionedLimiter makes the same choice (a partition under its guaranteed share is
 * admitted whatever the total); unlike its fixed percentages, shares here follow whoever is active,
 * since environment keys come and go. With `maxInFlight: auto` the overshoot corrects itself: the
 * extra concurrency shows in the latency, and the adaptive limit comes down by as much, so the
 * storm's part of it shrinks, not the others'.
 *
 * Alternative written first and dropped: refusing an over-share partition unless the unused
 * shares of every other active partition stay free (strict max-min fairness, no overshoot). With
 * Core's small limits (a handful of gunicorn workers) and many light keys, each key's whole share
 * is held back for a request it sends a few times a second: nine keys at 5 % of capacity would
 * reserve nine slots of a limit of four, and the storm's key — also a customer — would get one.
 *
 * Cost: a Map lookup per admission; at the limit, the excess sum walks the partitions with
 * requests in flight (at most twice the limit of them).
 */

/** A partition is active this long after its last request (plus up to one sweep period). */
export const ACTIVE_MS = 1000
/** Partitions remembered at most: beyond, new ones share one overflow partition (bounded memory). */
export const MAX_PARTITIONS = 10_000
/** The total in flight never exceeds this many times the limit, whatever the partitions. */
export const HARD_CAP_FACTOR = 2
export const OVERFLOW = '\u0000overflow'

interface Partition { inFlight: number; seenAt: number }

export class FairShare {
  readonly #parts = new Map<string, Partition>()
  /** partitions with requests in flight: what the excess sum walks */
  readonly #busy = new Set<Partition>()
  #total = 0
  #sweptAt = -Infinity

  get total (): number { return this.#total }
  /** Partitions counted as active (for status and tests). */
  get active (): number { return this.#parts.size }
  inFlightOf (partition: string): number { return this.#parts.get(partition)?.inFlight ?? 0 }

  /**
   * Whether one request of `partition` may start now under `limit`; when it may, it is counted
   * in flight and the caller must {@link release} it exactly once.
   */
  tryAcquire (partition: string, limit: number, now: number): boolean {
    if (now - this.#sweptAt >= ACTIVE_MS) this.#sweep(now)
    let p = this.#parts.get(partition)
    if (p === undefined) {
      if (this.#parts.size >= MAX_PARTITIONS) partition = OVERFLOW
      p = this.#parts.get(partition)
      if (p === undefined) { p = { inFlight: 0, seenAt: now }; this.#parts.set(partition, p) }
    }
    p.seenAt = now
    if (!this.#admissible(p, limit)) return false
    if (p.inFlight++ === 0) this.#busy.add(p)
    this.#total++
    return true
  }

  release (partition: string): void {
    const p = this.#parts.get(partition) ?? this.#parts.get(OVERFLOW)
    if (p === undefined || p.inFlight === 0) return
    if (--p.inFlight === 0) this.#busy.delete(p)
    this.#total--
  }

  /** The rule itself (see the file comment); `p` is already counted active. */
  #admissible (p: Partition, limit: number): boolean {
    if (this.#total < limit) return true
    if (this.#total >= limit * HARD_CAP_FACTOR) return false
    // at least one each: with more partitions active than slots, a slot is a whole request, and
    // a partition holding one is at its share (else shares under 1 would let the total run away)
    const share = Math.max(1, limit / this.#parts.size)
    const excess = this.#excess(share)
    // full, and someone holds more than its share: a partition holding nothing gets one request
    // in on top (up to the hard cap). With Core's small limits and many keys, shares are about
    // one request each; without this, keys holding nothing were refused whenever a few of them
    // asked at once beside a storm (the fairness bench: the nine light keys got 91 % answered).
    // When nobody is over its share (many clients holding one each), the limit holds.
    if (p.inFlight === 0 && excess > 0) return true
    // beyond that, only a partition under its share gets in, and only past what partitions over
    // their share hold beyond it (their excess); among fair users the limit holds for all but the
    // first request of each
    return p.inFlight < share && this.#total - excess < limit
  }

  /** Σ over the busy partitions of what they hold beyond their share. */
  #excess (share: number): number {
    let excess = 0
    for (const q of this.#busy) if (q.inFlight > share) excess += q.inFlight - share
    return excess
  }

  /** Forgets partitions that have been idle for {@link ACTIVE_MS}: they no longer claim a share. */
  #sweep (now: number): void {
    this.#sweptAt = now
    for (const [k, p] of this.#parts) {
      if (p.inFlight === 0 && now - p.seenAt >= ACTIVE_MS) this.#parts.delete(k)
    }
  }
}
