import { describe, expect, it } from 'vitest'
import { SlidingWindow } from '../../src/breaker/window.js'

/** The exact nearest-rank percentile, to compare the histogram against. */
function exact (values: number[], p: number): number {
  const s = [...values].sort((a, b) => a - b)
  return s[Math.max(1, Math.ceil((p / 100) * s.length)) - 1]!
}

describe('sliding window of upstream outcomes', () => {
  it('reports percentiles within 2.5 % of the exact sample percentile', () => {
    const w = new SlidingWindow(10_000)
    const values: number[] = []
    // a skewed distribution: most fast, a slow tail
    for (let i = 1; i <= 2000; i++) {
      const v = i % 20 === 0 ? 500 + (i % 700) * 3 : 5 + (i % 97) * 0.7
      values.push(v)
      w.record(1000, false, v)
    }
    for (const p of [50, 90, 95, 99, 99.9]) {
      const got = w.percentile(1000, p)!
      expect(Math.abs(got - exact(values, p)) / exact(values, p)).toBeLessThanOrEqual(0.025)
    }
    expect(w.timedCount(1000)).toBe(2000)
  })

  it('is empty before any sample; sub-millisecond and huge latencies have their own bins', () => {
    const w = new SlidingWindow(1000)
    expect(w.percentile(0, 95)).toBeUndefined()
    expect(w.errorRate(0)).toBe(0)
    w.record(0, false, 0.2)
    expect(w.percentile(0, 50)).toBe(0.5)
    w.record(0, false, 10_000_000)
    expect(w.percentile(0, 100)).toBeGreaterThan(200_000)
  })

  it('counts failures; outcomes without a latency count but are not in the distribution', () => {
    const w = new SlidingWindow(10_000)
    for (let i = 0; i < 6; i++) w.record(0, false, 10)
    for (let i = 0; i < 4; i++) w.record(0, true, undefined)
    expect(w.count(0)).toBe(10)
    expect(w.failures(0)).toBe(4)
    expect(w.errorRate(0)).toBeCloseTo(0.4)
    expect(w.timedCount(0)).toBe(6)
  })

  it('slides in tenths of its length: old samples age out, newer ones stay', () => {
    const w = new SlidingWindow(10_000)
    w.record(0, true, 1000) // slice 0
    w.record(5_500, false, 10) // slice 5
    expect(w.count(9_999)).toBe(2)
    expect(w.percentile(9_999, 100)).toBeGreaterThan(900)
    // at 10 s slice 0 leaves the window (it now covers slices 1..10)
    expect(w.count(10_000)).toBe(1)
    expect(w.failures(10_000)).toBe(0)
    expect(w.percentile(10_000, 100)).toBeLessThan(11)
    expect(w.count(15_999)).toBe(0)
    expect(w.percentile(15_999, 50)).toBeUndefined()
  })

  it('survives a long idle gap and a clock that steps back', () => {
    const w = new SlidingWindow(1000)
    for (let t = 0; t < 1000; t += 10) w.record(t, t % 20 === 0, 50)
    expect(w.count(999)).toBe(100)
    expect(w.count(3_600_000)).toBe(0)
    w.record(3_600_000, true, 5)
    w.record(3_599_000, false, 5) // late: lands in the newest slice
    expect(w.count(3_600_000)).toBe(2)
    expect(w.failures(3_600_000)).toBe(1)
  })

  it('clear() forgets everything', () => {
    const w = new SlidingWindow(1000)
    w.record(0, true, 100)
    w.clear()
    expect(w.count(0)).toBe(0)
    expect(w.percentile(0, 50)).toBeUndefined()
    w.record(0, false, 7)
    expect(w.count(0)).toBe(1)
    expect(w.percentile(0, 50)).toBeCloseTo(7, 0)
  })
})
