/**
 * Core answering garbage, resetting, hanging or flooding: every case ends in one of the documented
 * answers (502 unreachable, 504 timeout, a stale document, or Core's own bytes), the gateway keeps
 * serving, and once everything is closed no socket or timer is left behind.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { request } from 'node:http'
import { startHostileUpstream, OK_BODY, type HostileMode, type HostileUpstream } from './support/hostile-upstream.js'
import { policyYaml, startTestGateway, type TestGateway } from '../support/gateway.js'
import { raw } from '../support/http.js'

const KEY = 'ser.chaos-key'

function routes (): string {
  return `  - name: environment-document
    match: { methods: [GET], path: /api/v1/environment-document/ }
    upstream: core
    cache: { ttl: 300ms, staleIfError: 10m, maxEntrySize: 1mb }
  - name: flags
    match: { methods: [GET], path: /api/v1/flags/ }
    upstream: core
  - name: default
    match: { pathPrefix: / }
    upstream: core`
}

/** Resources that outlive a test if something leaks: sockets, servers, timers. */
function resources (): Record<string, number> {
  const counts: Record<string, number> = {}
  for (const r of process.getActiveResourcesInfo()) counts[r] = (counts[r] ?? 0) + 1
  return counts
}

/** Streams a response and counts its bytes without keeping them (the 100 MB case). */
async function drain (base: string, path: string, headers: Record<string, string>): Promise<{ status: number; bytes: number; aborted: boolean }> {
  const u = new URL(base)
  return await new Promise((resolve, reject) => {
    const req = request({ host: u.hostname, port: u.port, path, headers, agent: false, timeout: 30_000 }, (res) => {
      let bytes = 0
      let aborted = false
      res.on('data', (c: Buffer) => { bytes += c.length })
      res.on('aborted', () => { aborted = true })
      res.on('error', () => { aborted = true })
      res.on('close', () => resolve({ status: res.statusCode ?? 0, bytes, aborted: aborted || !res.complete }))
    })
    req.on('timeout', () => req.destroy(new Error('client timeout')))
    req.on('error', reject)
    req.end()
  })
}

describe('chaos: a hostile Core', () => {
  let core: HostileUpstream
  let gw: TestGateway
  let before: Record<string, number>

  beforeAll(async () => {
    before = resources()
    core = await startHostileUpstream('ok')
    gw = await startTestGateway(policyYaml({ coreUrl: core.url, coreTimeout: '1s', routes: routes() }), { watch: false })
  })

  afterAll(async () => {
    await gw?.close()
    await core?.close()
  })

  const cases: Array<[HostileMode, number[]]> = [
    ['invalid-http', [502]],
    ['reset-before-answer', [502]],
    ['huge-headers', [502]],
    ['invalid-header', [502]],
    ['silent', [504]]
  ]

  for (const [mode, statuses] of cases) {
    it(`proxied route: ${mode} → ${statuses.join('/')} in our JSON shape, and the gateway keeps serving`, async () => {
      core.mode = mode
      const r = await raw(gw.url, '/api/v1/flags/', { headers: { 'x-environment-key': KEY } })
      expect(statuses).toContain(r.status)
      expect(r.headers['content-type']).toMatch(/application\/json/)
      expect((JSON.parse(r.body.toString()) as { code: string }).code).toMatch(/^FLAGGATE_UPSTREAM_/)
      core.mode = 'ok'
      const ok = await raw(gw.url, '/api/v1/flags/', { headers: { 'x-environment-key': KEY } })
      expect(ok.status).toBe(200)
      expect(ok.body.toString()).toBe(OK_BODY)
    })
  }

  for (const mode of ['truncated', 'reset-mid-body', 'lying-length'] as const) {
    it(`proxied route: ${mode} never reaches the client as a complete, well-formed answer`, async () => {
      core.mode = mode
      const r = await drain(gw.url, '/api/v1/flags/', { 'x-environment-key': KEY })
      // A small answer of known length is read whole before anything is sent (upstream/client.ts
      // BUFFERED_BODY_BYTES), so one cut short is our 502; a lying Content-Length is taken at its
      // word (the extra bytes are not a response). A truncated body must never look complete.
      if (mode === 'lying-length') {
        expect(r.status).toBe(200)
        expect(r.bytes).toBeLessThanOrEqual(10)
      } else {
        expect(r.status).toBe(502)
      }
      core.mode = 'ok'
      expect((await raw(gw.url, '/api/v1/flags/', { headers: { 'x-environment-key': KEY } })).status).toBe(200)
    })
  }

  it('a 100 MB body streams through the proxy without being buffered', async () => {
    core.mode = 'huge-body'
    const heapBefore = process.memoryUsage().heapUsed
    const r = await drain(gw.url, '/api/v1/flags/', { 'x-environment-key': KEY })
    expect(r.status).toBe(200)
    expect(r.bytes).toBe(100 * 1024 * 1024)
    // the gateway runs in this process: had it buffered the body, the heap would have grown by ~100 MB
    expect(process.memoryUsage().heapUsed - heapBefore).toBeLessThan(60 * 1024 * 1024)
    core.mode = 'ok'
  })

  it('environment document: garbage after a good fill is answered from the stale copy', async () => {
    core.mode = 'ok'
    const first = await raw(gw.url, '/api/v1/environment-document/', { headers: { 'x-environment-key': KEY } })
    expect(first.status).toBe(200)
    for (const mode of ['invalid-http', 'reset-before-answer', 'truncated', 'error-500', 'silent'] as const) {
      core.mode = mode
      // past the 300 ms ttl, so every request asks Core again and must fall back to the stale copy
      await new Promise((resolve) => setTimeout(resolve, 350))
      const r = await raw(gw.url, '/api/v1/environment-document/', { headers: { 'x-environment-key': KEY } })
      expect(r.status, mode).toBe(200)
      expect(r.headers['x-cache-status'], mode).toBe('STALE')
      expect(r.body.toString(), mode).toBe(OK_BODY)
    }
    core.mode = 'ok'
  })

  it('environment document larger than maxEntrySize (100 MB) is streamed, not buffered', async () => {
    core.mode = 'huge-body'
    const r = await drain(gw.url, '/api/v1/environment-document/', { 'x-environment-key': 'ser.other-key' })
    expect(r.status).toBe(200)
    expect(r.bytes).toBe(100 * 1024 * 1024)
    core.mode = 'ok'
  })

  it('leaves no socket, server or timer behind once closed', async () => {
    await gw.close()
    await core.close()
    const deadline = Date.now() + 10_000
    let now = resources()
    const leaked = (): string[] => Object.keys(now).filter((k) => k !== 'TTYWrap' && (now[k] ?? 0) > (before[k] ?? 0))
    while (leaked().length > 0 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 100))
      now = resources()
    }
    expect(leaked(), JSON.stringify({ before, now })).toEqual([])
  })
})
