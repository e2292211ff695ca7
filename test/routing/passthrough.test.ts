/**
 * A client must not notice the gateway: for every SDK route, what comes back through the gateway
 * is what Core sends, byte for byte, and what reaches Core is what the client sent.
 */
import { describe, expect, it } from 'vitest'
import { policyYaml, startTestGateway } from '../support/gateway.js'
import { json, raw } from '../support/http.js'
import { useGateway } from '../support/use-gateway.js'

const t = useGateway()

// Headers that legitimately differ between two HTTP responses, or that the gateway adds.
const VOLATILE = new Set(['date', 'expires', 'connection', 'keep-alive', 'x-flaggate-upstream', 'transfer-encoding'])
const stable = (h: Record<string, unknown>) => Object.fromEntries(Object.entries(h).filter(([k]) => !VOLATILE.has(k)))

const SERVER = 'ser.dev_server_key'
const CLIENT = 'dev_client_key'

describe('responses pass through byte for byte on every SDK route', () => {
  const cases: Array<[string, string, string, Record<string, string>, string | undefined]> = [
    ['flags', 'GET', '/api/v1/flags/', { 'x-environment-key': CLIENT }, undefined],
    ['one flag', 'GET', '/api/v1/flags/?feature=banner', { 'x-environment-key': CLIENT }, undefined],
    ['unknown flag (404)', 'GET', '/api/v1/flags/?feature=nope', { 'x-environment-key': CLIENT }, undefined],
    ['bad key (403)', 'GET', '/api/v1/flags/', { 'x-environment-key': 'nope' }, undefined],
    ['identity GET', 'GET', '/api/v1/identities/?identifier=user-1&transient=true', { 'x-environment-key': CLIENT }, undefined],
    ['identity POST with traits', 'POST', '/api/v1/identities/', { 'x-environment-key': SERVER, 'content-type': 'application/json' }, '{"identifier":"user-2","traits":[{"trait_key":"plan","trait_value":"pro"}]}'],
    ['traits', 'POST', '/api/v1/traits/', { 'x-environment-key': SERVER, 'content-type': 'application/json' }, '{"identity":{"identifier":"user-2"},"trait_key":"age","trait_value":42}'],
    ['environment document', 'GET', '/api/v1/environment-document/', { 'x-environment-key': SERVER }, undefined],
    ['environment document, client key (403)', 'GET', '/api/v1/environment-document/', { 'x-environment-key': CLIENT }, undefined],
    ['analytics', 'POST', '/api/v1/analytics/flags/', { 'x-environment-key': SERVER, 'content-type': 'application/json' }, '{"banner": 3}'],
    ['analytics v2 (204)', 'POST', '/api/v2/analytics/flags/', { 'x-environment-key': SERVER, 'content-type': 'application/json' }, '{"evaluations":[]}'],
    ['liveness', 'GET', '/health/liveness/', {}, undefined]
  ]
  it.each(cases)('%s', async (_name, method, path, headers, body) => {
    const direct = await raw(t.upstream.url, path, { method, headers, body })
    const via = await raw(t.gw.url, path, { method, headers, body })
    expect(via.status).toBe(direct.status)
    expect(via.body.equals(direct.body)).toBe(true)
    expect(stable(via.headers)).toEqual(stable(direct.headers))
    expect(via.headers['x-flaggate-upstream']).toBe('core')
  })
})

describe('requests reach Core as the client sent them', () => {
  it('keeps method, raw path, raw query and body bytes, and adds the forwarding headers', async () => {
    const body = Buffer.from([0x7b, 0x00, 0xff, 0xfe, 0x22, 0x7d, 0x0a])
    const query = "a=1&b=%27c&c='d&page_id=identity_override:1:abc&e=%E2%9C%93&f"
    const r = await raw(t.gw.url, `/echo/x%20y/?${query}`, {
      method: 'PATCH',
      body,
      headers: { 'content-type': 'application/octet-stream', 'x-custom': 'kept', 'x-environment-key': SERVER, 'user-agent': 'flagsmith-nodejs-sdk/8.1.2', host: 'flags.example.com' }
    })
    expect(r.status).toBe(200)
    const echo = json(r) as { method: string; url: string; headers: Record<string, string>; bodyBase64: string }
    expect(echo.method).toBe('PATCH')
    expect(echo.url).toBe(`/echo/x%20y/?${query}`)
    expect(Buffer.from(echo.bodyBase64, 'base64').equals(body)).toBe(true)
    expect(echo.headers['x-custom']).toBe('kept')
    expect(echo.headers['x-environment-key']).toBe(SERVER)
    expect(echo.headers['user-agent']).toBe('flagsmith-nodejs-sdk/8.1.2')
    expect(echo.headers['content-type']).toBe('application/octet-stream')
    expect(echo.headers['content-length']).toBe(String(body.length))
    expect(echo.headers['x-forwarded-for']).toBe('127.0.0.1')
    expect(echo.headers['x-forwarded-proto']).toBe('http')
    expect(echo.headers['x-forwarded-host']).toBe('flags.example.com')
    expect(echo.headers.via).toBe('1.1 flaggate')
  })

  it('drops hop-by-hop headers and the headers named in Connection', async () => {
    const r = await raw(t.gw.url, '/echo/hop', { headers: { connection: 'keep-alive, x-secret-hop', 'x-secret-hop': '1', 'keep-alive': 'timeout=5', 'proxy-authorization': 'Basic x', te: 'trailers', 'x-kept': '1' } })
    const h = (json(r) as { headers: Record<string, string> }).headers
    expect(h['x-secret-hop']).toBeUndefined()
    expect(h['proxy-authorization']).toBeUndefined()
    expect(h.te).toBeUndefined()
    expect(h['keep-alive']).toBeUndefined()
    expect(h['x-kept']).toBe('1')
  })

  it('passes upstream status codes and headers through: 418, 204, 302 with Location, Link', async () => {
    for (const status of [418, 204, 302, 500]) {
      const r = await raw(t.gw.url, '/echo/status', { headers: { 'x-echo-status': String(status) } })
      expect(r.status).toBe(status)
      expect(r.headers['x-upstream-test']).toBe('1')
      expect(r.headers.link).toMatch(/rel="next"/)
      expect(r.headers['x-flaggate-upstream']).toBe('core')
    }
  })

  it('a client-supplied X-Forwarded-For is replaced when the peer is not a trusted proxy', async () => {
    const r = await raw(t.gw.url, '/echo/xff', { headers: { 'x-forwarded-for': '6.6.6.6', 'x-forwarded-host': 'evil', via: '1.0 other' } })
    const h = (json(r) as { headers: Record<string, string> }).headers
    expect(h['x-forwarded-for']).toBe('127.0.0.1')
    expect(h['x-forwarded-host']).not.toBe('evil')
    expect(h.via).toBe('1.0 other, 1.1 flaggate')
  })
})

describe('trailing slashes on the SDK routes', () => {
  it.each([
    ['/api/v1/flags', '/api/v1/flags/', CLIENT, 'GET'],
    ['/api/v1/environment-document', '/api/v1/environment-document/', SERVER, 'GET'],
    ['/api/v1/identities?identifier=u1', '/api/v1/identities/', CLIENT, 'GET']
  ])('%s is matched as its route and sent to Core with the slash', async (path, expected, key, method) => {
    t.upstream.reset()
    const r = await raw(t.gw.url, path, { method, headers: { 'x-environment-key': key } })
    expect(r.status).toBe(200)
    expect(t.upstream.requests.map((q) => [q.path, q.status])).toEqual([[expected, 200]])
  })

  it('POST /api/v1/identities without a slash reaches Core as a POST, not a 301', async () => {
    t.upstream.reset()
    const r = await raw(t.gw.url, '/api/v1/identities', { method: 'POST', headers: { 'x-environment-key': CLIENT, 'content-type': 'application/json' }, body: '{"identifier":"u9"}' })
    expect(r.status).toBe(200)
    expect((json(r) as { identifier: string }).identifier).toBe('u9')
    expect(t.upstream.requests.map((q) => [q.method, q.path, q.status])).toEqual([['POST', '/api/v1/identities/', 200]])
  })

  it('a pathPrefix route takes its bare prefix too, and sends it with the slash (POST /api/v1/traits)', async () => {
    const g = await startTestGateway(policyYaml({ coreUrl: t.upstream.url, routes: `  - name: traits
    match: { methods: [POST], pathPrefix: /api/v1/traits/ }
    upstream: core
  - name: default
    match: { pathPrefix: / }
    upstream: core` }))
    try {
      t.upstream.reset()
      const r = await raw(g.url, '/api/v1/traits', { method: 'POST', headers: { 'x-environment-key': SERVER, 'content-type': 'application/json' }, body: '{"identity":{"identifier":"u5"},"trait_key":"k","trait_value":1}' })
      expect(r.status).toBe(200)
      expect(t.upstream.requests.map((q) => [q.method, q.path, q.status])).toEqual([['POST', '/api/v1/traits/', 200]])
      expect(g.logs.lines.findLast((l) => l.msg === 'request')?.route).toBe('traits')
    } finally { await g.close() }
  })

  it('a percent-encoded path is matched on its decoded form (no limit bypass)', async () => {
    const r = await raw(t.gw.url, '/api/v1/%66lags/', { headers: { 'x-environment-key': CLIENT, 'x-request-id': 'pct-flags' } })
    const line = t.gw.logs.lines.findLast((l) => l.reqId === 'pct-flags')
    // the log shows the canonical path: what was routed and sent to Core
    expect(line).toMatchObject({ route: 'flags', url: '/api/v1/flags/' })
    expect(r.headers['x-flaggate-upstream']).toBe('core')
  })
})

describe('HEAD on a GET route', () => {
  it('is matched by the GET route (its limits and cache apply), not by the catch-all', async () => {
    const r = await raw(t.gw.url, '/api/v1/flags/', { method: 'HEAD', headers: { 'x-environment-key': CLIENT } })
    expect(r.status).toBe(200)
    expect(r.body.length).toBe(0)
    const line = t.gw.logs.lines.findLast((l) => l.method === 'HEAD')
    expect(line?.route).toBe('flags')
  })
})
