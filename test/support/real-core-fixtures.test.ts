/**
 * The recorded answers of the real Core hold what their README promises, and the loader gives
 * compacted identity answers back exactly as Core sent them (checked on the verbatim ones).
 */
import { describe, expect, it } from 'vitest'
import { readFileSync } from 'node:fs'
import { compactIdentityAnswer, expandIdentityAnswer, flagsBaseline, loadRealCoreFixtures, REAL_CORE_FIXTURES, type CoreFlag, type IdentityAnswer, type RecordedExchange } from './real-core-fixtures.js'

const fx = loadRealCoreFixtures()
const raw = JSON.parse(readFileSync(`${REAL_CORE_FIXTURES}identities.json`, 'utf8')) as RecordedExchange[]
const flagNames = (flags: CoreFlag[]): string[] => flags.map((f) => f.feature.name)

describe('recorded answers of the real Core', () => {
  it('hold a full environment document and its 304', () => {
    expect(fx.document.response.status).toBe(200)
    const doc = fx.document.response.body as { api_key: string; feature_states: unknown[]; project: { segments: Array<{ name: string }> }; identity_overrides: Array<{ identifier: string }> }
    expect(doc.api_key).toBe(fx.meta.environment.clientKey)
    expect(doc.feature_states).toHaveLength(Object.keys(fx.meta.features).length)
    expect(doc.project.segments.map((s) => s.name).sort()).toEqual(Object.keys(fx.meta.segments).sort())
    expect(doc.identity_overrides.map((o) => o.identifier)).toEqual([fx.meta.overrideIdentity])
    expect(fx.notModified?.response.status).toBe(304)
  })

  it('hold flags/ for both keys, server-key-only features hidden from the client key, and 404 for unknown ones', () => {
    const list = (key: 'client' | 'server'): CoreFlag[] => fx.flags.find((e) => e.request.key === key && e.request.path === '/api/v1/flags/')!.response.body as CoreFlag[]
    expect(flagNames(list('server'))).toContain('server_only_flag')
    expect(flagNames(list('client'))).not.toContain('server_only_flag')
    expect(list('server')).toHaveLength(Object.keys(fx.meta.features).length)
    for (const key of ['client', 'server'] as const) {
      const one = fx.flags.find((e) => e.request.key === key && e.request.path === '/api/v1/flags/?feature=no_such_feature')!
      expect(one.response).toMatchObject({ status: 404, body: { detail: 'Given feature not found' } })
    }
  })

  it('hold identity answers for every feature the key may see, the identity override among them', () => {
    expect(fx.identities.length).toBeGreaterThanOrEqual(100)
    const all = Object.keys(fx.meta.features).length
    for (const e of fx.identities) {
      expect(e.response.status).toBe(200)
      expect(e.response.body.flags).toHaveLength(e.request.key === 'server' ? all : all - 1)
    }
    const overridden = fx.identities.find((e) => e.response.body.identifier === fx.meta.overrideIdentity)!
    expect(overridden.response.body.flags.find((f) => f.feature.name === 'string_flag')?.feature_state_value).toBe('identity value')
  })

  it('expand compacted identity answers to exactly what Core sent', () => {
    const verbatim = raw.slice(0, 3)
    expect(verbatim.every((e) => Array.isArray((e.response.body as { flags: unknown }).flags))).toBe(true)
    expect(raw.slice(3).every((e) => !Array.isArray((e.response.body as { flags: unknown }).flags))).toBe(true)
    const base = flagsBaseline(fx.flags)
    for (const e of verbatim) {
      const body = e.response.body as IdentityAnswer
      const compact = compactIdentityAnswer(body, base[e.request.key])
      // only what differs from flags/ is kept, and expanding it gives Core's answer back byte for byte
      expect(Object.keys(compact.flags).length).toBeLessThan(body.flags.length)
      expect(JSON.stringify(expandIdentityAnswer(compact, base[e.request.key]))).toBe(JSON.stringify(body))
    }
  })
})
