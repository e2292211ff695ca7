/**
 * The one header policy, on real sockets: a gateway in front of a recording upstream that keeps
 * exactly what it received.
 */
import { Agent as HttpAgent, request as httpRequest, type IncomingHttpHeaders } from 'node:http'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { policyYaml, startTestGateway, type TestGateway } from '../support/gateway.js'
import { raw } from '../support/http.js'
import { startRecordingUpstream, type RecordingUpstream } from '../support/recording-upstream.js'

const KEY = 'ser.header_policy_key'
const ROUTES = `  - name: by-client
    match: { pathPrefix: /limited/ }
    upstream: core
    limit: { by: "header:X-Client-Id", rate: 1000/s, burst: 1000 }
  - name: default
    match: { pathPrefix: / }
    upstream: core`

let up: RecordingUpstream
let gw: TestGateway
let trustingGw: TestGateway

beforeAll(async () => {
  up = await startRecordingUpstream()
  gw = await startTestGateway(policyYaml({ coreUrl: up.url, routes: ROUTES }))
  trustingGw = await startTestGateway(policyYaml({ coreUrl: up.url, routes: ROUTES }).replace('server:\n', 'server:\n  trustedProxies: [127.0.0.1, 10.0.0.0/8]\n'))
})
afterAll(async () => { await gw?.close(); await trustingGw?.close(); await up?.close() })
beforeEach(() => { up.reset(); up.respond = (_c, res) => { res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}') } })

function rawHeaderNames (rawHeaders: string[]): string[] {
  return rawHeaders.filter((_v, i) => i % 2 === 0).map((n) => n.toLowerCase())
}

describe('hop-by-hop headers, both ways', () => {
  it("Core's Connection: close and Keep-Alive do not reach the client nor close its connection", async () => {
    up.respond = (_c, res) => {
      res.shouldKeepAlive = false
      res.writeHead(200, {
        'content-type': 'application/json',
        connection: 'close, x-hop-secret',
        'keep-alive': 'timeout=1',
        'x-hop-secret': 'internal',
        'proxy-authenticate': 'Basic realm="core"',
        'x-kept': 'yes'
      }).end('{"ok":true}')
    }
    const agent = new HttpAgent({ keepAlive: true, maxSockets: 1 })
    try {
      const { port } = new URL(gw.url)
      const get = async (): Promise<{ status: number; headers: IncomingHttpHeaders; reused: boolean }> => await new Promise((resolve, reject) => {
        const req = httpRequest({ host: '127.0.0.1', port, path: '/api/v1/flags/', agent, headers: { 'x-environment-key': KEY } }, (res) => {
          res.resume()
          res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, reused: req.reusedSocket }))
        })
        req.on('error', reject)
        req.end()
      })
      const first = await get()
      const second = await get()
      for (const r of [first, second]) {
        expect(r.status).toBe(200)
        expect(r.headers.connection).toBe('keep-alive')
        expect(r.headers['x-hop-secret']).toBeUndefined()
        expect(r.headers['proxy-authenticate']).toBeUndefined()
        expect(r.headers['x-kept']).toBe('yes')
        expect(r.headers['x-flaggate-upstream']).toBe('core')
      }
      expect(first.headers['keep-alive']).not.toBe('timeout=1')
      expect(second.reused).toBe(true)
      expect(up.calls).toHaveLength(2)
    } finally { agent.destroy() }
  })

  it('Connection: x-environment-key still reaches Core with the key', async () => {
    const r = await raw(gw.url, '/api/v1/flags/', { headers: { connection: 'keep-alive, x-environment-key, x-drop-me', 'x-environment-key': KEY, 'x-drop-me': '1', te: 'trailers', 'proxy-authorization': 'Basic eA==' } })
    expect(r.status).toBe(200)
    const h = up.calls[0]!.headers
    expect(h['x-environment-key']).toBe(KEY)
    expect(h['x-drop-me']).toBeUndefined()
    expect(h.te).toBeUndefined()
    expect(h['proxy-authorization']).toBeUndefined()
    expect(h.host).toBe(new URL(up.url).host)
  })

  it('Connection never removes a header a limit keys on (header:<Name> dimension)', async () => {
    const r = await raw(gw.url, '/limited/x', { headers: { connection: 'x-client-id, host', 'x-client-id': 'tenant-7' } })
    expect(r.status).toBe(200)
    expect(up.calls[0]!.headers['x-client-id']).toBe('tenant-7')
    expect(up.calls[0]!.headers.host).toBe(new URL(up.url).host)
  })
})

describe('requests reach Core as sent', () => {
  it('a POST without Content-Type reaches Core without a Content-Type added', async () => {
    const r = await raw(gw.url, '/api/v1/analytics/flags/', { method: 'POST', body: '{"banner":1}', headers: { 'x-environment-key': KEY } })
    expect(r.status).toBe(200)
    const call = up.calls[0]!
    expect(rawHeaderNames(call.rawHeaders)).not.toContain('content-type')
    expect(call.body.toString()).toBe('{"banner":1}')
    expect(call.headers['content-length']).toBe('12')
  })

  it('a POST with Expect: 100-continue is answered by the gateway and reaches Core without it', async () => {
    const body = 'x'.repeat(2048)
    const r = await raw(gw.url, '/api/v1/traits/', { method: 'POST', body, headers: { expect: '100-continue', 'content-type': 'application/json', 'content-length': String(body.length) } })
    expect(r.status).toBe(200)
    expect(up.calls[0]!.headers.expect).toBeUndefined()
    expect(up.calls[0]!.body.toString()).toBe(body)
  })

  it('body bytes and the query string go upstream byte for byte', async () => {
    const body = Buffer.from([0x00, 0xff, 0x7b, 0x0a, 0xfe])
    const query = "?a=%2F&b='c'&c=%E2%9C%93&&d"
    const r = await raw(gw.url, `/echo/x%20y/${query}`, { method: 'PUT', body, headers: { 'content-type': 'application/x-custom' } })
    expect(r.status).toBe(200)
    expect(up.calls[0]!.rawPath).toBe(`/echo/x%20y/${query}`)
    expect(up.calls[0]!.body.equals(body)).toBe(true)
    expect(up.calls[0]!.headers['content-type']).toBe('application/x-custom')
  })
})

describe('forwarding headers from the resolved client address only', () => {
  const FORGED = {
    forwarded: 'for=6.6.6.6',
    'x-real-ip': '6.6.6.6',
    'true-client-ip': '6.6.6.6',
    'x-client-ip': '6.6.6.6',
    'cf-connecting-ip': '6.6.6.6',
    'fastly-client-ip': '6.6.6.6',
    'x-cluster-client-ip': '6.6.6.6'
  }

  it('from an untrusted peer: the forged chain and client-IP headers never reach Core', async () => {
    await raw(gw.url, '/api/v1/flags/', { headers: { 'x-forwarded-for': '6.6.6.6, 203.0.113.9', ...FORGED } })
    const h = up.calls[0]!.headers
    expect(h['x-forwarded-for']).toBe('127.0.0.1')
    expect(h['x-real-ip']).toBe('127.0.0.1')
    for (const name of ['forwarded', 'true-client-ip', 'x-client-ip', 'cf-connecting-ip', 'fastly-client-ip', 'x-cluster-client-ip']) expect(h[name], name).toBeUndefined()
  })

  it('through trusted proxies: Core gets the resolved client IP onward, never the entries left of it', async () => {
    await raw(trustingGw.url, '/api/v1/flags/', { headers: { 'x-forwarded-for': '6.6.6.6, 203.0.113.9' } })
    expect(up.calls[0]!.headers['x-forwarded-for']).toBe('203.0.113.9, 127.0.0.1')
    expect(up.calls[0]!.headers['x-real-ip']).toBe('203.0.113.9')
    up.reset()
    await raw(trustingGw.url, '/api/v1/flags/', { headers: { 'x-forwarded-for': '6.6.6.6, 203.0.113.9, 10.1.2.3', 'x-real-ip': '6.6.6.6' } })
    expect(up.calls[0]!.headers['x-forwarded-for']).toBe('203.0.113.9, 10.1.2.3, 127.0.0.1')
    expect(up.calls[0]!.headers['x-real-ip']).toBe('203.0.113.9')
    // the access log and the limiter see the same client
    expect(trustingGw.logs.lines.findLast((l) => l.msg === 'request')?.ip).toBe('203.0.113.9')
  })
})

describe('X-Flaggate-Upstream on every answer', () => {
  it('names core on proxied answers, none on the gateway\'s own', async () => {
    expect((await raw(gw.url, '/api/v1/flags/')).headers['x-flaggate-upstream']).toBe('core')
    up.respond = (_c, res) => { res.writeHead(503, { 'x-flaggate-upstream': 'forged' }).end() }
    const r = await raw(gw.url, '/api/v1/flags/')
    expect(r.status).toBe(503)
    expect(r.headers['x-flaggate-upstream']).toBe('core')
    expect((await raw(gw.url, '/healthz')).headers['x-flaggate-upstream']).toBe('none')
  })
})
