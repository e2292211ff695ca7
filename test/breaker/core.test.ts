/**
 * The breaker's state machine on a stepped clock: every transition, the figures it reports, and
 * the shedding that follows. No timers: the clock only moves when a test moves it.
 */
import { describe, expect, it } from 'vitest'
import { Admission, Breaker, MAX_BACKOFF_FACTOR, type BreakerConfig, type BreakerTransition, type GateClient, type UpstreamOutcome } from '../../src/breaker/core.js'

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
  /** admits one request of the next of five clients and finishes it with `outcome` (it must be admitted) */
  let turn = 0
  const run = (outcome: UpstreamOutcome): void => {
    const a = breaker.admit(client(turn++ % 5))
    if (!(a instanceof Admission)) throw new Error(`shed (Retry-After ${a}) in state ${breaker.state()}`)
    a.finish(outcome)
  }
  /** a client never seen before (each trial of a round comes from another client) */
  const fresh = (): GateClient => client(1000 + turn++)
  return { clock, events, breaker, run, fresh }
}

/** Client i: its own key and address. */
function client (i: number): GateClient {
  return { key: `key-${i}`, ip: `10.0.${i >> 8}.${i & 255}` }
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
    expect(events[0]!.reason).toMatch(/^p95 latency 1\d{3} ms > 800 ms over 10 s \(20 requests, slow ones from 3\+ clients\)$/)
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
    expect(events[0]!.reason).toBe('error rate 50.8% > 50% over 10 s (31 of 61 failed, from 3+ clients)')
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
    const { clock, breaker, events, fresh } = opened()
    clock.advance(15_000)
    expect(breaker.isOpen()).toBe(false)
    expect(breaker.state()).toBe('half-open')
    const trials = [1, 2, 3, 4, 5].map(() => breaker.admit(fresh()))
    expect(trials.every((t) => t instanceof Admission)).toBe(true)
    expect(breaker.admit(fresh())).toBe(1) // a sixth is shed while the trials run
    for (const t of trials.slice(0, 2)) (t as Admission).finish(ok(40))
    expect(breaker.state()).toBe('half-open')
    // 3 good of 5: the 2 left could not reopen it (that takes bad trials from 3 clients)
    ;(trials[2] as Admission).finish(ok(40))
    expect(breaker.state()).toBe('closed')
    expect(events.map((e) => `${e.from}→${e.to}`)).toEqual(['closed→open', 'open→half-open', 'half-open→closed'])
    expect(events[1]!.reason).toBe('open for 15 s; 5 trial requests at a time decide')
    expect(events[2]!.reason).toBe('3 trial requests succeeded')
    // closed on fresh figures: the window that opened it is gone
    expect(breaker.status()).toMatchObject({ state: 'closed', p95Ms: null, requests: 0, reason: '3 trial requests succeeded' })
    expect(breaker.admit()).toBeInstanceOf(Admission)
  })

  it('one client per trial at a time; one client\'s bad trials cannot reopen it, others\' good ones close it', () => {
    const { clock, breaker, events, fresh } = opened()
    clock.advance(15_000)
    const attacker = fresh()
    const first = breaker.admit(attacker) as Admission
    expect(breaker.admit(attacker)).toBe(1) // its second one waits for the first
    first.finish(ok(5000))
    for (let i = 0; i < 4; i++) (breaker.admit(attacker) as Admission).finish({ kind: 'timeout', latencyMs: 10_000 })
    expect(breaker.state()).toBe('half-open')
    for (let i = 0; i < 3; i++) (breaker.admit(fresh()) as Admission).finish(ok(40))
    expect(breaker.state()).toBe('closed')
    expect(events.map((e) => e.to)).toEqual(['open', 'half-open', 'closed'])
  })

  it('failed trials from 3 clients open it again for twice as long; the back-off is capped; success resets it', () => {
    const { clock, breaker, events, fresh, run } = opened()
    const expected = [30_000, 60_000, 120_000, 120_000] // 15 s × 2, 4, 8, then capped at 8×
    for (const openFor of expected) {
      clock.advance(events.at(-1)!.openForMs!)
      for (let i = 0; i < 2; i++) (breaker.admit(fresh()) as Admission).finish(ok(10, 500))
      expect(breaker.state()).toBe('half-open')
      ;(breaker.admit(fresh()) as Admission).finish(ok(10, 500))
      expect(breaker.state()).toBe('open')
      expect(events.at(-1)).toMatchObject({ from: 'half-open', to: 'open', openForMs: openFor, reason: 'trial failed: status 500 after 10 ms (bad trials from 3 clients)' })
    }
    expect(120_000 / 15_000).toBe(MAX_BACKOFF_FACTOR)
    clock.advance(120_000)
    for (let i = 0; i < 3; i++) (breaker.admit(fresh()) as Admission).finish(ok(10))
    expect(breaker.state()).toBe('closed')
    // the next trip starts from openFor again
    for (let i = 0; i < 20; i++) run(ok(5000))
    expect(events.at(-1)).toMatchObject({ to: 'open', openForMs: 15_000 })
  })

  it('caps the back-off at 5 minutes unless openFor itself is longer', () => {
    const { clock, breaker, events, fresh } = opened({ openForMs: 60_000 })
    for (let i = 0; i < 4; i++) {
      clock.advance(events.at(-1)!.openForMs!)
      for (let j = 0; j < 3; j++) (breaker.admit(fresh()) as Admission).finish({ kind: 'timeout', latencyMs: 10_000 })
    }
    expect(events.at(-1)!.openForMs).toBe(300_000)
    const long = opened({ openForMs: 600_000 })
    long.clock.advance(600_000)
    for (let j = 0; j < 3; j++) (long.breaker.admit(long.fresh()) as Admission).finish({ kind: 'unreachable', latencyMs: 1 })
    expect(long.events.at(-1)!.openForMs).toBe(600_000)
  })

  it('a trial slower than latency.above fails the round', () => {
    const { clock, breaker, events, fresh } = opened()
    clock.advance(15_000)
    for (let j = 0; j < 3; j++) (breaker.admit(fresh()) as Admission).finish(ok(900))
    expect(breaker.state()).toBe('open')
    expect(events.at(-1)!.reason).toBe('trial too slow: 900 ms > 800 ms (bad trials from 3 clients)')
  })

  it('an abandoned trial gives its slot back', () => {
    const { clock, breaker, fresh } = opened({ halfOpenRequests: 1 })
    clock.advance(15_000)
    const t = breaker.admit(fresh()) as Admission
    expect(breaker.admit(fresh())).toBe(1)
    t.finish({ kind: 'abandoned' })
    expect(breaker.state()).toBe('half-open')
    ;(breaker.admit(fresh()) as Admission).finish(ok(10))
    expect(breaker.state()).toBe('closed')
  })

  it('requests admitted before the breaker opened do not count after it closed', () => {
    const { clock, breaker, run } = setup()
    const slowOnes = Array.from({ length: 30 }, () => breaker.admit() as Admission)
    for (let i = 0; i < 20; i++) run(ok(3000))
    expect(breaker.state()).toBe('open')
    clock.advance(15_000)
    for (let i = 0; i < 3; i++) run(ok(10))
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
    for (let i = 0; i < 3; i++) (breaker.admit() as Admission).finish(ok(10))
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
    for (let i = 0; i < 3; i++) (breaker.admit() as Admission).finish(ok(10))
    expect(breaker.status().limit).toBe(5)
  })

  it('without maxInFlight, the admitted share ramps from 10 % to 100 %, deterministically', () => {
    const { clock, breaker } = opened({ recoveryMs: 10_000 })
    clock.advance(15_000)
    for (let i = 0; i < 3; i++) (breaker.admit() as Admission).finish(ok(10))
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

  it('a latency trip with maxInFlight keeps a trickle at the floor while open; trials go beside it', () => {
    const { clock, breaker, fresh, events } = opened({ maxInFlight: 100, recoveryMs: 10_000 })
    expect(events[0]!.limit).toBe(10) // the floor: what the ramp starts from
    const trickle: Admission[] = []
    for (let r = breaker.admit(fresh()); r instanceof Admission; r = breaker.admit(fresh())) trickle.push(r)
    expect(trickle).toHaveLength(10)
    expect(breaker.isOpen()).toBe(true)
    trickle.pop()!.finish(ok(2000)) // a slow answer while open: nothing changes, one slot is free again
    expect(breaker.admit(fresh())).toBeInstanceOf(Admission)
    clock.advance(15_000)
    // half-open: the trickle's 10 slots are full, yet trials get through
    expect(breaker.admit(fresh())).toBeInstanceOf(Admission)
    expect(breaker.status()).toMatchObject({ state: 'half-open', inFlight: 11 })
  })

  it('an error trip stops everything even with maxInFlight; without maxInFlight any trip does', () => {
    const err = setup({ maxInFlight: 100, latency: undefined })
    for (let i = 0; i < 20; i++) err.run(ok(5, 503))
    expect(err.breaker.state()).toBe('open')
    expect(err.breaker.admit(err.fresh())).toBe(15)
    const lat = opened()
    expect(lat.breaker.admit(lat.fresh())).toBe(15)
  })

  it('one client\'s slow or failing requests never trip it; the same from 3 clients do', () => {
    const one = setup()
    const attacker = client(666)
    for (let i = 0; i < 25; i++) (one.breaker.admit(attacker) as Admission).finish(ok(5000))
    for (let i = 0; i < 25; i++) (one.breaker.admit(attacker) as Admission).finish(ok(5, 502))
    expect(one.breaker.state()).toBe('closed')
    // the same key from two more addresses: three clients
    const two = setup({ errorRate: undefined })
    for (let i = 0; i < 25; i++) (two.breaker.admit({ key: 'k', ip: `192.0.2.${i % 2}` }) as Admission).finish(ok(5000))
    expect(two.breaker.state()).toBe('closed')
    ;(two.breaker.admit({ key: 'k', ip: '192.0.2.9' }) as Admission).finish(ok(5000))
    expect(two.breaker.state()).toBe('open')
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
    // an answer is slow evidence by the threshold in force when it came: three clients' now
    run(ok(500))
    run(ok(500))
    expect(breaker.state()).toBe('closed')
    run(ok(500))
    expect(breaker.state()).toBe('open')
  })
})
