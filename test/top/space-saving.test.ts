/**
 * Space-Saving's guarantees on a skewed stream: 1,000,000 requests over 100,000 clients drawn
 * from a Zipf distribution (s = 1.1, seeded), 1,000 counters. Every client above N/k is tracked,
 * every count is within [true, true + N/k], the reported top 20 is the true top 20, and memory
 * stays at k entries. Then the per-route, rotating `top` built on it.
 */
import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { SpaceSaving } from '../../src/top/space-saving.js'
import { TopClients, parseClient } from '../../src/top/top-clients.js'

/** mulberry32: a small seeded PRNG, so the stream is the same on every run */
function rng (seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

function zipfSampler (n: number, s: number, random: () => number): () => number {
  const cdf = new Float64Array(n)
  let sum = 0
  for (let i = 0; i < n; i++) { sum += 1 / Math.pow(i + 1, s); cdf[i] = sum }
  for (let i = 0; i < n; i++) cdf[i]! /= sum
  return () => {
    const u = random()
    let lo = 0
    let hi = n - 1
    while (lo < hi) { const mid = (lo + hi) >> 1; if (cdf[mid]! < u) lo = mid + 1; else hi = mid }
    return lo
  }
}

describe('SpaceSaving', () => {
  it('finds the heavy hitters of 1,000,000 Zipf requests over 100,000 clients within N/k, in k counters', () => {
    const N = 1_000_000
    const CLIENTS = 100_000
    const K = 1000
    const sample = zipfSampler(CLIENTS, 1.1, rng(42))
    const names = Array.from({ length: CLIENTS }, (_, i) => `client-${i}`)
    const truth = new Uint32Array(CLIENTS)
    const ss = new SpaceSaving(K)
    for (let i = 0; i < N; i++) {
      const c = sample()
      truth[c]!++
      ss.add(names[c]!)
    }
    expect(ss.total).toBe(N)
    expect(ss.size).toBe(K) // bounded: never more than k counters
    const bound = ss.errorBound
    expect(bound).toBe(N / K)

    // 1. every count over-estimates by at most its own error, itself ≤ N/k
    for (const e of ss.entries()) {
      const t = truth[Number(e.item.slice(7))]!
      expect(e.count).toBeGreaterThanOrEqual(t)
      expect(e.count - e.error).toBeLessThanOrEqual(t)
      expect(e.error).toBeLessThanOrEqual(bound)
    }
    // 2. every client seen more than N/k times is tracked
    let heavy = 0
    for (let c = 0; c < CLIENTS; c++) {
      if (truth[c]! > bound) { heavy++; expect(ss.get(names[c]!)).toBeDefined() }
    }
    expect(heavy).toBeGreaterThan(20) // the stream really is skewed enough for the test to mean something
    // 3. the top 20 reported are the true top 20, in order
    const trueTop = [...truth.keys()].sort((a, b) => truth[b]! - truth[a]!).slice(0, 20).map((c) => names[c])
    expect(ss.top(20).map((e) => e.item)).toEqual(trueTop)
  })

  it('replaces the smallest counter and carries its count as the error', () => {
    const ss = new SpaceSaving(2)
    ss.add('a', 5)
    ss.add('b', 2)
    ss.add('c')
    expect(ss.get('b')).toBeUndefined()
    expect(ss.get('c')).toEqual({ item: 'c', count: 3, error: 2 })
    expect(ss.top(1)).toEqual([{ item: 'a', count: 5, error: 0 }])
    expect(() => new SpaceSaving(0)).toThrow(TypeError)
  })
})

describe('TopClients', () => {
  it('ranks (route, key, ip) by requests or rejections over the last two windows', () => {
    let now = 0
    const top = new TopClients({ capacity: 50, intervalMs: 30_000, clock: () => now })
    for (let i = 0; i < 10; i++) top.record('flags', 'dev_key', '10.0.0.1', false)
    for (let i = 0; i < 4; i++) top.record('flags', 'dev_key', '10.0.0.2', true)
    top.record('default', undefined, '10.0.0.3', false)
    now = 31_000 // rotated once: the previous window still counts
    top.tick()
    for (let i = 0; i < 3; i++) top.record('flags', 'dev_key', '10.0.0.2', true)
    const r = top.top('requests', 10)
    expect(r.clients.map((c) => [c.client, c.route, c.requests, c.rejections])).toEqual([
      ['dev_key@10.0.0.1', 'flags', 10, 0],
      ['dev_key@10.0.0.2', 'flags', 7, 7],
      ['10.0.0.3', 'default', 1, 0]
    ])
    expect(r.clients[0]).toMatchObject({ key: 'dev_key', ip: '10.0.0.1', error: 0 })
    expect(top.top('rejections', 1).clients.map((c) => c.client)).toEqual(['dev_key@10.0.0.2'])
    now = 61_000 // the first window is gone
    expect(top.top('requests', 10).clients.map((c) => [c.client, c.requests])).toEqual([['dev_key@10.0.0.2', 3]])
    now = 200_000 // a quiet spell empties both
    expect(top.top('requests', 10).clients).toEqual([])
  })

  it('counts every (route, key, ip) exactly, whatever routes, keys and addresses a client mixes', () => {
    // a client over more routes than its remembered items, keys with and without a key, and one
    // key from more addresses than the memo keeps: counts must be those of a plain tally
    const client = fc.record({
      route: fc.constantFrom(...Array.from({ length: 12 }, (_, i) => `route-${i}`)),
      key: fc.option(fc.constantFrom('dev_key', 'ser.k', ''), { nil: undefined }),
      ip: fc.constantFrom(...Array.from({ length: 80 }, (_, i) => `10.0.${i >> 4}.${i}`))
    })
    fc.assert(fc.property(fc.array(client, { minLength: 1, maxLength: 300 }), (seq) => {
      const top = new TopClients({ capacity: 10_000, clock: () => 0 })
      const tally = new Map<string, number>()
      for (const c of seq) {
        top.record(c.route, c.key, c.ip, false)
        const id = `${c.route}|${c.key === undefined || c.key === '' ? '' : c.key}|${c.ip}`
        tally.set(id, (tally.get(id) ?? 0) + 1)
      }
      const got = new Map(top.top('requests', 10_000).clients.map((e) => [`${e.route}|${e.key ?? ''}|${e.ip}`, e.requests]))
      expect(got).toEqual(tally)
    }), { numRuns: 100 })
  })

  it('parseClient: KEY@IP blocks the key, a bare address the IP', () => {
    expect(parseClient('ser.abc@10.0.0.1')).toEqual({ key: 'ser.abc' })
    expect(parseClient('ser.abc@2001:db8::1')).toEqual({ key: 'ser.abc' })
    expect(parseClient('2001:db8::1')).toEqual({ ip: '2001:db8::1' })
    for (const typo of ['@@', 'key@', 'k@999.1.1.1', 'not a client', '']) expect(parseClient(typo)).toBeUndefined()
  })
})
