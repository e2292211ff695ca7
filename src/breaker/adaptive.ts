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
 * How minRTT is measured, without shedding anything for it. Envoy pins the limit to `min` while
 * it measures (at start, every minute, after a change), and its users see 503s in every such
 * window (envoyproxy/envoy#8337, the docs' own warning, PR #9007 raising the pin from 1 to 3); our
 * soak saw the same with Core healthy. Here nothing is pinned: every finished request says how
 * many were in flight when it was admitted, and the ones admitted with at most `min` in flight
 * (*no-load samples*: fewer than Core's database pool, so nothing queued ahead of them) are what
 * minRTT is made of. They come for free: the first requests after start are admitted to an idle
 * upstream, quiet moments give more, and a limit sitting at `min` gives nothing else.
 *   - at start the limit is generous ({@link INITIAL_LIMIT}, grown at once by the gradient) until minRTT is
 *     known from `minRttSamples` no-load samples (or 3, once `minRttMaxMs` has passed or
 *     {@link MIN_SAMPLES} loaded requests have finished: a start under overload gives no more than
 *     the first few, and every second spent waiting lets the queue grow); the first interval
 *     that shows a real queue then cuts from what was in flight, not from `max`;
 *   - every `minRttInterval` (± 15 % jitter) minRTT is replaced by the median of the no-load
 *     samples gathered since the last time, when there are at least 3 — up or down;
 *   - an interval whose median is lower than minRTT lowers it at once (a measurement taken during
 *     a cold start or a CPU stall would otherwise let the limit double every interval);
 *   - when the limit has sat at `min` for {@link STUCK_AT_MIN_UPDATES} updates (Envoy PR #10647:
 *     the database got slower for good), minRTT is taken afresh from the next no-load samples —
 *     at `min` every sample is one, so this costs no request either.
 * Samples of requests admitted before a change of minRTT are not mixed into the new one (Envoy
 * PR #11579: requests queued under the old limit skewed each new minRTT upwards).
 *
 * Guards and parameters (defaults from the sources above, except where said):
 * - buffer 25 % (at least {@link MIN_BUFFER_MS}) and the gradient clamp [0.5, 2] (Envoy PR #9038):
 *   normal jitter in latency does not move the limit;
 * - decreases are smoothed (half the way per interval, as Gradient2's `smoothing`): one noisy
 *   interval (a GC pause, a CPU-starved moment on a shared host) takes at most a quarter off;
 *   an interval at least twice as slow as the buffered minRTT (the gradient at its clamp) is a
 *   real queue, not noise, and halves the limit at once — from the generous start, or after the
 *   database slowed, the limit reaches the pool's size within a second or two;
 * - no change while the upstream is not the bottleneck (Gradient2's "app limited" rule, applied
 *   both ways): when the most requests in flight during the interval stayed under half the limit,
 *   a low latency proves nothing about more concurrency, so the limit does not grow (otherwise a
 *   quiet night would let it drift to `max` and the morning's burst would meet no limit at all),
 *   and a high latency is not a queue the limit let build, so it does not cut (a cut would shed
 *   healthy traffic and relieve nothing); one exception: below the healthy ceiling
 *   ({@link AdaptiveLimit.healthyCeiling}) and with no queue, it grows back towards it, so a limit
 *   cut by one stall does not stay cut under moderate traffic;
 * - a cut needs a queue that *lasts* or a limit that *holds*: {@link SUSTAINED_INTERVALS} queued
 *   intervals in a row, unless the limit shed requests in the interval (it is what admits the
 *   load: a real overload sheds in every interval, so its cuts are not delayed). The real Core
 *   slows for a second or two now and then with nothing wrong (Python's garbage collector, a
 *   database reconnect, the first seconds after a burst): 10× its minRTT with up to 16 in flight at
 *   half its capacity. Each such moment cut the limit to 4–7 and shed what came next (35 requests
 *   in 3 minutes, 51 in 10); a slowness that lasts longer than a second is cut as before;
 * - the healthy ceiling ({@link AdaptiveLimit.healthyCeiling}) is the generous start or what
 *   arrives in {@link BURST_BUDGET_MS}, whichever is larger: a stall at a few hundred requests a
 *   second piles up more than 20 in flight, and they drain by themselves once the upstream moves;
 * - sampleInterval 250 ms (Envoy: 100 ms): Core's latency is tens of ms, and at a few hundred
 *   requests per second 100 ms holds too few samples for a median; an interval with fewer than
 *   {@link MIN_SAMPLES} samples is extended;
 * - min 3 (Envoy's pinned minRTT concurrency; PR #9007 raised it from 1): no-load samples are the
 *   ones admitted with at most this many in flight, so it must stay near Core's pool size, or
 *   minRTT already includes queueing. It is also the floor the breaker keeps open on a latency
 *   trip (core.ts);
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

/** The limit before minRTT is known (at most `max`, at least `min`). */
export const INITIAL_LIMIT = 20
/**
 * Queued intervals in a row before the limit is cut, when it shed nothing in them (≈ 1 s at the
 * 250 ms interval): a stall drains by itself within one or two intervals, an overload does not.
 */
export const SUSTAINED_INTERVALS = 4
/**
 * The healthy ceiling holds the requests that arrive in this long: what piles up while a healthy
 * upstream stalls. The healthy ceiling = max(INITIAL_LIMIT, arrival rate × this), at most `max`.
 */
export const BURST_BUDGET_MS = 500

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

/** No-load samples kept for one minRTT figure; beyond this the newest overwrite the oldest. */
const NO_LOAD_CAP = 256

export class AdaptiveLimit {
  #o: AdaptiveLimitOptions
  #limit: number
  #minRtt: number | undefined
  #lastSampleRtt: number | undefined
  #lastGradient: number | undefined
  /** minRTT is (re)taken from the next no-load samples: at start, and after sitting at `min` */
  #measuring = true
  /** requests admitted before this instant belong to the previous minRTT */
  #measureFrom = -Infinity
  #measureStartedAt: number | undefined
  /** loaded (not no-load) samples since the measurement began */
  #measureLoaded = 0
  #nextRefreshAt = Infinity
  #stuckAtMin = 0
  readonly #samples = new Float64Array(SAMPLE_CAP)
  #n = 0
  readonly #noLoad = new Float64Array(NO_LOAD_CAP)
  #nNoLoad = 0
  #intervalStart: number | undefined
  #maxInFlight = 0
  /** the limit refused a request during the interval */
  #shed = false
  /** queued (gradient < 1, not app-limited) intervals in a row without a shed */
  #queued = 0
  /** where an app-limited limit grows back to: see BURST_BUDGET_MS */
  #ceiling = INITIAL_LIMIT

  constructor (options: AdaptiveLimitOptions) {
    this.#o = options
    // generous at start (Netflix's initialLimit, 20): until minRTT is known nothing says the
    // upstream needs protecting, but `max` (128) let a slow Core's queue grow to seconds before
    // the first answers came back (measured: 53 in flight, 4 s without a 2xx, on the model)
    this.#limit = Math.min(options.max, Math.max(options.min, INITIAL_LIMIT))
  }

  /** The limit in force. */
  limit (_now: number): number { return Math.floor(this.#limit) }

  get minRttMs (): number | undefined { return this.#minRtt }
  get sampleRttMs (): number | undefined { return this.#lastSampleRtt }
  get gradient (): number | undefined { return this.#lastGradient }
  /** true until minRTT is known (and while it is retaken after sitting at `min`) */
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

  /** Called when the limit (or a key's share of it) refused a request: the limit is what admits the load. */
  noteShed (): void {
    this.#shed = true
  }

  /** Where an app-limited limit grows back to (see {@link BURST_BUDGET_MS}). */
  get healthyCeiling (): number { return this.#ceiling }

  /**
   * The breaker tripped on latency: the limit let a queue grow past what clients accept. Start
   * again from `min` and grow back on measured latency (the gradient doubles it at most per
   * interval), rather than return to the figure that tripped.
   */
  drop (): void {
    this.#limit = this.#o.min
    this.#stuckAtMin = 0
  }

  /**
   * A finished request: its latency, when it was admitted, and how many were in flight then
   * (itself included). Updates the limit when an interval is complete.
   */
  sample (now: number, latencyMs: number, admittedAt: number, inFlightAtAdmit: number): void {
    if (admittedAt >= this.#measureFrom) {
      if (inFlightAtAdmit <= this.#o.min) this.#noLoad[this.#nNoLoad++ % NO_LOAD_CAP] = latencyMs
      if (this.#measuring) {
        this.#measureStartedAt ??= now
        if (inFlightAtAdmit > this.#o.min) this.#measureLoaded++
        const n = this.#nNoLoad
        // enough no-load samples; or at least 3 when no more are coming: the time is up, or as many
        // loaded ones have finished (a busy start: the first requests found the upstream idle, the
        // rest will not)
        if (n >= this.#o.minRttSamples || (n >= 3 && (now - this.#measureStartedAt >= this.#o.minRttMaxMs || this.#measureLoaded >= MIN_SAMPLES))) this.#takeMinRtt(now)
      } else if (now >= this.#nextRefreshAt) {
        if (this.#nNoLoad >= 3) this.#takeMinRtt(now)
        else this.#nextRefreshAt = now + this.#o.minRttIntervalMs
      }
    }
    if (this.#minRtt === undefined) return
    this.#intervalStart ??= now
    this.#samples[(this.#n++) % SAMPLE_CAP] = latencyMs
    if (now - this.#intervalStart < this.#o.sampleIntervalMs || this.#n < MIN_SAMPLES) return
    this.#update(now)
  }

  #update (now: number): void {
    const n = Math.min(this.#n, SAMPLE_CAP)
    const sampleRtt = median(this.#samples, n)
    // an interval faster than minRTT proves the no-load latency is lower than measured (a cold
    // start, a noisy neighbour during the measurement): believe the faster figure at once
    if (sampleRtt < this.#minRtt!) this.#minRtt = sampleRtt
    const minRtt = this.#minRtt!
    const buffered = Math.max(minRtt * (1 + this.#o.buffer), minRtt + MIN_BUFFER_MS)
    let gradient = buffered / Math.max(sampleRtt, 0.001)
    gradient = Math.min(GRADIENT_MAX, Math.max(GRADIENT_MIN, gradient))
    const appLimited = this.#maxInFlight < this.#limit / 2
    // the requests that finished per ms in this interval ≈ the arrival rate while nothing is shed
    const elapsed = Math.max(1, now - this.#intervalStart!)
    if (appLimited && !this.#shed) this.#ceiling = Math.min(this.#o.max, Math.max(INITIAL_LIMIT, Math.ceil(this.#n / elapsed * BURST_BUDGET_MS)))
    const queued = !appLimited && gradient < 1
    this.#queued = queued && !this.#shed ? this.#queued + 1 : 0
    let next = this.#limit
    // app-limited, neither way: with fewer than half the limit in flight the limit is not what
    // admits the load, so a low latency proves nothing about more concurrency (no growth) and a
    // high one is the upstream's own slowness, not a queue we let build (no cut). Cutting then
    // sheds requests and relieves nothing: against the real Core (2 sync workers, ~40 flags/s,
    // 20 % of its capacity) one interval of Python or GC jitter took the limit from 21 to 3 and
    // shed 5–13 requests a second with Core healthy. A slowness that does build a queue raises
    // what is in flight (Little's law) past half the limit, and the cuts resume.
    if (appLimited && gradient >= 1 && this.#limit < this.#ceiling) {
      // app-limited and no queue, below the healthy ceiling: grow back towards it (not beyond, so
      // a quiet night still cannot drift to `max`). Otherwise a limit cut by one stall stays cut
      // for as long as traffic stays moderate, and every later burst above it is shed: the real
      // Core at half its capacity shed 79 requests in 10 minutes that way, its limit at 5–7
      const scaled = gradient * this.#limit
      next = Math.min(this.#ceiling, scaled + Math.sqrt(scaled))
    } else if (this.#queued > 0 && this.#queued < SUSTAINED_INTERVALS) {
      // a queue nobody was refused for, not yet a second old: hold (see SUSTAINED_INTERVALS)
    } else if (!appLimited) {
      // at the clamp the queue is real, not noise: scale what was actually in flight, not a limit
      // that was never reached (the generous start: 128 allowed, 20 sent, a queue already)
      const base = gradient <= GRADIENT_MIN ? Math.min(this.#limit, Math.max(this.#o.min, this.#maxInFlight)) : this.#limit
      const scaled = gradient * base
      next = scaled + Math.sqrt(scaled)
      // down by half the way per interval (Gradient2's smoothing) unless the gradient is at its
      // clamp: one noisy interval costs a quarter at most, a real queue halves the limit at once
      if (next < this.#limit && gradient > GRADIENT_MIN) next = this.#limit - DOWN_SMOOTHING * (this.#limit - next)
    }
    next = Math.min(this.#o.max, Math.max(this.#o.min, next))
    this.#limit = next
    this.#lastSampleRtt = sampleRtt
    this.#lastGradient = gradient
    this.#resetInterval(now)

    // the limit in force is the whole part: smoothing approaches min without ever reaching it exactly
    this.#stuckAtMin = Math.floor(next) <= this.#o.min ? this.#stuckAtMin + 1 : 0
    if (this.#stuckAtMin >= STUCK_AT_MIN_UPDATES && !this.#measuring) {
      // the upstream got slower for good: take minRTT afresh (at `min`, every sample is no-load)
      this.#measuring = true
      this.#measureFrom = now
      this.#measureStartedAt = undefined
      this.#measureLoaded = 0
      this.#nNoLoad = 0
      this.#stuckAtMin = 0
    }
  }

  #takeMinRtt (now: number): void {
    this.#minRtt = median(this.#noLoad, Math.min(this.#nNoLoad, NO_LOAD_CAP))
    this.#nNoLoad = 0
    this.#measuring = false
    this.#measureStartedAt = undefined
    this.#measureLoaded = 0
    const random = this.#o.random ?? Math.random
    const jitter = 1 + this.#o.jitter * (2 * random() - 1)
    this.#nextRefreshAt = now + this.#o.minRttIntervalMs * jitter
    this.#resetInterval(now)
  }

  #resetInterval (now: number): void {
    this.#n = 0
    this.#intervalStart = now
    this.#maxInFlight = 0
    this.#shed = false
  }
}
