import { describe, it, expect } from 'vitest'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Flagsmith, LocalFileHandler } from 'flagsmith-nodejs'
import { compileEnvironment, identityFlags, DocumentRejected } from '../../src/local/environment.js'
import { flagsAnswer, identityGetAnswer, identityPostAnswer } from '../../src/local/answers.js'
import { ENGINE_VERSION } from '../../src/local/engine.js'
import { richDocument } from './document.js'

type Flag = { id?: number; feature: { id: number; name: string }; feature_state_value: unknown; enabled: boolean; variant?: string | null; identity?: number | null }

describe('local environment (pure core)', () => {
  it('loads the engine of the pinned flagsmith-nodejs', () => {
    expect(ENGINE_VERSION).toBe('8.1.2')
  })

  it('answers flags/ in Core\'s shape: ordered by feature id, server-key-only features only for server keys', () => {
    const env = compileEnvironment(richDocument())
    const client = JSON.parse(flagsAnswer(env, false, undefined).body.toString()) as Flag[]
    const server = JSON.parse(flagsAnswer(env, true, undefined).body.toString()) as Flag[]
    expect(client.map((f) => f.feature.name)).toEqual(['banner', 'colour', 'dark_mode', 'max_items'])
    expect(server.map((f) => f.feature.name)).toEqual(['banner', 'colour', 'dark_mode', 'secret_algo', 'max_items'])
    expect(client[0]).toEqual({ id: 101, feature: { id: 1, name: 'banner', type: 'STANDARD' }, feature_state_value: 'hello', environment: 7, identity: null, feature_segment: null, enabled: true })
    expect(client[1]!.feature_state_value).toBe('blue')
    const one = flagsAnswer(env, true, new URLSearchParams('feature=secret_algo'))
    expect(one.status).toBe(200)
    expect(JSON.parse(one.body.toString()).feature_state_value).toBe('v2')
    const hidden = flagsAnswer(env, false, new URLSearchParams('feature=secret_algo'))
    expect(hidden.status).toBe(404)
    expect(JSON.parse(hidden.body.toString())).toEqual({ detail: 'Given feature not found' })
    expect(flagsAnswer(env, false, new URLSearchParams('feature=nope')).status).toBe(404)
  })

  it('respects hide_sensitive_data and hide_disabled_flags', () => {
    const doc = richDocument()
    doc.hide_sensitive_data = true
    doc.hide_disabled_flags = true
    const env = compileEnvironment(doc)
    const flags = JSON.parse(flagsAnswer(env, false, undefined).body.toString()) as Array<Record<string, unknown>>
    expect(flags.map((f) => (f.feature as Flag['feature']).name)).toEqual(['banner', 'colour', 'max_items'])
    expect(Object.keys(flags[0]!).sort()).toEqual(['enabled', 'feature', 'feature_state_value'])
  })

  it('evaluates identities exactly as the SDK\'s own local evaluation does (segments, splits, variants, overrides)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'flaggate-doc-'))
    const file = join(dir, 'doc.json')
    writeFileSync(file, JSON.stringify(richDocument()))
    const sdk = new Flagsmith({ offlineMode: true, offlineHandler: new LocalFileHandler(file) })
    const env = compileEnvironment(richDocument())
    let variants = 0
    let segments = 0
    for (let i = 0; i < 300; i++) {
      const identifier = i === 0 ? 'vip' : `user-${i}`
      const traits = { plan: i % 3 === 0 ? 'pro' : 'free', seats: i }
      const ours = identityFlags(env, identifier, traits, true) as unknown as Flag[]
      const theirs = await sdk.getIdentityFlags(identifier, traits)
      for (const f of ours) {
        expect({ name: f.feature.name, enabled: f.enabled, value: f.feature_state_value })
          .toEqual({ name: f.feature.name, enabled: theirs.isFeatureEnabled(f.feature.name), value: theirs.getFeatureValue(f.feature.name) })
      }
      const colour = ours.find((f) => f.feature.name === 'colour')!
      expect(colour.variant).toBe(colour.feature_state_value === 'red' ? 'red_key' : colour.feature_state_value === 'green' ? 'green_key' : 'control')
      if (colour.variant !== 'control') variants++
      const banner = ours.find((f) => f.feature.name === 'banner')!
      if (banner.id !== 101) segments++
      expect(banner.id).toBe(banner.feature_state_value === 'pro banner' ? 9001 : banner.feature_state_value === 'half banner' ? 9002 : 101)
    }
    // the generated identities exercise both splits and the segment overrides
    expect(variants).toBeGreaterThan(100)
    expect(segments).toBeGreaterThan(100)
    const vip = identityFlags(env, 'vip', {}, false) as unknown as Flag[]
    expect(vip.find((f) => f.feature.name === 'max_items')).toMatchObject({ id: 7001, identity: 77, feature_state_value: 999 })
  })

  it('answers identities/ GET and POST in Core\'s shape', () => {
    const env = compileEnvironment(richDocument())
    expect(JSON.parse(identityGetAnswer(env, false, new URLSearchParams('')).body.toString())).toEqual({ detail: 'Missing identifier' })
    const got = JSON.parse(identityGetAnswer(env, false, new URLSearchParams('identifier=a%20b')).body.toString())
    expect(got.identifier).toBe('a b')
    expect(got.traits).toEqual([])
    expect(got.flags.map((f: Flag) => f.feature.name)).toEqual(['banner', 'colour', 'dark_mode', 'max_items'])
    const body = Buffer.from(JSON.stringify({ identifier: 'u1', transient: true, traits: [{ trait_key: 'plan', trait_value: 'pro' }, { trait_key: 'gone', trait_value: null }, { trait_key: 'n', trait_value: 3 }] }))
    const post = identityPostAnswer(env, false, body)
    expect(post.write).toBeUndefined()
    const answer = JSON.parse(post.body.toString())
    expect(answer.traits).toEqual([{ id: null, trait_key: 'plan', trait_value: 'pro', transient: true }, { id: null, trait_key: 'n', trait_value: 3, transient: true }])
    expect(answer.flags[0]).toMatchObject({ feature_state_value: 'pro banner', id: 9001, variant: null })
    // a non-transient write is handed back, as it came, for Core
    const write = Buffer.from(JSON.stringify({ identifier: 'u2', traits: [{ trait_key: 'plan', trait_value: 'pro' }] }))
    expect(identityPostAnswer(env, false, write).write?.body).toBe(write)
  })

  it('answers bad identity requests with a 400, never an exception', () => {
    const env = compileEnvironment(richDocument())
    for (const b of ['{', '[]', '{}', '{"identifier":5}', '{"identifier":"x","traits":{}}', '{"identifier":"x","traits":[{"trait_key":"a","trait_value":{}}]}', JSON.stringify({ identifier: 'x'.repeat(2001) })]) {
      expect(identityPostAnswer(env, false, Buffer.from(b)).status).toBe(400)
    }
  })

  it('refuses a document the engine cannot read, naming why', () => {
    for (const d of [null, [], {}, { api_key: 'k' }, { api_key: 'k', feature_states: [], project: {} }, { api_key: 'k', feature_states: [{}], project: { segments: [] } }]) {
      expect(() => compileEnvironment(d)).toThrow(DocumentRejected)
    }
  })
})

describe('hostile trait keys', () => {
  it('a condition on `constructor` or `__proto__` matches only an identity that sent that trait', () => {
    const doc = richDocument()
    const segments = (doc.project as { segments: unknown[] }).segments
    segments.push({
      id: 13,
      name: 'proto',
      rules: [{ type: 'ANY', conditions: [{ operator: 'IS_SET', property_: 'constructor', value: null }, { operator: 'IS_SET', property_: '__proto__', value: null }], rules: [] }],
      feature_states: [{ feature: { id: 5, name: 'max_items', type: 'STANDARD' }, enabled: true, django_id: 9013, featurestate_uuid: '00000000-0000-4000-8000-000000009013', feature_state_value: -1, feature_segment: { priority: 0 }, multivariate_feature_state_values: [] }]
    })
    const env = compileEnvironment(doc)
    const value = (body: unknown): unknown => (JSON.parse(identityPostAnswer(env, true, Buffer.from(JSON.stringify(body))).body.toString()) as { flags: Flag[] }).flags.find((f) => f.feature.name === 'max_items')!.feature_state_value
    expect(value({ identifier: 'plain', traits: [] })).toBe(10)
    expect(value({ identifier: 'plain', traits: [{ trait_key: '__proto__', trait_value: 'x' }] })).toBe(-1)
    expect(value({ identifier: 'plain', traits: [{ trait_key: 'constructor', trait_value: 1 }] })).toBe(-1)
  })
})

describe('flaggate status: the localEvaluation section in words', () => {
  it('one line per environment, failures in capitals with why', async () => {
    const { renderStatus } = await import('../../src/admin/status-text.js')
    const now = new Date('2026-01-01T00:01:00Z')
    const text = renderStatus({
      version: '1',
      localEvaluation: {
        mode: 'fallback', refreshSeconds: 10, engine: 'flagsmith-nodejs 8.1.2',
        environments: [
          { serverKey: 'ser.…ab12cd34', name: 'Production', documentAgeSeconds: 4.2, lastRefresh: { at: '2026-01-01T00:00:56Z', result: 'not-modified' }, localAnswers: 12 },
          { serverKey: 'ser.…ffee0011', documentAgeSeconds: null, lastRefresh: { at: '2026-01-01T00:00:59Z', result: 'refused', detail: 'Core answered 403' }, localAnswers: 0 }
        ],
        kept: { writes: 2, writeBytes: 100, analyticsCounters: 3 }
      }
    }, { now })
    expect(text).toContain('local     mode fallback, refresh 10s, flagsmith-nodejs 8.1.2')
    expect(text).toContain('ser.…ab12cd34 (Production)  document 4.2s old  last refresh not-modified 4s ago  12 local answers')
    expect(text).toContain('ser.…ffee0011 (no document)  document none  last refresh REFUSED 1s ago (Core answered 403)  0 local answers')
    expect(text).toContain('kept for Core: 2 writes, 3 analytics counters')
  })
})
