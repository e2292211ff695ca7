/**
 * The shipped config/gateway.yaml, as `npm start` runs it (only the addresses come from the
 * environment): the defaults must stop the 2022 runaway client without hurting a fleet.
 */
import { readFileSync } from 'node:fs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startFakeCore, type FakeCore } from '../support/fake-flagsmith.js'
import { startTestGateway, type TestGateway } from '../support/gateway.js'
import { raw } from '../support/http.js'

const SERVER = 'ser.dev_server_key'
let core: FakeCore
let gw: TestGateway

beforeAll(async () => {
  core = await startFakeCore()
  gw = await startTestGateway(readFileSync('config/gateway.yaml', 'utf8'), {
    env: { ...process.env, FLAGGATE_LISTEN: '127.0.0.1:0', FLAGGATE_ADMIN_LISTEN: '127.0.0.1:0', FLAGGATE_ADMIN_TOKEN: '', FLAGSMITH_CORE_URL: core.url }
  })
})
afterAll(async () => { await gw?.close(); await core?.close() })

const doc = async (method: 'GET' | 'HEAD') => await raw(gw.url, '/api/v1/environment-document/', { method, headers: { 'x-environment-key': SERVER } })

describe('shipped defaults', () => {
  it('one runaway SDK process (the 2022 bug) is held to its per-instance limit, GET and HEAD alike, and Core sees one request', async () => {
    core.reset()
    const answers: Array<{ method: 'GET' | 'HEAD'; status: number; retryAfter: unknown }> = []
    // 60 requests as fast as the client can send them, half of them HEAD
    const t0 = Date.now()
    for (let i = 0; i < 60; i++) {
      const method = i % 2 === 0 ? 'GET' : 'HEAD'
      const r = await doc(method)
      answers.push({ method, status: r.status, retryAfter: r.headers['retry-after'] })
    }
    const elapsedS = (Date.now() - t0) / 1000
    const statuses = answers.map((a) => a.status)
    const allowed = statuses.filter((s) => s === 200).length
    // burst 10, then 1/s: one more token for each second the loop took (a busy machine takes longer)
    expect(allowed).toBeGreaterThanOrEqual(10)
    expect(allowed, `${elapsedS.toFixed(1)} s for 60 requests`).toBeLessThanOrEqual(10 + Math.ceil(elapsedS))
    expect(statuses.filter((s) => s !== 200 && s !== 429)).toEqual([])
    expect(core.counts('/api/v1/environment-document/')).toBe(1)
    // refused alike whatever the method, each refusal saying when to come back
    const refused = answers.filter((a) => a.status === 429)
    expect(new Set(refused.map((a) => a.method))).toEqual(new Set(['GET', 'HEAD']))
    for (const a of refused) expect(Number(a.retryAfter)).toBeGreaterThanOrEqual(1)
  })

  it('a HEAD is answered from the cache like a GET', async () => {
    const r = await raw(gw.url, '/api/v1/environment-document/', { method: 'HEAD', headers: { 'x-environment-key': 'ser.prod_server_key' } })
    expect(r.status).toBe(200)
    const again = await raw(gw.url, '/api/v1/environment-document/', { method: 'HEAD', headers: { 'x-environment-key': 'ser.prod_server_key' } })
    expect(again.headers['x-cache-status']).toBe('HIT')
    expect(again.body.length).toBe(0)
  })
})
