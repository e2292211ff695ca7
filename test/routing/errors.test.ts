/**
 * The gateway's own answers: never a 500, never a hang, always the JSON body `{statusCode, code, error, message}`.
 */
import { readFileSync } from 'node:fs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ERRORS } from '../../src/errors.js'
import { startFakeCore, type FakeCore } from '../support/fake-flagsmith.js'
import { policyYaml, startTestGateway, type TestGateway } from '../support/gateway.js'
import { freePort } from '../support/redis-server.js'
import { json, raw, rawSocket } from '../support/http.js'

const bodyOf = (code: keyof typeof ERRORS) => ({ statusCode: ERRORS[code].status, code, error: ERRORS[code].error })

describe('upstream failures', () => {
  let core: FakeCore
  let gw: TestGateway
  let deadGw: TestGateway
  beforeAll(async () => {
    core = await startFakeCore()
    gw = await startTestGateway(policyYaml({ coreUrl: core.url, coreTimeout: '1s' }))
    // nothing listens on a port we just freed: connection refused
    deadGw = await startTestGateway(policyYaml({ coreUrl: `http://127.0.0.1:${await freePort()}` }))
  })
  afterAll(async () => { await gw?.close(); await deadGw?.close(); await core?.close() })

  it('connection refused → 502 FLAGGATE_UPSTREAM_UNREACHABLE', async () => {
    const r = await raw(deadGw.url, '/api/v1/flags/', { headers: { 'x-environment-key': 'k' } })
    expect(r.status).toBe(502)
    expect(r.headers['content-type']).toMatch(/^application\/json/)
    expect(r.headers['x-flaggate-upstream']).toBe('none')
    expect(json(r)).toMatchObject(bodyOf('FLAGGATE_UPSTREAM_UNREACHABLE'))
    expect(typeof (json(r) as { message: string }).message).toBe('string')
  })

  it('connection reset without an answer → 502', async () => {
    core.db.down = true
    try {
      const r = await raw(gw.url, '/api/v1/flags/', { headers: { 'x-environment-key': 'dev_client_key' } })
      expect(r.status).toBe(502)
      expect(json(r)).toMatchObject(bodyOf('FLAGGATE_UPSTREAM_UNREACHABLE'))
    } finally { core.db.down = false }
  })

  it('no answer within the upstream timeout → 504 FLAGGATE_UPSTREAM_TIMEOUT, not a hang', async () => {
    core.db.hang = true
    try {
      const started = Date.now()
      const r = await raw(gw.url, '/api/v1/flags/', { headers: { 'x-environment-key': 'dev_client_key' } })
      expect(r.status).toBe(504)
      expect(json(r)).toMatchObject(bodyOf('FLAGGATE_UPSTREAM_TIMEOUT'))
      // undici's timers tick coarsely (a 1 s timer fires within ~1.5 s); bound it loosely
      expect(Date.now() - started).toBeLessThan(5000)
    } finally { core.db.hang = false }
  })

  it('an upstream 503 is passed through once, not retried', async () => {
    core.reset()
    const r = await raw(gw.url, '/echo/503', { headers: { 'x-echo-status': '503' } })
    expect(r.status).toBe(503)
    expect(core.counts('/echo/503')).toBe(1)
  })

  it('/healthz answers 200 on both listeners while Core is down', async () => {
    for (const base of [deadGw.url, deadGw.adminUrl]) {
      const r = await raw(base, '/healthz')
      expect(r.status).toBe(200)
      expect(json(r)).toEqual({ status: 'ok' })
    }
    expect((await raw(deadGw.url, '/readyz')).status).toBe(200)
  })
})

describe('malformed and oversized requests', () => {
  let core: FakeCore
  let gw: TestGateway
  beforeAll(async () => {
    core = await startFakeCore()
    gw = await startTestGateway(policyYaml({ coreUrl: core.url, bodyLimit: '1kb' }))
  })
  afterAll(async () => { await gw?.close(); await core?.close() })

  it('a body over server.bodyLimit → 413, and Core never sees it', async () => {
    core.reset()
    const r = await raw(gw.url, '/api/v1/identities/', { method: 'POST', headers: { 'content-type': 'application/json', 'x-environment-key': 'dev_client_key' }, body: 'x'.repeat(2048) })
    expect(r.status).toBe(413)
    expect(json(r)).toMatchObject(bodyOf('FLAGGATE_BODY_TOO_LARGE'))
    expect(core.counts()).toBe(0)
  })

  it('a chunked body that grows past the limit → 413', async () => {
    const r = await rawSocket(gw.url, 'POST /api/v1/identities/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n' +
      '400\r\n' + 'a'.repeat(1024) + '\r\n400\r\n' + 'b'.repeat(1024) + '\r\n0\r\n\r\n')
    expect(r).toMatch(/^HTTP\/1\.1 413 /)
    expect(r).toContain('"code":"FLAGGATE_BODY_TOO_LARGE"')
  })

  it('a body within the limit passes', async () => {
    const r = await raw(gw.url, '/api/v1/identities/', { method: 'POST', headers: { 'content-type': 'application/json', 'x-environment-key': 'dev_client_key' }, body: '{"identifier":"small"}' })
    expect(r.status).toBe(200)
  })

  it('a malformed header → 400 FLAGGATE_BAD_REQUEST in our JSON shape', async () => {
    const r = await rawSocket(gw.url, 'GET /api/v1/flags/ HTTP/1.1\r\nHost: x\r\nX-Bad\x01Header: 1\r\n\r\n')
    expect(r).toMatch(/^HTTP\/1\.1 400 /)
    const body = JSON.parse(r.slice(r.indexOf('\r\n\r\n') + 4)) as Record<string, unknown>
    expect(body).toMatchObject(bodyOf('FLAGGATE_BAD_REQUEST'))
  })

  it('a broken request line → 400', async () => {
    const r = await rawSocket(gw.url, 'GARBAGE\r\n\r\n')
    expect(r).toMatch(/^HTTP\/1\.1 400 /)
    expect(r).toContain('"code":"FLAGGATE_BAD_REQUEST"')
  })

  it('an invalid percent-encoding in the path → 400', async () => {
    const r = await raw(gw.url, '/api/v1/fl%ZZags/')
    expect(r.status).toBe(400)
    expect(json(r)).toMatchObject(bodyOf('FLAGGATE_BAD_REQUEST'))
  })
})

describe('no matching route', () => {
  it('→ 404 FLAGGATE_NOT_FOUND when the policy has no catch-all route', async () => {
    const core = await startFakeCore()
    const gw = await startTestGateway(policyYaml({ coreUrl: core.url, routes: '  - name: flags\n    match: { path: /api/v1/flags/ }\n    upstream: core' }))
    try {
      const r = await raw(gw.url, '/api/v1/other/')
      expect(r.status).toBe(404)
      expect(json(r)).toMatchObject(bodyOf('FLAGGATE_NOT_FOUND'))
      expect(core.counts()).toBe(0)
    } finally { await gw.close(); await core.close() }
  })
})

describe('the error table and the documentation agree', () => {
  it('docs/operations.md lists every code with its status', () => {
    const doc = readFileSync('docs/operations.md', 'utf8')
    for (const [code, e] of Object.entries(ERRORS)) {
      expect(doc, `docs/operations.md must document ${code}`).toMatch(new RegExp(`\\|\\s*${e.status}\\s*\\|\\s*\`${code}\``))
    }
  })
})

describe('a connection that dies before any answer', () => {
  it('is retried once on a fresh connection for GET, never for POST', async () => {
    const { createServer } = await import('node:net')
    let connections = 0
    // the first connection is closed as soon as a request arrives (what a keep-alive socket
    // that the server timed out looks like); later ones answer
    const server = createServer((sock) => {
      const n = ++connections
      sock.once('data', () => {
        if (n === 1) { sock.destroy(); return }
        sock.end('HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\nConnection: close\r\n\r\n{"ok":true}')
      })
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const url = `http://127.0.0.1:${(server.address() as { port: number }).port}`
    const gw = await startTestGateway(policyYaml({ coreUrl: url }))
    try {
      const get = await raw(gw.url, '/api/v1/flags/', { headers: { 'x-environment-key': 'k' } })
      expect(get.status).toBe(200)
      expect(connections).toBe(2)
      connections = 0
      const post = await raw(gw.url, '/api/v1/identities/', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"identifier":"x"}' })
      expect(post.status).toBe(502)
      expect(connections).toBe(1)
    } finally { await gw.close(); server.close() }
  })
})
