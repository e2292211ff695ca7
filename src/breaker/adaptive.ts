/**
 * `maxInFlight: auto`: an adaptive concurrency limit that finds how many requests the upstream can
 * work on at once without queueing, from measured latency alone.
 *
 * Algorithm: Envoy's adaptive-concurrency gradient controller
 * (envoyproxy/envoy: source/extensions/filters/http/adaptive_concurrency/controller/gradient_controller.cc),
 * with two guards borrowed from Netflix concurrency-limits' Gradient2Limit. Every `sampleInterval`:
 *
 *     sampleRTT = median latency of the requests that finished in the interval
 *     gradient  = clamp(minRTT · (1 + buffer) / sampleRTT, 0.5, 2)
 *     limit     = clamp(gradient · limit + √(gradient · limit), min, max)      (√ = headroom)
 *
 * Why this one. Core's bottleneck is a database connection pool of P connections with a FIFO
 * queue: up to P concurrent requests run at the no-load latency (minRTT), beyond that each extra
 * one only waits, and latency grows as concurrency / P. The gradient is then (1 + buffer) · P / limit,
 * so one step takes the limit to about 1.25·P + √(1.25·P): the pool stays busy (full goodput) and
 * the queue in front of it stays a few requests long (latency ≈ 1.5× minRTT instead of growing
 * until clients time out). Gradient2 alone compares against a long-term *average* RTT, which
 * follows a sustained queue upwards and lets the limit creep with it (envoyproxy/envoy PR #11579,
 * Netflix/concurrency-limits#34 describe both failure modes); Envoy's minRTT is measured, not
 * averaged, so a sustained overload cannot move it.
 *
 * How minRTT is measured: the limit is pinned to `min` until `minRttSamples` requests have finished
 * (or `minRttMaxMs` has passed with at least 3), and minRTT is their median. Below the pool size
 * nothing queues, so that is the no-load latency. An interval whose median is lower than minRTT
 * lowers it at once (a measurement taken during a cold start or a CPU stall would otherwise let
 * the limit double every interval until the next measurement, a minute later). It is re-measured at start, every
 * `minRttInterval` (± 15 % jitter, so replicas do not pin together), when the limit has sat at
 * `min` for {@link STUCK_AT_MIN_UPDATES} updates in a row (Envoy PR #10647: the database got slower
 * for good, the old minRTT no longer describes it), and after the breaker closes again. Pinning
 * sheds what does not fit under `min` for about a second a minute; after a periodic measurement
 * the limit goes back to where it was instead of climbing again from `min` (the dip Envoy users
 * reported in envoyproxy/envoy#8337).
 *
 * Guards and parameters (defaults from the sources above, except where said):
 * - buffer 25 % (at least {@link MIN_BUFFER_MS}) and the gradient clamp [0.5, 2] (Envoy PR #9038):
 *   normal jitter in latency does not move the limit;
 * - decreases are smoothed (half the way per interval, as Gradient2's `smoothing`): one noisy
 *   interval (a GC pause, a CPU-starved moment on a shared host) takes at most a quarter off,
 *   while a real queue, which shows in every interval, still halves the limit within a second;
 * - no growth while the upstream is not the bottleneck (Gradient2's "app limited" rule): when the
 *   most requests in flight during the interval stayed under half the limit, a low latency proves
 *   nothing about more concurrency, so the limit does not grow — otherwise a quiet night would let
 *   it drift to `max` and the morning's burst would meet no limit at all;
 * - sampleInterval 250 ms (Envoy: 100 ms): Core's latency is tens of ms, and at a few hundred
 *   requests per second 100 ms holds too few samples for a median; an interval with fewer than
 *   {@link MIN_SAMPLES} samples is extended;
 * - min 3 (Envoy's pinned minRTT concurrency; PR #9007 raised it from 1): it must stay below
 *   Core's database pool, or minRTT already includes queueing;
 * - max: the upstream's `maxConnections` (more could not be sent at once anyway).
 *
 * Pure: every method takes `now` (ms); nothing here sets a timer.
 */

export interface AdaptiveLimitOptions {
  min: number
  max: number
  /** minRTT · (1 + buffer) is the latency that counts as "no queue" (0.25 = 25 %) */
  buffer: number
  sampleIntervalMs: number
  minRttIntervalMs: number
  minRttSamples: number
  minRttMaxMs: number
  /** 0–1 share of minRttInterval added or removed at random */
  jitter: number
  /** for tests: a deterministic source instead of Math.random */
  random?: () => number
}

export const ADAPTIVE_DEFAULTS = Object.freeze({
  min: 3,
  buffer: 0.25,
  sampleIntervalMs: 250,
  minRttIntervalMs: 60_000,
  minRttSamples: 25,
  minRttMaxMs: 2_000,
  jitter: 0.15
})

/** Fewer samples than this in an interval: wait for more before judging. */
export const MIN_SAMPLES = 5
/** Updates in a row at `min` after which minRTT is measured again. */
export const STUCK_AT_MIN_UPDATES = 5
/**
 * The buffer is at least this many ms: at a minRTT of a few ms, scheduling jitter alone is more
 * than 25 % and would read as a queue. A real queue in front of a database pool adds whole
 * service times, far more than this.
 */
export const MIN_BUFFER_MS = 10
/** Share of a decrease applied per interval. */
export const DOWN_SMOOTHING = 0.5
const GRADIENT_MIN = 0.5
const GRADIENT_MAX = 2
/** samples kept per interval; beyond this the newest overwrite the oldest */
const SAMPLE_CAP = 1024

function median (a: Float64Array, n: number): number {
  const s = a.subarray(0, n).sort()
  return n % 2 === 1 ? s[(n - 1) >> 1]! : (s[n / 2 - 1]! + s[n / 2]!) / 2
}

export class AdaptiveLimit {
  #o: AdaptiveLimitOptions
  #limit: number
  #minRtt: number | undefined
  #lastSampleRtt: number | undefined
  #lastGradient: number | undefined
  /** pinned at `min` while measuring minRTT */
  #measuring = true
  /** requests admitted before this instant ran at the old concurrency: not no-load samples */
  #measureFrom = -Infinity
  #measureStartedAt: number | undefined
  /** the limit to go back to after a periodic measurement */
  #limitBeforeMeasure: number | undefined
  #nextMeasureAt = Infinity
  #stuckAtMin = 0
  readonly #samples = new Float64Array(SAMPLE_CAP)
  #n = 0
  #intervalStart: number | undefined
  #maxInFlight = 0

  constructor (options: AdaptiveLimitOptions) {
    this.#o = options
    this.#limit = options.min
  }

  /** The limit in force: `min` while minRTT is being measured. */
  limit (now: number): number {
    if (!this.#measuring && now >= this.#nextMeasureAt) this.#startMeasuring(now, true)
    return this.#measuring ? this.#o.min : Math.floor(this.#limit)
  }

  get minRttMs (): number | undefined { return this.#minRtt }
  get sampleRttMs (): number | undefined { return this.#lastSampleRtt }
  get gradient (): number | undefined { return this.#lastGradient }
  get measuring (): boolean { return this.#measuring }

  /** New bounds on reload; the learned limit and minRTT are kept (clamped into the new bounds). */
  configure (options: AdaptiveLimitOptions): void {
    this.#o = options
    this.#limit = Math.min(options.max, Math.max(options.min, this.#limit))
  }

  /** Called with the number in flight after each admission: shows whether the limit is the bottleneck. */
  noteInFlight (inFlight: number): void {
    if (inFlight > this.#maxInFlight) this.#maxInFlight = inFlight
  }

  /** Conditions changed (the breaker closed again): measure minRTT afresh before trusting it. */
  remeasure (now: number): void {
    this.#startMeasuring(now, this.#minRtt !== undefined)
  }

  /**
   * A finished request's latency (`admittedAt`: when it was let through). Updates the limit when
   * an interval is complete.
   */
  sample (now: number, latencyMs: number, admittedAt: number): void {
    if (this.#measuring && admittedAt < this.#measureFrom) return
    this.#intervalStart ??= now
    if (this.#n < SAMPLE_CAP) this.#samples[this.#n++] = latencyMs
    else this.#samples[(this.#n++) % SAMPLE_CAP] = latencyMs

    if (this.#measuring) {
      this.#measureStartedAt ??= now
      const enough = this.#n >= this.#o.minRttSamples || (this.#n >= 3 && now - this.#measureStartedAt >= this.#o.minRttMaxMs)
      if (enough) this.#finishMeasuring(now)
      return
    }
    if (now - this.#intervalStart < this.#o.sampleIntervalMs || this.#n < MIN_SAMPLES) return
    this.#update(now)
  }

  #update (now: number): void {
    const n = Math.min(this.#n, SAMPLE_CAP)
    const sampleRtt = median(this.#samples, n)
    // an interval faster than minRTT proves the no-load latency is lower than measured (a cold
    // start, a noisy neighbour during the measurement): believe the faster figure at once. minRTT
    // only ever rises through a pinned measurement, never by following a queue
    if (sampleRtt < this.#minRtt!) this.#minRtt = sampleRtt
    const minRtt = this.#minRtt!
    const buffered = Math.max(minRtt * (1 + this.#o.buffer), minRtt + MIN_BUFFER_MS)
    let gradient = buffered / Math.max(sampleRtt, 0.001)
    gradient = Math.min(GRADIENT_MAX, Math.max(GRADIENT_MIN, gradient))
    const appLimited = this.#maxInFlight < this.#limit / 2
    let next = this.#limit
    if (gradient < 1 || !appLimited) {
      const scaled = gradient * this.#limit
      next = scaled + Math.sqrt(scaled)
      // down by half the way per interval (Gradient2's smoothing): one noisy interval costs a
      // quarter of the limit at most, a real queue still halves it within a second
      if (next < this.#limit) next = this.#limit - DOWN_SMOOTHING * (this.#limit - next)
    }
    next = Math.min(this.#o.max, Math.max(this.#o.min, next))
    this.#limit = next
    this.#lastSampleRtt = sampleRtt
    this.#lastGradient = gradient
    this.#resetInterval(now)

    // the limit in force is the whole part: smoothing approaches min without ever reaching it exactly
    this.#stuckAtMin = Math.floor(next) <= this.#o.min ? this.#stuckAtMin + 1 : 0
    if (this.#stuckAtMin >= STUCK_AT_MIN_UPDATES) this.#startMeasuring(now, false)
  }

  #startMeasuring (now: number, restoreAfter: boolean): void {
    this.#limitBeforeMeasure = restoreAfter ? this.#limit : undefined
    this.#measuring = true
    this.#measureFrom = now
    this.#measureStartedAt = now
    this.#stuckAtMin = 0
    this.#nextMeasureAt = Infinity
    this.#resetInterval(now)
  }

  #finishMeasuring (now: number): void {
    this.#minRtt = median(this.#samples, Math.min(this.#n, SAMPLE_CAP))
    this.#measuring = false
    if (this.#limitBeforeMeasure !== undefined) this.#limit = this.#limitBeforeMeasure
    this.#limitBeforeMeasure = undefined
    const random = this.#o.random ?? Math.random
    const jitter = 1 + this.#o.jitter * (2 * random() - 1)
    this.#nextMeasureAt = now + this.#o.minRttIntervalMs * jitter
    this.#resetInterval(now)
  }

  #resetInterval (now: number): void {
    this.#n = 0
    this.#intervalStart = now
    this.#maxInFlight = 0
  }
}
