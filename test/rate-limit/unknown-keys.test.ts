/** The unknown-key budget's pure core on a stepped clock (the attack itself: test/security/unknown-keys.test.ts). */
import { describe, expect, it } from 'vitest'
import { UnknownKeys, authenticatesKey, policyKeys } from '../../src/rate-limit/unknown-keys.js'

const BUDGET = { rate: { perSecond: 1, text: '1/s' }, burst: 3 }
const NONE = new Set<string>()

describe('UnknownKeys', () => {
  it('spends a token per distinct unknown key, refills at the rate, and a known key is free from every address', () => {
    let now = 1_000_000
    const u = new UnknownKeys({ clock: () => now })
    const admit = (key: string, net = '198.51.100.1'): number | undefined => u.admit(key, net, BUDGET, NONE)?.statusCode
    expect([admit('a'), admit('b'), admit('c'), admit('d')]).toEqual([undefined, undefined, undefined, 429])
    // the same key from the same address again: already charged
    expect(admit('a')).toBeUndefined()
    expect(admit('d', '203.0.113.1')).toBeUndefined()
    now += 1000
    expect(admit('e')).toBeUndefined()
    expect(admit('f')).toBe(429)
    u.learn('good', 200)
    expect(admit('good')).toBeUndefined()
    u.learn('good', 403)
    expect(admit('good')).toBe(429)
    expect(u.admit('named', '198.51.100.1', BUDGET, new Set(['named']))).toBeUndefined()
    const refused = u.admit('g', '198.51.100.1', BUDGET, NONE)!
    expect(refused.code).toBe('FLAGGATE_RATE_LIMITED')
    expect(Number(refused.headers!['retry-after'])).toBeGreaterThanOrEqual(1)
    u.close()
  })

  it('learns only where Core authenticates the key; the policy names its own keys', () => {
    expect(authenticatesKey('/api/v1/flags/')).toBe(true)
    expect(authenticatesKey('/api/v1/identities/')).toBe(true)
    expect(authenticatesKey('/api/v1/environment-document/')).toBe(true)
    expect(authenticatesKey('/api/v2/analytics/flags/')).toBe(true)
    expect(authenticatesKey('/health/')).toBe(false)
    expect(authenticatesKey('/api/v1/projects/')).toBe(false)
    expect(authenticatesKey(undefined)).toBe(false)
    expect(policyKeys({ overrides: [{ key: 'o' }], probes: [{ key: 'p' }], localEvaluation: { environments: [{ serverKey: 's' }] } })).toEqual(new Set(['o', 'p', 's']))
  })
})
