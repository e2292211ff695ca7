/**
 * Fair admission between environment keys (src/breaker/fair-share.ts): properties over random
 * sequences of requests and answers, then the storm the rule exists for, on a stepped clock.
 */
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { ACTIVE_MS, FairShare, HARD_CAP_FACTOR, MAX_PARTITIONS } from '../../src/breaker/fair-share.js'

type Op = { release: boolean; p: number }

const ops = fc.array(fc.record({ release: fc.boolean(), p: fc.nat({ max: 7 }) }), { maxLength: 400 })

/** Runs `script` at one instant (no partition ages out) and checks the invariants after each step. */
function replay (limit: number, script: Op[], check: (fs: FairShare, held: number[], step: { op: Op; admitted: boolean; shareBefore: number; totalBefore: number }) => void): void {
  const fs = new FairShare()
  const held = Array<number>(8).fill(0)
  for (const op of script) {
    const key = `k${op.p}`
    if (op.release) {
      if (held[op.p]! > 0) { fs.release(key); held[op.p]!-- }
      continue
    }
    const n = fs.active + (fs.inFlightOf(key) === 0 && !seen.has(key) ? 1 : 0)
    seen.add(key)
    const shareBefore = Math.max(1, limit / n)
    const totalBefore = fs.total
    const admitted = fs.tryAcquire(key, limit, 0)
    if (admitted) held[op.p]!++
    check(fs, held, { op, admitted, shareBefore, totalBefore })
  }
  seen.clear()
}
const seen = new Set<string>()

describe('fair share: properties', () => {
  it('counts exactly: the total is the sum of what partitions hold, never above twice the limit', () => {
    fc.assert(fc.property(fc.integer({ min: 1, max: 40 }), ops, (limit, script) => {
      replay(limit, script, (fs, held) => {
        expect(fs.total).toBe(held.reduce((a, b) => a + b, 0))
        for (let p = 0; p < 8; p++) expect(fs.inFlightOf(`k${p}`)).toBe(held[p])
        expect(fs.total).toBeLessThanOrEqual(HARD_CAP_FACTOR * limit)
      })
    }))
  })

  it('a partition under its share is admitted whenever fewer partitions than the limit hold requests: a storm never locks others out', () => {
    fc.assert(fc.property(fc.integer({ min: 1, max: 40 }), ops, (limit, script) => {
      replay(limit, script, (_fs, held, s) => {
        const before = held[s.op.p]! - (s.admitted ? 1 : 0)
        const busyOthers = held.filter((h, p) => p !== s.op.p && h > 0).length
        if (before < s.shareBefore && busyOthers < limit && s.totalBefore < HARD_CAP_FACTOR * limit) expect(s.admitted).toBe(true)
      })
    }))
  })

  it('among fair users the limit holds beyond one request each: what partitions hold past their first, up to their share, never sums past it', () => {
    fc.assert(fc.property(fc.integer({ min: 1, max: 40 }), ops, (limit, script) => {
      replay(limit, script, (fs, held) => {
        const share = Math.max(1, limit / fs.active)
        expect(held.reduce((sum, h) => sum + Math.max(0, Math.min(h, share) - 1), 0)).toBeLessThanOrEqual(limit + 1e-9)
      })
    }))
  })

  it('a partition holding nothing is admitted at the limit beside one holding more than its share, below the hard cap', () => {
    fc.assert(fc.property(fc.integer({ min: 1, max: 40 }), ops, (limit, script) => {
      replay(limit, script, (fs, held, s) => {
        const before = held[s.op.p]! - (s.admitted ? 1 : 0)
        const share = Math.max(1, limit / fs.active)
        const stormy = held.some((h, p) => p !== s.op.p && h > share)
        if (before === 0 && stormy && s.totalBefore < HARD_CAP_FACTOR * limit) expect(s.admitted).toBe(true)
      })
    }))
  })

  it('work-conserving: a partition alone may use the whole limit, and not more', () => {
    fc.assert(fc.property(fc.integer({ min: 1, max: 60 }), fc.integer({ min: 0, max: 120 }), (limit, asks) => {
      const fs = new FairShare()
      let admitted = 0
      for (let i = 0; i < asks; i++) if (fs.tryAcquire('solo', limit, 0)) admitted++
      expect(admitted).toBe(Math.min(asks, limit))
    }))
  })

  it('everything released leaves nothing held', () => {
    fc.assert(fc.property(fc.integer({ min: 1, max: 40 }), ops, (limit, script) => {
      const fs = new FairShare()
      const held: string[] = []
      for (const op of script) if (!op.release && fs.tryAcquire(`k${op.p}`, limit, 0)) held.push(`k${op.p}`)
      for (const k of held) fs.release(k)
      expect(fs.total).toBe(0)
      for (let p = 0; p < 8; p++) expect(fs.inFlightOf(`k${p}`)).toBe(0)
    }))
  })
})

describe('fair share: a storm beside light keys (stepped clock)', () => {
  it('light keys always get in beside a storm; the storm refills only what is free under the limit', () => {
    const LIMIT = 20
    const fs = new FairShare()
    const t = 0
    // alone, the storm takes the whole limit
    let storm = 0
    while (fs.tryAcquire('storm', LIMIT, t)) storm++
    expect(storm).toBe(LIMIT)
    // four light keys arrive: each gets in at once, above the limit, by at most their shares
    for (let k = 0; k < 4; k++) expect(fs.tryAcquire(`light${k}`, LIMIT, t)).toBe(true)
    expect(fs.total).toBe(LIMIT + 4)
    // as the storm's requests finish, it gets no new slot while the total is over the limit
    for (let i = 0; i < 4; i++) { fs.release('storm'); storm--; expect(fs.tryAcquire('storm', LIMIT, t)).toBe(false) }
    fs.release('storm'); storm--
    expect(fs.tryAcquire('storm', LIMIT, t)).toBe(true)
    storm++
    // the light keys ask again, many times each: each is held to its share (20 / 5 = 4)
    for (let k = 0; k < 4; k++) for (let i = 0; i < 10; i++) fs.tryAcquire(`light${k}`, LIMIT, t)
    for (let k = 0; k < 4; k++) expect(fs.inFlightOf(`light${k}`)).toBe(4)
    expect(fs.total).toBeLessThanOrEqual(HARD_CAP_FACTOR * LIMIT)
  })

  it('idle keys stop counting after a second: shares follow whoever is active', () => {
    const fs = new FairShare()
    for (let k = 0; k < 9; k++) { fs.tryAcquire(`light${k}`, 10, 0); fs.release(`light${k}`) }
    while (fs.tryAcquire('storm', 10, 0));
    expect(fs.active).toBe(10)
    // at the limit, a tenth of it is each one's share: a light key with one in flight is at it
    expect(fs.tryAcquire('light0', 10, 0)).toBe(true)
    expect(fs.tryAcquire('light0', 10, 0)).toBe(false)
    fs.release('light0')
    for (let k = 1; k < 9; k++) expect(fs.inFlightOf(`light${k}`)).toBe(0)
    // a second on, only the storm and light0 asked: the eight others are forgotten
    fs.tryAcquire('light0', 10, ACTIVE_MS)
    expect(fs.active).toBe(2)
  })

  it('random keys cannot grow its memory past MAX_PARTITIONS: the rest share one partition', () => {
    const fs = new FairShare()
    for (let i = 0; i < MAX_PARTITIONS + 500; i++) { if (fs.tryAcquire(`rnd${i}`, 1_000_000, 0)) fs.release(`rnd${i}`) }
    expect(fs.active).toBeLessThanOrEqual(MAX_PARTITIONS + 1)
    expect(fs.total).toBe(0)
  })
})
