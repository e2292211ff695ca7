/**
 * The memo of values derived from a client (shared/client-memo.ts): the rate limiter's bucket
 * requests and the top-talkers items sit on it, so what it remembers must be exactly what was set,
 * per key and address, within its byte and address bounds.
 */
import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { ClientMemo, ClientStrings } from '../../src/shared/client-memo.js'

const strings = { size: (v: string) => v.length, chars: (v: string) => v.length }

describe('ClientMemo', () => {
  it('answers what was last set for (key, ip), or nothing, like a plain map would', () => {
    const op = fc.record({
      set: fc.boolean(),
      key: fc.option(fc.constantFrom('a', 'b', 'ser.c', ''), { nil: undefined }),
      ip: fc.constantFrom('10.0.0.1', '10.0.0.2', '::1'),
      value: fc.string({ maxLength: 8 })
    })
    fc.assert(fc.property(fc.array(op, { maxLength: 200 }), (ops) => {
      const memo = new ClientMemo<string>({ maxBytes: 1 << 20, maxIpsPerKey: 8, ...strings })
      const model = new Map<string, string>()
      for (const o of ops) {
        // no key and the empty key are the same client (limited by IP alone)
        const id = `${o.key ?? ''}|${o.ip}`
        if (o.set) { expect(memo.set(o.key, o.ip, o.value)).toBe(true); model.set(id, o.value) } else expect(memo.get(o.key, o.ip)).toBe(model.get(id))
      }
    }), { numRuns: 200 })
  })

  it('keeps at most maxIpsPerKey addresses per key, replacing a known one in place', () => {
    const memo = new ClientMemo<string>({ maxBytes: 1 << 20, maxIpsPerKey: 3, ...strings })
    for (let i = 0; i < 3; i++) expect(memo.set('k', `10.0.0.${i}`, `v${i}`)).toBe(true)
    expect(memo.set('k', '10.0.0.9', 'v9')).toBe(false)
    expect(memo.get('k', '10.0.0.9')).toBeUndefined()
    const before = memo.bytes
    expect(memo.set('k', '10.0.0.1', 'w1')).toBe(true) // a known address: replaced, same size
    expect(memo.get('k', '10.0.0.1')).toBe('w1')
    expect(memo.bytes).toBe(before)
    expect(memo.set('other', '10.0.0.9', 'v')).toBe(true) // the bound is per key
  })

  it('stays within maxBytes, counted from its own entries, whatever is set', () => {
    const memo = new ClientMemo<string>({ maxBytes: 64 * 1024, maxIpsPerKey: 64, ...strings })
    for (let i = 0; i < 20_000; i++) memo.set(`key-${i}-${'x'.repeat(i % 200)}`, `10.0.${(i >> 8) & 255}.${i & 255}`, 'v'.repeat(i % 50))
    expect(memo.retainedChars()).toBeGreaterThan(10_000)
    expect(memo.retainedChars()).toBeLessThanOrEqual(memo.bytes)
    expect(memo.bytes).toBeLessThanOrEqual(memo.maxBytes)
  })

  it('ClientStrings: a string per (key, ip, name) as last set, up to maxNames names per client', () => {
    const op = fc.record({
      key: fc.option(fc.constantFrom('a', 'b', ''), { nil: undefined }),
      ip: fc.constantFrom('10.0.0.1', '10.0.0.2'),
      name: fc.constantFrom('n0', 'n1', 'n2', 'n3'),
      value: fc.string({ maxLength: 6 })
    })
    fc.assert(fc.property(fc.array(op, { maxLength: 100 }), (ops) => {
      const memo = new ClientStrings({ maxBytes: 1 << 20, maxIpsPerKey: 8, maxNames: 3 })
      const model = new Map<string, Map<string, string>>()
      for (const o of ops) {
        const id = `${o.key ?? ''}|${o.ip}`
        const names = model.get(id) ?? new Map<string, string>()
        expect(memo.get(o.key, o.ip, o.name)).toBe(names.get(o.name))
        // set only what a caller sets: a name not yet remembered
        if (names.has(o.name)) continue
        memo.set(o.key, o.ip, o.name, o.value)
        if (names.size < 3) { names.set(o.name, o.value); model.set(id, names) }
      }
    }), { numRuns: 200 })
  })
})
