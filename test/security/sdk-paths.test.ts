/**
 * Attack 7: the deprecated SDK endpoints Core still serves (identities/<id>/,
 * identities/<id>/traits/<key>, flags/<id>) fell to the shipped policy's `default` route, which
 * only counts: 300 of 300 reached Core beside 429s on identities/. With the shipped policy
 * (config/gateway.yaml, as `npm start` runs it), one SDK instance gets the same per-instance
 * budget there as on the modern forms (burst 100), and a cache rule can never be put on them.
 */
import { readFileSync } from 'node:fs'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startRecordingUpstream, type RecordingUpstream } from '../support/recording-upstream.js'
import { startTestGateway, type TestGateway } from '../support/gateway.js'
import { raw } from '../support/http.js'
import { loadPolicy } from '../../src/policy/load.js'

const KEY = 'legacy_client_key'
let up: RecordingUpstream
let gw: TestGateway

beforeAll(async () => {
  up = await startRecordingUpstream()
  gw = await startTestGateway(readFileSync('config/gateway.yaml', 'utf8'), {
    env: { ...process.env, FLAGGATE_LISTEN: '127.0.0.1:0', FLAGGATE_ADMIN_LISTEN: '127.0.0.1:0', FLAGGATE_ADMIN_TOKEN: '', FLAGSMITH_CORE_URL: up.url, FLAGGATE_STATE_FILE: join(mkdtempSync(join(tmpdir(), 'flaggate-state-')), 'blocks.json') }
  })
})
afterAll(async () => { await gw?.close(); await up?.close() })

async function burst (method: string, path: (i: number) => string, n = 300): Promise<{ allowed: number; reachedCore: number; seconds: number }> {
  up.reset()
  const t0 = performance.now()
  let allowed = 0
  for (let i = 0; i < n; i += 50) {
    const batch = await Promise.all(Array.from({ length: Math.min(50, n - i) }, async (_, j) =>
      await raw(gw.url, path(i + j), { method, headers: { 'x-environment-key': KEY, 'content-type': 'application/json' }, ...(method === 'POST' ? { body: '{"trait_value":1}' } : {}) })))
    allowed += batch.filter((r) => r.status === 200).length
  }
  return { allowed, reachedCore: up.calls.length, seconds: (performance.now() - t0) / 1000 }
}

describe('attack 7: deprecated SDK endpoints under the shipped policy', () => {
  it.each([
    ['GET identities/<id>/', 'GET', (i: number) => `/api/v1/identities/user-${i}/`],
    ['POST identities/<id>/traits/<key>', 'POST', (i: number) => `/api/v1/identities/user-${i}/traits/plan`],
    ['GET flags/<id>', 'GET', (i: number) => `/api/v1/flags/user-${i}`]
  ])('%s: 300 requests from one SDK instance, at most its burst (100) reach Core', async (_what, method, path) => {
    const r = await burst(method, path)
    // burst 100, refilled at 20/s while the requests run (however long the busy machine takes)
    expect(r.allowed).toBeLessThanOrEqual(100 + Math.ceil(20 * r.seconds) + 1)
    expect(r.allowed).toBeLessThan(300)
    expect(r.reachedCore).toBe(r.allowed)
  })

  it('a cache rule on them is refused at validation, with the reason', () => {
    const base = 'upstreams:\n  core: { url: "http://127.0.0.1:1" }\nroutes:\n'
    const v1 = loadPolicy('p.yaml', `${base}  - name: f\n    match: { methods: [GET], pathPrefix: /api/v1/flags/ }\n    upstream: core\n    cache: { ttl: 2s }\n`, {})
    expect(v1.ok).toBe(false)
    if (!v1.ok) expect(v1.errors[0]!.message).toMatch(/flags\/<id> creates an identity/)
    const v2 = loadPolicy('p.yaml', `${base}  - name: i\n    match: { methods: [GET], pathPrefix: /api/v1/identities/ }\n    upstream: core\n    cache: { ttl: 2s }\n`, {})
    expect(v2.ok).toBe(false)
    if (!v2.ok) expect(v2.errors[0]!.message).toMatch(/identities\/ cannot be cached/)
  })
})
