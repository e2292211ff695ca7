/**
 * The admin listener against a browser on the same machine (issue 7): without a token it accepted
 * any Host and any Origin (CSRF, DNS rebinding); the bearer scheme was case-sensitive. Real
 * requests with raw Host, Origin and Sec-Fetch-Site headers against a running gateway.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startFakeCore, type FakeCore } from '../support/fake-flagsmith.js'
import { policyYaml, startTestGateway, type TestGateway } from '../support/gateway.js'
import { json, raw, rawSocket } from '../support/http.js'
import { isLoopbackHost, isLoopbackOrigin } from '../../src/admin/guard.js'

const TOKEN = 'test-admin-token-0123456789'
let core: FakeCore
let open: TestGateway
let guarded: TestGateway

beforeAll(async () => {
  core = await startFakeCore()
  open = await startTestGateway(policyYaml({ coreUrl: core.url }))
  guarded = await startTestGateway(policyYaml({ coreUrl: core.url, adminToken: TOKEN }))
})
afterAll(async () => { await open?.close(); await guarded?.close(); await core?.close() })

const status = (gw: TestGateway, headers: Record<string, string>, method = 'GET', path = '/admin/status') => raw(gw.adminUrl, path, { method, headers })

describe('admin without a token (loopback): CSRF and DNS rebinding', () => {
  it.each([
    ['localhost with a port', 'localhost:8081'],
    ['LOCALHOST', 'LOCALHOST'],
    ['127.0.0.1', '127.0.0.1:8081'],
    ['elsewhere in 127/8', '127.8.9.10'],
    ['[::1]', '[::1]:8081']
  ])('accepts Host %s', async (_name, host) => {
    expect((await status(open, { host })).status).toBe(200)
  })

  it.each([
    ['a rebound DNS name', 'evil.example:8081'],
    ['a name that starts like loopback', '127.0.0.1.evil.example'],
    ['userinfo smuggling', 'evil.example@127.0.0.1'],
    ['the public address of the box', '10.1.2.3:8081'],
    ['localhost as a subdomain', 'localhost.evil.example']
  ])('refuses Host %s with 403 FLAGGATE_FORBIDDEN', async (_name, host) => {
    const r = await status(open, { host })
    expect(r.status).toBe(403)
    expect(json(r)).toMatchObject({ statusCode: 403, code: 'FLAGGATE_FORBIDDEN', error: 'Forbidden' })
  })

  it('refuses a request without Host (HTTP/1.0)', async () => {
    const u = new URL(open.adminUrl)
    const answer = await rawSocket(open.adminUrl, 'GET /admin/status HTTP/1.0\r\n\r\n')
    expect(answer).toMatch(/^HTTP\/1\.[01] 403 /)
    expect(u.hostname).toBe('127.0.0.1')
  })

  it('refuses a cross-site Origin, including the opaque "null", and a reload from one', async () => {
    for (const origin of ['https://evil.example', 'http://evil.example:8081', 'null', 'http://127.0.0.1.evil.example']) {
      expect((await status(open, { host: '127.0.0.1', origin })).status, origin).toBe(403)
    }
    const before = open.logs.lines.filter((l) => l.action === 'reload').length
    const r = await status(open, { host: '127.0.0.1', origin: 'https://evil.example', 'content-type': 'application/json' }, 'POST', '/admin/reload')
    expect(r.status).toBe(403)
    expect(open.logs.lines.filter((l) => l.action === 'reload').length).toBe(before)
    expect(open.logs.lines.some((l) => l.msg === "admin request refused: not from this machine's operators" && l.origin === 'https://evil.example')).toBe(true)
  })

  it('accepts a loopback Origin (a local tool in a browser)', async () => {
    expect((await status(open, { host: 'localhost:8081', origin: 'http://localhost:3000' })).status).toBe(200)
    expect((await status(open, { host: '127.0.0.1', origin: 'https://127.0.0.1' })).status).toBe(200)
  })

  it('refuses a state-changing request marked Sec-Fetch-Site: cross-site, even with loopback Host and no Origin', async () => {
    const r = await status(open, { host: '127.0.0.1', 'sec-fetch-site': 'cross-site' }, 'POST', '/admin/cache/purge')
    expect(r.status).toBe(403)
    // reading is not changing: a cross-site GET cannot read the answer anyway
    expect((await status(open, { host: '127.0.0.1', 'sec-fetch-site': 'cross-site' })).status).toBe(200)
  })

  it('health and metrics stay open (read-only, no keys in them)', async () => {
    expect((await status(open, { host: 'evil.example' }, 'GET', '/healthz')).status).toBe(200)
  })
})

describe('admin with a token', () => {
  it('the Bearer scheme is case-insensitive, with any spaces after it (RFC 7235)', async () => {
    for (const authorization of [`Bearer ${TOKEN}`, `bearer ${TOKEN}`, `BEARER ${TOKEN}`, `bEaReR    ${TOKEN}`, `Bearer\t${TOKEN}`, `Bearer ${TOKEN}   `]) {
      expect((await status(guarded, { authorization })).status, authorization).toBe(200)
    }
    for (const authorization of ['Bearer', `Bearer${TOKEN}`, `Basic ${TOKEN}`, `Bearer ${TOKEN} extra`]) {
      expect((await status(guarded, { authorization })).status, authorization).toBe(401)
    }
  })

  it('the token is the guard: any Host is fine (a browser cannot attach the token cross-site)', async () => {
    expect((await status(guarded, { authorization: `Bearer ${TOKEN}`, host: 'gateway-admin.internal:8081' })).status).toBe(200)
  })

  it('a cross-site state-changing request is refused even with the token', async () => {
    const r = await status(guarded, { authorization: `Bearer ${TOKEN}`, 'sec-fetch-site': 'cross-site' }, 'POST', '/admin/reload')
    expect(r.status).toBe(403)
  })
})

describe('every change through the admin API is logged with who, what and why', () => {
  it('reload and purge', async () => {
    await status(guarded, { authorization: `Bearer ${TOKEN}`, 'x-flaggate-reason': 'INC-42 new limits' }, 'POST', '/admin/reload')
    await raw(guarded.adminUrl, '/admin/cache/purge', { method: 'POST', headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json', 'x-flaggate-reason': 'stale flags\tafter a change' }, body: '{"key":"ser.secret-key-123"}' })
    const reload = guarded.logs.lines.find((l) => l.action === 'reload')
    expect(reload).toMatchObject({ who: 'admin-token', why: 'INC-42 new limits', msg: 'admin: policy reloaded' })
    const purge = guarded.logs.lines.find((l) => l.action === 'cache.purge')
    expect(purge).toMatchObject({ who: 'admin-token', why: 'stale flags after a change', msg: 'cache purged' })
    expect(JSON.stringify(guarded.logs.lines)).not.toContain('ser.secret-key-123')
  })
})

describe('the loopback rules themselves', () => {
  it('reads hosts as a browser would', () => {
    expect(isLoopbackHost('127.1')).toBe(true) // the WHATWG parser reads 127.1 as 127.0.0.1
    expect(isLoopbackHost('[0:0::1]:1')).toBe(true)
    expect(isLoopbackHost('localhost.')).toBe(true)
    expect(isLoopbackHost(undefined)).toBe(false)
    expect(isLoopbackHost('')).toBe(false)
    expect(isLoopbackHost('localhost:80:90')).toBe(false)
    expect(isLoopbackHost('127.0.0.1/x')).toBe(false)
    expect(isLoopbackOrigin('http://localhost:3000')).toBe(true)
    expect(isLoopbackOrigin('ftp://localhost')).toBe(false)
    expect(isLoopbackOrigin('http://localhost/path')).toBe(false)
  })
})
