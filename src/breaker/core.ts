/**
 * One upstream's breaker and load shedder, pure: no fastify, no timers; every decision is taken
 * on the injected clock when a request asks (admit) or reports (finish). The plugin wraps it into
 * the {@link UpstreamGate} the upstream client calls.
 *
 * States:
 *
 *     closed ──trip──▶ open ──openFor elapsed──▶ half-open ──enough trials good──▶ closed (recovery ramp)
 *                       ▲                            │
 *                       └── trials of 3 clients bad ─┘  (openFor doubles, capped)
 *
 * - closed: every outcome is recorded in sliding windows ({@link SlidingWindow}); the breaker trips
 *   when the latency percentile passes `latency.above` or the error rate passes `errorRate.above`,
 *   each only with at least `minRequests` outcomes in its window AND slow (above `latency.above`)
 *   or failed outcomes from at least 3 distinct clients ({@link ClientEvidence}): one client's
 *   slow or failing requests never open the breaker for everyone. Only upstream outcomes count:
 *   5xx, timeouts and unreachable are failures, any other status a success; `abandoned` (the
 *   gateway gave up for its own reasons) counts nowhere. The gateway's own 429/403/503 never get
 *   here: they are answered before any admission.
 * - open: with `maxInFlight` set and a latency trip, a trickle goes on at the limit's floor: a
 *   fixed limit's ramp start, or `auto`'s `min`, from which the adaptive limit grows again as far
 *   as measured latency allows: a slow Core still serves what it can, and the trip costs the
 *   queue, not the service. Otherwise (an error trip, or
 *   no `maxInFlight`) everything is shed with Retry-After = the time left. The cache serves stale
 *   and Edge takes what the policy sends there either way (`isOpen`).
 * - half-open: up to `halfOpenRequests` trial requests at a time, at most one per client. Trials
 *   from 3 distinct clients that fail or are slow (latency above `latency.above`; fewer when
 *   `halfOpenRequests` is under 3) open the breaker again for twice as long as the last time (×2 per
 *   failed round, capped at 8× `openFor` or 5 minutes, whichever is larger than `openFor` and
 *   smaller of the two): one client cannot keep it open. Enough good trials close it. The trickle
 *   of a latency trip goes on beside the trials.
 * - recovery ramp (Traefik's recoveryDuration): for `recovery` after closing, traffic comes back
 *   gradually instead of the whole backlog at once. We ramp the *concurrency limit* rather than a
 *   random share of requests: a share of a large backlog can still be more than a recovering
 *   database takes, a concurrency cap cannot. A fixed limit's cap starts at the floor and grows
 *   linearly to the full limit; `maxInFlight: auto` needs no ramp on top: the trip dropped it to
 *   `min` and it grows back on measured latency (a ramp would hold it unused, and an unused limit
 *   does not grow). Without `maxInFlight` the share of admitted requests ramps from 10 % to 100 %
 *   (an accumulator, not a coin toss). The windows start empty on closing, so the figures that
 *   opened the breaker cannot open it again, and requests admitted before it opened do not count.
 * - `maxInFlight` (a bulkhead): beyond the limit — fixed, or adaptive ({@link AdaptiveLimit}) —
 *   requests are shed at once with Retry-After: 1, never queued, and who gets a slot is fair
 *   between environment keys ({@link FairShare}); the adaptive limit is told (a limit that refuses
 *   is what admits the load, and its cuts are not delayed).
 *
 * Each transition is reported once through `onTransition`, with its reason and the figures.
 */
import type { GateClient, UpstreamOutcome } from '../upstream/gate.js'
import { Admission, clientId, GATEWAY_CLIENT, partitionOf } from './admission.js'
import { AdaptiveLimit, type AdaptiveLimitOptions } from './adaptive.js'
import { ClientEvidence, MIN_CLIENTS } from './evidence.js'
import { FairShare } from './fair-share.js'
import { SlidingWindow } from './window.js'

import type { Clock } from '../shared/clock.js'

export type { Clock, GateClient, UpstreamOutcome }
export { Admission, GATEWAY_CLIENT } from './admission.js'

export type BreakerState = 'closed' | 'open' | 'half-open'

export interface BreakerConfig {
  latency: { percentile: number; aboveMs: number; windowMs: number; minRequests: number } | undefined
  errorRate: { above: number; windowMs: number; minRequests: number } | undefined
  /** undefined: no cap; a number: a fixed bulkhead; an object: the adaptive limit's options */
  maxInFlight: number | AdaptiveLimitOptions | undefined
  openForMs: number
  halfOpenRequests: number
  /** 0 turns the ramp off */
  recoveryMs: number
}

export interface BreakerFigures {
  /** the window's latency at the configured percentile (95th when none is configured); null when empty */
  p95Ms: number | null
  /** failed share 0–1 over the error window */
  errorRate: number
  /** outcomes in the error window */
  requests: number
  inFlight: number
  /** the concurrency limit in force (ramp, adaptive limit and open trickle applied); null when unlimited */
  limit: number | null
  /** partitions (environment keys, or addresses without a key) active in the last second */
  activeKeys: number
}

export interface BreakerTransition extends BreakerFigures {
  upstream: string
  from: BreakerState
  to: BreakerState
  reason: string
  /** for `to: open`: how long it stays open */
  openForMs?: number
}

export interface BreakerStatus extends BreakerFigures {
  state: BreakerState
  /** why it is in this state (null when it never left closed) */
  reason: string | null
  /** seconds until half-open, while open */
  retryAfterS?: number
  /** `maxInFlight: auto` only: the learned no-load latency and the latest interval's median */
  minRttMs?: number | null
  sampleRttMs?: number | null
}

/** Minimum time between two percentile computations while all samples stay under the threshold (Traefik's checkPeriod). */
export const CHECK_PERIOD_MS = 100
/** Open at most this long however often trials fail, unless `openFor` itself is longer. */
export const MAX_OPEN_MS = 300_000
export const MAX_BACKOFF_FACTOR = 8
/** The recovery ramp starts at this share of the traffic (or of the limit). */
export const RAMP_START = 0.1
const DEFAULT_PERCENTILE = 95
const DEFAULT_WINDOW_MS = 10_000

function seconds (ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000} s` : `${ms} ms`
}

function describeOutcome (o: UpstreamOutcome): string {
  switch (o.kind) {
    case 'response': return `status ${o.status} after ${Math.round(o.latencyMs)} ms`
    case 'timeout': return `timeout after ${Math.round(o.latencyMs)} ms`
    case 'unreachable': return 'unreachable'
    default: return 'abandoned'
  }
}

export class Breaker {
  readonly upstream: string
  #config: BreakerConfig
  readonly #clock: Clock
  readonly #onTransition: ((t: BreakerTransition) => void) | undefined

  #state: BreakerState = 'closed'
  #reason: string | null = null
  #epoch = 0
  readonly #fair = new FairShare()
  #lastAdmitAt = -Infinity

  #latWindow: SlidingWindow
  #errWindow: SlidingWindow
  #latEvidence: ClientEvidence
  #errEvidence: ClientEvidence
  #nextCheckAt = 0

  #openUntil = 0
  #openForMs = 0
  /** open on a latency trip with a limit in force: a trickle at the floor goes on */
  #trickle = false
  /** half-open rounds that failed in a row: the back-off exponent */
  #failedRounds = 0
  /** half-open: clients with a trial in flight, clients whose trial was bad, good trials */
  readonly #trialClients = new Set<string>()
  readonly #badTrialClients = new Set<string>()
  #goodTrials = 0

  #recoveryStart = -Infinity
  /** thousandths of a request the share ramp may admit; the first one always passes */
  #rampCredit = 1000

  #adaptive: AdaptiveLimit | undefined

  constructor (upstream: string, config: BreakerConfig, opts: { clock: Clock; onTransition?: (t: BreakerTransition) => void }) {
    this.upstream = upstream
    this.#config = config
    this.#clock = opts.clock
    this.#onTransition = opts.onTransition
    this.#latWindow = new SlidingWindow(config.latency?.windowMs ?? DEFAULT_WINDOW_MS)
    this.#errWindow = this.#windowFor(config.errorRate?.windowMs ?? DEFAULT_WINDOW_MS)
    this.#latEvidence = new ClientEvidence(this.#latWindow.windowMs)
    this.#errEvidence = new ClientEvidence(this.#errWindow.windowMs)
    if (typeof config.maxInFlight === 'object') this.#adaptive = new AdaptiveLimit(config.maxInFlight)
  }

  get config (): BreakerConfig { return this.#config }
  get inFlight (): number { return this.#fair.total }
  /** The concurrency limit in force now (ramp, adaptive limit and open trickle applied), or null when unlimited. */
  limit (): number | null { return this.#limit(this.#clock()) }
  /** Clock time of the last admission (-Infinity before any): the probe only runs when traffic is quiet. */
  get lastAdmitAt (): number { return this.#lastAdmitAt }
  /** Requests in flight of one partition (tests, status). */
  inFlightOf (client: GateClient | undefined): number { return this.#fair.inFlightOf(partitionOf(client)) }

  /** The current state; moves open → half-open when openFor has passed. */
  state (): BreakerState {
    if (this.#state === 'open' && this.#clock() >= this.#openUntil) this.#toHalfOpen()
    return this.#state
  }

  /** True while open: the cache serves stale and the policy's `whenOpen` routes go to Edge. */
  isOpen (): boolean { return this.state() === 'open' }

  /**
   * A reload: thresholds, windows and limits take the new values; the state, the requests in
   * flight and (when still adaptive) the learned limit are kept. A policy without any breaker
   * rule for this upstream closes it.
   */
  configure (config: BreakerConfig): void {
    const old = this.#config
    this.#config = config
    if ((old.latency?.windowMs ?? DEFAULT_WINDOW_MS) !== (config.latency?.windowMs ?? DEFAULT_WINDOW_MS)) {
      this.#latWindow = new SlidingWindow(config.latency?.windowMs ?? DEFAULT_WINDOW_MS)
      this.#latEvidence = new ClientEvidence(this.#latWindow.windowMs)
    }
    const errWindow = this.#windowFor(config.errorRate?.windowMs ?? DEFAULT_WINDOW_MS, this.#errWindow)
    if (errWindow !== this.#errWindow) { this.#errWindow = errWindow; this.#errEvidence = new ClientEvidence(errWindow.windowMs) }
    if (typeof config.maxInFlight === 'object') {
      if (this.#adaptive === undefined) this.#adaptive = new AdaptiveLimit(config.maxInFlight)
      else this.#adaptive.configure(config.maxInFlight)
    } else {
      this.#adaptive = undefined
    }
    if (config.maxInFlight === undefined) this.#trickle = false
    if (this.#state !== 'closed' && config.latency === undefined && config.errorRate === undefined) {
      this.#close('the policy no longer has a trip rule for this upstream', false)
    }
  }

  /**
   * Let one request of `client` through, or not. Returns its {@link Admission}, or the
   * Retry-After in whole seconds (≥ 1) when it must be shed.
   */
  admit (client?: GateClient): Admission | number {
    const now = this.#clock()
    const id = clientId(client)
    const partition = partitionOf(client)
    let trial = false
    let limit: number | null
    switch (this.#state) {
      case 'open':
        if (now < this.#openUntil) {
          if (!this.#trickle) return Math.max(1, Math.ceil((this.#openUntil - now) / 1000))
          limit = this.#limit(now)!
          break
        }
        this.#toHalfOpen()
        // falls through: the first request after openFor is a trial
      case 'half-open':
        limit = this.#trickle ? this.#limit(now)! : 0
        if (this.#trialClients.size < this.#config.halfOpenRequests && !this.#trialClients.has(id)) {
          trial = true
          // a trial is let through whatever the trickle holds: it is what decides
          limit = Infinity
        }
        break
      default: {
        limit = this.#limit(now)
        if (limit === null && now - this.#recoveryStart < this.#config.recoveryMs) {
          // no limit to ramp: admit a growing share, deterministically
          // in thousandths, so that 10 × 10 % is exactly one request
          this.#rampCredit += Math.round(this.#rampShare(now) * 1000)
          if (this.#rampCredit < 1000) return 1
          this.#rampCredit -= 1000
        }
      }
    }
    if (!this.#fair.tryAcquire(partition, limit ?? Infinity, now)) {
      this.#adaptive?.noteShed()
      return 1
    }
    if (trial) this.#trialClients.add(id)
    const inFlight = this.#fair.total
    this.#lastAdmitAt = now
    this.#adaptive?.noteInFlight(inFlight)
    return new Admission(this, now, this.#epoch, trial, id, partition, inFlight)
  }

  /** Called by {@link Admission.finish}. */
  settle (a: Admission, outcome: UpstreamOutcome): void {
    this.#fair.release(a.partition)
    const now = this.#clock()
    const current = a.epoch === this.#epoch
    if (a.trial && current && this.#state === 'half-open') this.#trialClients.delete(a.client)
    if (outcome.kind === 'abandoned') return
    const failed = outcome.kind !== 'response' || outcome.status >= 500
    if (outcome.kind !== 'unreachable') this.#adaptive?.sample(now, outcome.latencyMs, a.admittedAt, a.inFlightAtAdmit)

    if (!current) return
    const latencyMs = outcome.kind === 'unreachable' ? undefined : outcome.latencyMs
    const lat = this.#config.latency
    const slow = lat !== undefined && latencyMs !== undefined && latencyMs > lat.aboveMs
    if (a.trial) {
      if (this.#state !== 'half-open') return
      const h = this.#config.halfOpenRequests
      const needBad = Math.min(MIN_CLIENTS, h)
      if (failed || slow) {
        this.#badTrialClients.add(a.client)
        const what = failed ? `trial failed: ${describeOutcome(outcome)}` : `trial too slow: ${Math.round(latencyMs!)} ms > ${lat!.aboveMs} ms`
        // the probe's trial is trusted on its own (see ClientEvidence)
        if (this.#badTrialClients.size >= needBad || a.client === GATEWAY_CLIENT) this.#reopen(now, `${what} (bad trials from ${this.#badTrialClients.size} clients)`)
        return
      }
      // as many good trials as it takes for the bad ones to be a minority that cannot reopen it
      if (++this.#goodTrials >= h - needBad + 1) this.#close(`${this.#goodTrials} trial request${this.#goodTrials === 1 ? '' : 's'} succeeded`, true)
      return
    }
    if (this.#state !== 'closed') return
    this.#latWindow.record(now, failed, latencyMs)
    if (this.#errWindow !== this.#latWindow) this.#errWindow.record(now, failed, undefined)
    if (slow) this.#latEvidence.record(now, a.client)
    if (failed) this.#errEvidence.record(now, a.client)
    this.#maybeTrip(now, failed, latencyMs)
  }

  status (): BreakerStatus {
    const state = this.state()
    const now = this.#clock()
    const s: BreakerStatus = { state, reason: this.#reason, ...this.#figures(now) }
    if (state === 'open') s.retryAfterS = Math.max(1, Math.ceil((this.#openUntil - now) / 1000))
    if (this.#adaptive !== undefined) {
      s.minRttMs = this.#adaptive.minRttMs === undefined ? null : round1(this.#adaptive.minRttMs)
      s.sampleRttMs = this.#adaptive.sampleRttMs === undefined ? null : round1(this.#adaptive.sampleRttMs)
    }
    return s
  }

  #windowFor (windowMs: number, current?: SlidingWindow): SlidingWindow {
    if (windowMs === this.#latWindow.windowMs) return this.#latWindow
    if (current !== undefined && current !== this.#latWindow && current.windowMs === windowMs) return current
    return new SlidingWindow(windowMs)
  }

  #figures (now: number): BreakerFigures {
    const p = this.#latWindow.percentile(now, this.#config.latency?.percentile ?? DEFAULT_PERCENTILE)
    return {
      p95Ms: p === undefined ? null : round1(p),
      errorRate: Math.round(this.#errWindow.errorRate(now) * 1000) / 1000,
      requests: this.#errWindow.count(now),
      inFlight: this.#fair.total,
      limit: this.#limit(now),
      activeKeys: this.#fair.active
    }
  }

  /** What a latency trip keeps open and the recovery ramp starts from; null without a limit. */
  #floor (): number | null {
    const max = this.#config.maxInFlight
    if (max === undefined) return null
    if (typeof max === 'object') return max.min
    return Math.min(max, Math.max(this.#config.halfOpenRequests, Math.ceil(max * RAMP_START - 1e-9)))
  }

  /** The concurrency limit in force, or null when there is none. */
  #limit (now: number): number | null {
    const max = this.#config.maxInFlight
    if (max === undefined) return null
    if (this.#state !== 'closed' && !this.#trickle) return 0
    // `auto`: the adaptive limit, which a latency trip dropped to its floor and which grows back
    // only as fast as measured latency allows (at most ×2 an interval) — open, half-open and the
    // recovery alike; a ramp on top would hold in flight under what the limit could learn from
    if (typeof max === 'object') return this.#adaptive!.limit(now)
    if (this.#state !== 'closed') return this.#floor()
    const full = max
    const elapsed = now - this.#recoveryStart
    if (elapsed >= this.#config.recoveryMs) return full
    // − 1e-9: 100 × 55 % is 55, not the 56 that floating point would round up to
    return Math.min(full, Math.max(this.#floor()!, Math.ceil(full * this.#rampShare(now) - 1e-9)))
  }

  #rampShare (now: number): number {
    return RAMP_START + (1 - RAMP_START) * Math.min(1, (now - this.#recoveryStart) / this.#config.recoveryMs)
  }

  #maybeTrip (now: number, failed: boolean, latencyMs: number | undefined): void {
    const err = this.#config.errorRate
    if (err !== undefined && failed) {
      const n = this.#errWindow.count(now)
      const rate = this.#errWindow.errorRate(now)
      if (n >= err.minRequests && rate > err.above && this.#errEvidence.distinct(now) >= MIN_CLIENTS) {
        this.#open(now, `error rate ${pct(rate)} > ${pct(err.above)} over ${seconds(err.windowMs)} (${this.#errWindow.failures(now)} of ${n} failed, from ${MIN_CLIENTS}+ clients)`, false)
        return
      }
    }
    const lat = this.#config.latency
    if (lat === undefined) return
    // the percentile can only cross the threshold upwards when a slow sample arrives or when fast
    // ones age out: compute it for every slow sample, and otherwise once per check period
    if (!(latencyMs !== undefined && latencyMs > lat.aboveMs) && now < this.#nextCheckAt) return
    this.#nextCheckAt = now + CHECK_PERIOD_MS
    const n = this.#latWindow.timedCount(now)
    if (n < lat.minRequests) return
    const p = this.#latWindow.percentile(now, lat.percentile)!
    if (p > lat.aboveMs && this.#latEvidence.distinct(now) >= MIN_CLIENTS) {
      this.#open(now, `p${lat.percentile} latency ${Math.round(p)} ms > ${lat.aboveMs} ms over ${seconds(lat.windowMs)} (${n} requests, slow ones from ${MIN_CLIENTS}+ clients)`, true)
    }
  }

  #open (now: number, reason: string, latencyTrip: boolean): void {
    const from = this.#state
    const factor = Math.min(2 ** this.#failedRounds, MAX_BACKOFF_FACTOR)
    const cap = Math.max(this.#config.openForMs, MAX_OPEN_MS)
    const openForMs = Math.min(this.#config.openForMs * factor, cap)
    this.#state = 'open'
    this.#reason = reason
    this.#openForMs = openForMs
    this.#openUntil = now + openForMs
    this.#recoveryStart = -Infinity
    // a latency trip with a limit: keep the floor open, and let the adaptive limit start again
    // from its floor (it let the queue grow) rather than return to the figure that tripped
    this.#trickle = latencyTrip && this.#config.maxInFlight !== undefined
    if (latencyTrip) this.#adaptive?.drop()
    this.#epoch++
    this.#emit(from, reason, now, openForMs)
  }

  #reopen (now: number, reason: string): void {
    this.#failedRounds++
    this.#open(now, reason, this.#trickle)
  }

  #toHalfOpen (): void {
    const now = this.#clock()
    this.#state = 'half-open'
    this.#trialClients.clear()
    this.#badTrialClients.clear()
    this.#goodTrials = 0
    this.#epoch++
    this.#reason = `open for ${seconds(this.#openForMs)}; ${this.#config.halfOpenRequests} trial requests at a time decide`
    this.#emit('open', this.#reason, now)
  }

  #close (reason: string, ramp: boolean): void {
    const now = this.#clock()
    const from = this.#state
    this.#state = 'closed'
    this.#reason = reason
    this.#failedRounds = 0
    this.#trickle = false
    this.#epoch++
    this.#recoveryStart = ramp ? now : -Infinity
    this.#rampCredit = 1000
    this.#latWindow.clear()
    this.#errWindow.clear()
    this.#latEvidence.clear()
    this.#errEvidence.clear()
    this.#emit(from, reason, now)
  }

  #emit (from: BreakerState, reason: string, now: number, openForMs?: number): void {
    if (this.#onTransition === undefined) return
    const t: BreakerTransition = { upstream: this.upstream, from, to: this.#state, reason, ...this.#figures(now) }
    if (openForMs !== undefined) t.openForMs = openForMs
    this.#onTransition(t)
  }
}

function pct (x: number): string { return `${Math.round(x * 1000) / 10}%` }
function round1 (x: number): number { return Math.round(x * 10) / 10 }
