/**
 * The breaker's state machine on a stepped clock: every transition, the figures it reports, and
 * the shedding that follows. No timers: the clock only moves when a test moves it.
 */
import { describe, expect, it } from 'vitest'
import { Admission, Breaker, MAX_BACKOFF_FACTOR, type BreakerConfig, type BreakerTransition, type UpstreamOutcome } from '../../src/breaker/core.js'

class SteppedClock {
  t = 1_000_000
  now = (): number => this.t
  advance (ms: number): void { this.t += ms }
}

const ok = (latencyMs = 20, status = 200): UpstreamOutcome => ({ kind: 'response', status, latencyMs })

const BASE: BreakerConfig = {
  latency: { percentile: 95, aboveMs: 800, windowMs: 10_000, minRequests: 20 },
  errorRate: { above: 0.5, windowMs: 10_000, minRequests: 20 },
  maxInFlight: undefined,
  openForMs: 15_000,
  halfOpenRequests: 5,
  recoveryMs: 0
}

function setup (config: Partial<BreakerConfig> = {}) {
  const clock = new SteppedClock()
  const events: BreakerTransition[] = []
  const breaker = new Breaker('core', { ...BASE, ...config }, { clock: clock.now, onTransition: (t) => events.push(t) })
  /** admits one request and finishes it with `outcome` (the request must be admitted) */
  const run = (outcome: UpstreamOutcome): void => {
    const a = breaker.admit()
    if (!(a instanceof Admission)) throw new Error(`shed (Retry-After ${a}) in state ${breaker.state()}`)
    a.finish(outcome)
  }
  return { clock, events, breaker, run }
}

/** Opens the breaker with 20 slow requests and returns the setup. */
function opened (config: Partial<BreakerConfig> = {}) {
  const s = setup(config)
  for (let i = 0; i < 20; i++) s.run(ok(2000))
  expect(s.breaker.state()).toBe('open')
  return s
}

describe('breaker: tripping', () => {
  it('trips on the latency percentile, once minRequests outcomes are in the window', () => {
    const { breaker, events, run } = setup()
    for (let i = 0; i < 19; i++) run(ok(1200))
    expect(breaker.state()).toBe('closed') // 19 < minRequests
    run(ok(1200))
    expect(breaker.state()).toBe('open')
    expect(events).toHaveLength(1)
    expect(events[0]).toMatchObject({ upstream: 'core', from: 'closed', to: 'open', openForMs: 15_000, requests: 20, errorRate: 0, inFlight: 0 })
    expect(events[0]!.reason).toMatch(/^p95 latency 1\d{3} ms > 800 ms over 10 s \(20 requests\)$/)
    expect(events[0]!.p95Ms).toBeGreaterThan(1170)
    expect(events[0]!.p95Ms).toBeLessThan(1230)
  })

  it('does not trip while the percentile stays under the threshold (5 % slow of 100 is the p95 edge)', () => {
    const { breaker, run } = setup()
    for (let i = 0; i < 95; i++) run(ok(30))
    for (let i = 0; i < 5; i++) run(ok(5000))
    expect(breaker.state()).toBe('closed')
    run(ok(5000)) // 6 of 101 slow: the p95 is now slow
    expect(breaker.state()).toBe('open')
  })

  it('trips on the error rate: 5xx, timeouts and unreachable fail; 4xx and abandoned do not count', () => {
    const { breaker, events, run } = setup({ latency: undefined })
    for (let i = 0; i < 30; i++) run(ok(5, i % 2 === 0 ? 404 : 429)) // Core's 4xx: successes
    for (let i = 0; i < 10; i++) run({ kind: 'abandoned' }) // not counted at all
    expect(breaker.status()).toMatchObject({ state: 'closed', errorRate: 0, requests: 30 })
    for (let i = 0; i < 10; i++) run(ok(5, 502))
    for (let i = 0; i < 10; i++) run({ kind: 'timeout', latencyMs: 10_000 })
    for (let i = 0; i < 10; i++) run({ kind: 'unreachable', latencyMs: 1 })
    expect(breaker.state()).toBe('closed') // 30 of 60 = 50 %, not above 50 %
    run(ok(5, 500))
    expect(breaker.state()).toBe('open')
    expect(events[0]!.reason).toBe('error rate 50.8% > 50% over 10 s (31 of 61 failed)')
  })

  it('respects minRequests for the error rate', () => {
    const { breaker, run } = setup({ errorRate: { above: 0.5, windowMs: 10_000, minRequests: 20 } })
    for (let i = 0; i < 19; i++) run(ok(5, 503))
    expect(breaker.state()).toBe('closed')
    run(ok(5, 503))
    expect(breaker.state()).toBe('open')
  })

  it('forgets outcomes older than the window', () => {
    const { clock, breaker, run } = setup()
    for (let i = 0; i < 19; i++) run(ok(3000))
    clock.advance(11_000)
    run(ok(3000))
    expect(breaker.state()).toBe('closed')
    expect(breaker.status()).toMatchObject({ requests: 1 })
  })

  it('counts each outcome once even if finish() is called twice', () => {
    const { breaker } = setup()
    const a = breaker.admit() as Admission
    expect(breaker.inFlight).toBe(1)
    a.finish(ok())
    a.finish(ok())
    expect(breaker.inFlight).toBe(0)
    expect(breaker.status().requests).toBe(1)
  })
})

describe('breaker: open, half-open, closed', () => {
  it('sheds at once while open, with Retry-After counting down in whole seconds ≥ 1', () => {
    const { clock, breaker } = opened()
    expect(breaker.admit()).toBe(15)
    clock.advance(14_001)
    expect(breaker.admit()).toBe(1)
    clock.advance(998)
    expect(breaker.admit()).toBe(1)
    expect(breaker.isOpen()).toBe(true)
    expect(breaker.status()).toMatchObject({ state: 'open', retryAfterS: 1 })
  })

  it('half-open after openFor: halfOpenRequests trials decide; all good → closed, reported once each', () => {
    const { clock, breaker, events } = opened()
    clock.advance(15_000)
    expect(breaker.isOpen()).toBe(false)
    expect(breaker.state()).toBe('half-open')
    const trials = [1, 2, 3, 4, 5].map(() => breaker.admit())
    expect(trials.every((t) => t instanceof Admission)).toBe(true)
    expect(breaker.admit()).toBe(1) // a sixth is shed while the trials run
    for (const t of trials.slice(0, 4)) (t as Admission).finish(ok(40))
    expect(breaker.state()).toBe('half-open')
    ;(trials[4] as Admission).finish(ok(40))
    expect(breaker.state()).toBe('closed')
    expect(events.map((e) => `${e.from}→${e.to}`)).toEqual(['closed→open', 'open→half-open', 'half-open→closed'])
    expect(events[1]!.reason).toBe('open for 15 s; 5 trial requests decide')
    expect(events[2]!.reason).toBe('5 trial requests succeeded')
    // closed on fresh figures: the window that opened it is gone
    expect(breaker.status()).toMatchObject({ state: 'closed', p95Ms: null, requests: 0, reason: '5 trial requests succeeded' })
    expect(breaker.admit()).toBeInstanceOf(Admission)
  })

  it('a failed trial opens it again for twice as long; the back-off is capped; success resets it', () => {
    const { clock, breaker, events } = opened()
    const expected = [30_000, 60_000, 120_000, 120_000] // 15 s × 2, 4, 8, then capped at 8×
    for (const openFor of expected) {
      clock.advance(events.at(-1)!.openForMs!)
      const t = breaker.admit() as Admission
      t.finish(ok(10, 500))
      expect(breaker.state()).toBe('open')
      expect(events.at(-1)).toMatchObject({ from: 'half-open', to: 'open', openForMs: openFor, reason: 'trial failed: status 500 after 10 ms' })
    }
    expect(120_000 / 15_000).toBe(MAX_BACKOFF_FACTOR)
    clock.advance(120_000)
    for (let i = 0; i < 5; i++) (breaker.admit() as Admission).finish(ok(10))
    expect(breaker.state()).toBe('closed')
    // the next trip starts from openFor again
    for (let i = 0; i < 20; i++) (breaker.admit() as Admission).finish(ok(5000))
    expect(events.at(-1)).toMatchObject({ to: 'open', openForMs: 15_000 })
  })

  it('caps the back-off at 5 minutes unless openFor itself is longer', () => {
    const { clock, breaker, events } = opened({ openForMs: 60_000 })
    for (let i = 0; i < 4; i++) {
      clock.advance(events.at(-1)!.openForMs!)
      ;(breaker.admit() as Admission).finish({ kind: 'timeout', latencyMs: 10_000 })
    }
    expect(events.at(-1)!.openForMs).toBe(300_000)
    const long = opened({ openForMs: 600_000 })
    long.clock.advance(600_000)
    ;(long.breaker.admit() as Admission).finish({ kind: 'unreachable', latencyMs: 1 })
    expect(long.events.at(-1)!.openForMs).toBe(600_000)
  })

  it('a trial slower than latency.above fails the round', () => {
    const { clock, breaker, events } = opened()
    clock.advance(15_000)
    ;(breaker.admit() as Admission).finish(ok(900))
    expect(breaker.state()).toBe('open')
    expect(events.at(-1)!.reason).toBe('trial too slow: 900 ms > 800 ms')
  })

  it('an abandoned trial gives its slot back', () => {
    const { clock, breaker } = opened({ halfOpenRequests: 1 })
    clock.advance(15_000)
    const t = breaker.admit() as Admission
    expect(breaker.admit()).toBe(1)
    t.finish({ kind: 'abandoned' })
    expect(breaker.state()).toBe('half-open')
    ;(breaker.admit() as Admission).finish(ok(10))
    expect(breaker.state()).toBe('closed')
  })

  it('requests admitted before the breaker opened do not count after it closed', () => {
    const { clock, breaker, run } = setup()
    const slowOnes = Array.from({ length: 30 }, () => breaker.admit() as Admission)
    for (let i = 0; i < 20; i++) run(ok(3000))
    expect(breaker.state()).toBe('open')
    clock.advance(15_000)
    for (let i = 0; i < 5; i++) run(ok(10))
    expect(breaker.state()).toBe('closed')
    for (const a of slowOnes) a.finish(ok(20_000))
    expect(breaker.state()).toBe('closed')
    expect(breaker.status()).toMatchObject({ requests: 0, inFlight: 0 })
  })
})

describe('breaker: maxInFlight and the recovery ramp', () => {
  it('a fixed bulkhead sheds beyond N in flight with Retry-After 1, and admits again as requests finish', () => {
    const { breaker } = setup({ maxInFlight: 3 })
    const a = [breaker.admit(), breaker.admit(), breaker.admit()]
    expect(a.every((x) => x instanceof Admission)).toBe(true)
    expect(breaker.admit()).toBe(1)
    expect(breaker.status()).toMatchObject({ inFlight: 3, limit: 3, state: 'closed' })
    ;(a[0] as Admission).finish({ kind: 'abandoned' })
    expect(breaker.admit()).toBeInstanceOf(Admission)
    expect(breaker.admit()).toBe(1)
  })

  it('after closing, the concurrency limit ramps from 10 % to the full limit over `recovery`', () => {
    const { clock, breaker } = opened({ maxInFlight: 100, recoveryMs: 10_000 })
    clock.advance(15_000)
    for (let i = 0; i < 5; i++) (breaker.admit() as Admission).finish(ok(10))
    expect(breaker.state()).toBe('closed')
    const limitAt = (ms: number): number | null => { clock.t = start + ms; return breaker.status().limit }
    const start = clock.t
    expect(limitAt(0)).toBe(10)
    expect(limitAt(5_000)).toBe(55)
    expect(limitAt(9_999)).toBe(100)
    expect(limitAt(10_000)).toBe(100)
    // the ramp is enforced: at 1 s, 19 in flight is the cap
    clock.t = start + 1_000
    const held: Admission[] = []
    for (let r = breaker.admit(); r instanceof Admission; r = breaker.admit()) held.push(r)
    expect(held).toHaveLength(19)
  })

  it('the ramp never goes under halfOpenRequests', () => {
    const { clock, breaker } = opened({ maxInFlight: 20, recoveryMs: 10_000, halfOpenRequests: 5 })
    clock.advance(15_000)
    for (let i = 0; i < 5; i++) (breaker.admit() as Admission).finish(ok(10))
    expect(breaker.status().limit).toBe(5)
  })

  it('without maxInFlight, the admitted share ramps from 10 % to 100 %, deterministically', () => {
    const { clock, breaker } = opened({ recoveryMs: 10_000 })
    clock.advance(15_000)
    for (let i = 0; i < 5; i++) (breaker.admit() as Admission).finish(ok(10))
    const admittedOf100 = (): number => {
      let n = 0
      for (let i = 0; i < 100; i++) { const a = breaker.admit(); if (a instanceof Admission) { n++; a.finish({ kind: 'abandoned' }) } }
      return n
    }
    expect(admittedOf100()).toBe(11) // 10 % plus the first one, which always passes
    clock.advance(5_000)
    expect(admittedOf100()).toBe(55)
    clock.advance(5_000)
    expect(admittedOf100()).toBe(100)
  })

  it('trials respect maxInFlight too', () => {
    const { clock, breaker } = setup({ maxInFlight: 2 })
    const stuck = [breaker.admit(), breaker.admit()] as Admission[]
    breaker.configure({ ...BASE, maxInFlight: 2, latency: { ...BASE.latency!, minRequests: 1 } })
    stuck[0]!.finish(ok(5000))
    expect(breaker.state()).toBe('open')
    clock.advance(15_000)
    expect(breaker.admit()).toBeInstanceOf(Admission) // 1 stuck + 1 trial = 2
    expect(breaker.admit()).toBe(1)
  })
})

describe('breaker: reload', () => {
  it('keeps its state and in-flight count across a reload; a policy without trip rules closes it', () => {
    const { breaker, events } = opened({ maxInFlight: 10 })
    breaker.configure({ ...BASE, maxInFlight: 10, openForMs: 30_000 })
    expect(breaker.state()).toBe('open')
    breaker.configure({ ...BASE, latency: undefined, errorRate: undefined, maxInFlight: 10 })
    expect(breaker.state()).toBe('closed')
    expect(events.at(-1)).toMatchObject({ from: 'open', to: 'closed', reason: 'the policy no longer has a trip rule for this upstream' })
  })

  it('new thresholds apply to the next outcome', () => {
    const { breaker, run } = setup()
    for (let i = 0; i < 20; i++) run(ok(500))
    expect(breaker.state()).toBe('closed')
    breaker.configure({ ...BASE, latency: { ...BASE.latency!, aboveMs: 400 } })
    run(ok(500))
    expect(breaker.state()).toBe('open')
  })
})
