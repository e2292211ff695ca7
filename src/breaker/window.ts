/**
 * A sliding window of upstream outcomes: how many, how many failed, and their latency
 * distribution, over the last `windowMs`.
 *
 * Written by hand (no histogram library) because what the breaker needs is a *time-windowed*
 * histogram with O(1) recording and no allocation per sample, and none of the candidates gives
 * that: hdr-histogram-js and tdigest summarise everything ever recorded, so a window would need
 * one histogram per time slice plus merging (allocation on every rotation, WASM or float trees on
 * the hot path); a ring of raw samples needs a sort per percentile and grows with traffic
 * (10k req/s × 10 s = 100k samples). Here the window is a ring of {@link BUCKETS} time slices,
 * each a fixed array of logarithmic latency bins, plus a running total of all slices: recording is
 * a `Math.log` and three increments, a slice that ages out is subtracted from the total once, and
 * a percentile walks {@link BINS} integers. Memory is fixed (~11 kB per window) whatever the rate.
 *
 * Precision: bins grow by 5 %, and a percentile is reported as its bin's geometric middle, so it
 * is within ±2.5 % of the exact sample percentile — far finer than the thresholds operators set
 * (`above: 800ms`). The window slides in steps of `windowMs / BUCKETS` (1 s for a 10 s window).
 */

/** Time slices per window: the window slides in steps of a tenth of its length. */
export const BUCKETS = 10
/** Latency bins: bin 0 holds everything under 1 ms; bin i ≥ 1 holds [1.05^(i-1), 1.05^i) ms. */
export const BINS = 256
const GROWTH = 1.05
const LOG_GROWTH = Math.log(GROWTH)
/** 1.05^255 ≈ 250 s: every latency the gateway can see (timeouts are at most minutes) has its own bin. */

/** Ring slot of a slice number (a clock may start below zero). */
function slotOf (slice: number): number {
  return ((slice % BUCKETS) + BUCKETS) % BUCKETS
}

function binOf (ms: number): number {
  if (!(ms >= 1)) return 0
  const i = 1 + Math.floor(Math.log(ms) / LOG_GROWTH)
  return i < BINS ? i : BINS - 1
}

/** The value a bin stands for: the geometric middle of its bounds (0.5 ms for bin 0). */
function binValue (i: number): number {
  return i === 0 ? 0.5 : Math.pow(GROWTH, i - 0.5)
}

export class SlidingWindow {
  readonly windowMs: number
  readonly #sliceMs: number
  /** which slice number (time / sliceMs) each ring slot currently holds; NaN when empty */
  readonly #sliceOf = new Float64Array(BUCKETS).fill(NaN)
  readonly #count = new Uint32Array(BUCKETS)
  readonly #failed = new Uint32Array(BUCKETS)
  readonly #timed = new Uint32Array(BUCKETS)
  /** BUCKETS × BINS latency counts, slot-major */
  readonly #bins = new Uint32Array(BUCKETS * BINS)
  // running totals over the slices still inside the window
  #totalCount = 0
  #totalFailed = 0
  #totalTimed = 0
  readonly #totalBins = new Uint32Array(BINS)
  /** newest slice number seen; slices older than newest - BUCKETS + 1 have been subtracted */
  #newest = -Infinity

  constructor (windowMs: number) {
    this.windowMs = windowMs
    this.#sliceMs = Math.max(1, windowMs / BUCKETS)
  }

  /**
   * One outcome at `now`. `latencyMs` is undefined for outcomes whose time says nothing about the
   * upstream's speed (a refused connection fails in a millisecond): they count, but not in the
   * latency distribution.
   */
  record (now: number, failed: boolean, latencyMs: number | undefined): void {
    const slot = this.#advance(now)
    this.#count[slot]!++
    this.#totalCount++
    if (failed) { this.#failed[slot]!++; this.#totalFailed++ }
    if (latencyMs !== undefined) {
      const b = binOf(latencyMs)
      this.#bins[slot * BINS + b]!++
      this.#totalBins[b]!++
      this.#timed[slot]!++
      this.#totalTimed++
    }
  }

  /** Outcomes in the window ending at `now`. */
  count (now: number): number { this.#advance(now); return this.#totalCount }
  failures (now: number): number { this.#advance(now); return this.#totalFailed }
  /** Failed share 0–1, or 0 when empty. */
  errorRate (now: number): number { this.#advance(now); return this.#totalCount === 0 ? 0 : this.#totalFailed / this.#totalCount }
  /** Outcomes with a latency in the window. */
  timedCount (now: number): number { this.#advance(now); return this.#totalTimed }

  /** The latency at `percentile` (0–100) over the window, or undefined when it holds none. */
  percentile (now: number, percentile: number): number | undefined {
    this.#advance(now)
    if (this.#totalTimed === 0) return undefined
    // nearest-rank: the smallest value with at least p % of the samples at or below it
    const rank = Math.max(1, Math.ceil((percentile / 100) * this.#totalTimed))
    let seen = 0
    for (let i = 0; i < BINS; i++) {
      seen += this.#totalBins[i]!
      if (seen >= rank) return binValue(i)
    }
    return binValue(BINS - 1)
  }

  /** Forget everything (the breaker closes on fresh figures, not on the ones that opened it). */
  clear (): void {
    this.#sliceOf.fill(NaN)
    this.#count.fill(0)
    this.#failed.fill(0)
    this.#timed.fill(0)
    this.#bins.fill(0)
    this.#totalBins.fill(0)
    this.#totalCount = this.#totalFailed = this.#totalTimed = 0
    this.#newest = -Infinity
  }

  /** Moves the window to `now`, subtracting slices that fell out; returns the slot for `now`. */
  #advance (now: number): number {
    const slice = Math.floor(now / this.#sliceMs)
    const slot = slotOf(slice)
    if (slice <= this.#newest) {
      // a clock that went backwards (or a late record) lands in the newest slice still held
      return this.#sliceOf[slot] === slice ? slot : slotOf(this.#newest)
    }
    // expire every slot whose slice is no longer in (slice - BUCKETS, slice]
    const from = Math.max(this.#newest + 1, slice - BUCKETS + 1)
    for (let s = from; s <= slice; s++) this.#expire(slotOf(s))
    this.#sliceOf[slot] = slice
    this.#newest = slice
    return slot
  }

  #expire (slot: number): void {
    if (Number.isNaN(this.#sliceOf[slot])) return
    this.#totalCount -= this.#count[slot]!
    this.#totalFailed -= this.#failed[slot]!
    this.#totalTimed -= this.#timed[slot]!
    if (this.#timed[slot]! > 0) {
      const base = slot * BINS
      for (let i = 0; i < BINS; i++) {
        const n = this.#bins[base + i]!
        if (n !== 0) { this.#totalBins[i]! -= n; this.#bins[base + i] = 0 }
      }
    }
    this.#count[slot] = this.#failed[slot] = this.#timed[slot] = 0
    this.#sliceOf[slot] = NaN
  }
}
