/**
 * Issue 7, bounded resources and the smaller findings at the door: methods no route takes, header
 * sizes (431), request and header timeouts (408), idle keep-alive and the connection cap. Raw
 * sockets against a real gateway in front of a recording upstream.
 */
import { connect, type Socket } from 'node:net'
import { writeFileSync } from 'node:fs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startRecordingUpstream, type RecordingUpstream } from '../support/recording-upstream.js'
import { policyYaml, startTestGateway, type TestGateway } from '../support/gateway.js'
import { rawExchange } from '../support/http.js'
import { loadPolicy } from '../../src/policy/load.js'
import { useGateway } from '../support/use-gateway.js'

const get = (target: string, headers = '') => `GET ${target} HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n${headers}\r\n`

async function waitFor (cond: () => boolean, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not met in time')
    await new Promise((r) => setTimeout(r, 25))
  }
}

/** A socket that records what it receives and whether the server closed it. */
function openSocket (base: string): { sock: Socket; received: () => string; closed: () => boolean; connected: Promise<void> } {
  const u = new URL(base)
  const sock = connect(Number(u.port), u.hostname)
  let text = ''
  let closed = false
  sock.on('data', (c: Buffer) => { text += c.toString('latin1') })
  sock.on('close', () => { closed = true })
  sock.on('error', () => {})
  const connected = new Promise<void>((resolve) => sock.once('connect', () => resolve()))
  return { sock, received: () => text, closed: () => closed, connected }
}

describe('methods no route takes', () => {
  const t = useGateway({ upstream: startRecordingUpstream })

  it.each(['TRACE', 'PROPFIND', 'MKCOL', 'LOCK', 'PURGE', 'SEARCH'])('%s gets our JSON 404, never fastify\'s body, and Core sees nothing', async (method) => {
    t.upstream.reset()
    const r = await rawExchange(t.gw.url, `${method} /api/v1/flags/ HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n`)
    expect(r.status).toBe(404)
    expect(r.headers['content-type']).toMatch(/^application\/json/)
    expect(r.headers['x-flaggate-upstream']).toBe('none')
    expect(JSON.parse(r.body)).toEqual({ statusCode: 404, code: 'FLAGGATE_NOT_FOUND', error: 'Not Found', message: `No route of the policy takes the method ${method}.` })
    expect(t.upstream.calls).toHaveLength(0)
  })

  it('CONNECT gets our JSON 400 (not a dropped connection)', async () => {
    const r = await rawExchange(t.gw.url, 'CONNECT core.internal:443 HTTP/1.1\r\nHost: core.internal:443\r\n\r\n')
    expect(r.status).toBe(400)
    expect(JSON.parse(r.body)).toMatchObject({ statusCode: 400, code: 'FLAGGATE_BAD_REQUEST' })
  })

  it('a method Node does not know gets our JSON 400', async () => {
    const r = await rawExchange(t.gw.url, 'FROB /api/v1/flags/ HTTP/1.1\r\nHost: gw.test\r\n\r\n')
    expect(r.status).toBe(400)
    expect(JSON.parse(r.body)).toMatchObject({ code: 'FLAGGATE_BAD_REQUEST' })
  })
})

describe('header sizes: 431 FLAGGATE_HEADERS_TOO_LARGE', () => {
  const t = useGateway({ upstream: startRecordingUpstream })

  const expect431 = (r: { status: number; body: string; headers: Record<string, string> }) => {
    expect(r.status).toBe(431)
    expect(r.headers['content-type']).toMatch(/^application\/json/)
    expect(JSON.parse(r.body)).toMatchObject({ statusCode: 431, code: 'FLAGGATE_HEADERS_TOO_LARGE', error: 'Request Header Fields Too Large' })
  }

  it('an X-Environment-Key over 256 bytes, on every route, and the key reaches neither Core nor the log', async () => {
    t.upstream.reset()
    const key = 'k'.repeat(257)
    for (const path of ['/api/v1/flags/', '/api/v1/environment-document/', '/anything']) {
      expect431(await rawExchange(t.gw.url, get(path, `X-Environment-Key: ${key}\r\n`)))
    }
    expect(t.upstream.calls).toHaveLength(0)
    const lines = t.gw.logs.lines.filter((l) => l.msg === 'request' && l.status === 431)
    expect(lines).toHaveLength(3)
    for (const l of lines) expect(l.key).toBeUndefined()
    expect(JSON.stringify(t.gw.logs.lines)).not.toContain(key)
  })

  it('a key of 256 bytes passes', async () => {
    t.upstream.reset()
    const r = await rawExchange(t.gw.url, get('/api/v1/flags/', `X-Environment-Key: ${'k'.repeat(256)}\r\n`))
    expect(r.status).toBe(200)
    expect(t.upstream.calls).toHaveLength(1)
  })

  it('one 10 KB header (within the 16 KiB block) → 431', async () => {
    t.upstream.reset()
    expect431(await rawExchange(t.gw.url, get('/api/v1/flags/', `X-Big: ${'b'.repeat(10_000)}\r\n`)))
    expect(t.upstream.calls).toHaveLength(0)
  })

  it('a 20 KB header → 431 from the parser, in our JSON shape', async () => {
    expect431(await rawExchange(t.gw.url, get('/api/v1/flags/', `X-Big: ${'b'.repeat(20_000)}\r\n`)))
  })

  it('a header block of many small headers over 16 KiB → 431', async () => {
    let headers = ''
    for (let i = 0; i < 40; i++) headers += `X-H${i}: ${'v'.repeat(500)}\r\n`
    expect431(await rawExchange(t.gw.url, get('/api/v1/flags/', headers)))
  })
})

describe('timeouts (server.* in the policy)', () => {
  let up: RecordingUpstream
  let gw: TestGateway
  beforeAll(async () => {
    up = await startRecordingUpstream((call, res) => {
      // a slow upstream: the request is in, so requestTimeout must not cut it
      const delay = call.rawPath.startsWith('/slow') ? 2500 : 0
      setTimeout(() => res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}'), delay)
    })
    gw = await startTestGateway(policyYaml({
      coreUrl: up.url,
      server: '  requestTimeout: 1s\n  headersTimeout: 1s\n  keepAliveTimeout: 1s'
    }), { watch: false })
  })
  afterAll(async () => { await gw?.close(); await up?.close() })

  it('a POST that trickles one byte every 2 s is cut with 408 by requestTimeout, and others are served meanwhile', async () => {
    up.reset()
    const s = openSocket(gw.url)
    await s.connected
    s.sock.write('POST /api/v1/identities/ HTTP/1.1\r\nHost: gw.test\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{')
    const trickle = setInterval(() => { if (!s.closed()) s.sock.write('"') }, 2000)
    try {
      // another client is served while the trickler waits
      expect((await rawExchange(gw.url, get('/api/v1/flags/', 'X-Environment-Key: other\r\n'))).status).toBe(200)
      await waitFor(s.closed)
    } finally { clearInterval(trickle) }
    expect(s.received()).toMatch(/^HTTP\/1\.1 408 Request Timeout\r\n/)
    expect(s.received()).toContain('"code":"FLAGGATE_REQUEST_TIMEOUT"')
    expect(up.calls.filter((c) => c.method === 'POST')).toHaveLength(0)
  })

  it('headers that never end are cut with 408 by headersTimeout', async () => {
    const s = openSocket(gw.url)
    await s.connected
    s.sock.write('GET /api/v1/flags/ HTTP/1.1\r\nHost: gw.test\r\nX-Slow: ')
    const trickle = setInterval(() => { if (!s.closed()) s.sock.write('a') }, 300)
    try { await waitFor(s.closed) } finally { clearInterval(trickle) }
    expect(s.received()).toMatch(/^HTTP\/1\.1 408 /)
  })

  it('a slow upstream answer is not cut: the timeout covers receiving the request only', async () => {
    const r = await rawExchange(gw.url, get('/slow/x'))
    expect(r.status).toBe(200)
  })

  it('an idle keep-alive connection is closed after keepAliveTimeout', async () => {
    const s = openSocket(gw.url)
    await s.connected
    s.sock.write('GET /healthz HTTP/1.1\r\nHost: gw.test\r\n\r\n')
    await waitFor(() => s.received().includes('{"status":"ok"}'))
    expect(s.received()).toMatch(/keep-alive: timeout=1/i)
    await waitFor(s.closed)
  })
})

describe('server.maxConnections', () => {
  let up: RecordingUpstream
  let gw: TestGateway
  beforeAll(async () => {
    up = await startRecordingUpstream()
    // long keep-alive: the held connections must not close by themselves during the test
    gw = await startTestGateway(policyYaml({ coreUrl: up.url, server: '  keepAliveTimeout: 5m\n  maxConnections: 3' }), { watch: false })
  })
  afterAll(async () => { await gw?.close(); await up?.close() })

  it('connections beyond the cap are closed at once, the held ones keep working, and a reload raises the cap live', async () => {
    const held = [openSocket(gw.url), openSocket(gw.url), openSocket(gw.url)]
    // each held connection is accepted and counted: it gets an answer and stays open
    for (const h of held) {
      await h.connected
      h.sock.write('GET /healthz HTTP/1.1\r\nHost: gw.test\r\n\r\n')
      await waitFor(() => h.received().includes('{"status":"ok"}'))
    }
    const refused = openSocket(gw.url)
    refused.sock.write('GET /healthz HTTP/1.1\r\nHost: gw.test\r\n\r\n')
    await waitFor(refused.closed)
    expect(refused.received()).toBe('')
    for (const h of held) expect(h.closed()).toBe(false)
    // a held connection still serves
    held[0]!.sock.write('GET /readyz HTTP/1.1\r\nHost: gw.test\r\n\r\n')
    await waitFor(() => held[0]!.received().includes('{"status":"ready"}'))

    writeFileSync(gw.file, policyYaml({ coreUrl: up.url, server: '  keepAliveTimeout: 5m\n  maxConnections: 10' }))
    expect(gw.reload().ok).toBe(true)
    expect((await rawExchange(gw.url, get('/healthz'))).status).toBe(200)
    for (const h of held) h.sock.destroy()
  })
})

describe('server bounds in the policy', () => {
  const load = (server: string) => loadPolicy('p.yaml', `server:\n${server}\nupstreams:\n  core: { url: "http://x" }\nroutes:\n  - { name: d, match: { pathPrefix: / }, upstream: core }\n`, {})
  it('have sane defaults', () => {
    const r = load('  listen: 127.0.0.1:0')
    expect(r.ok && r.policy.data.server).toMatchObject({ requestTimeout: 30_000, headersTimeout: 10_000, keepAliveTimeout: 72_000, maxConnections: 10_000 })
  })
  it('refuse a headersTimeout longer than requestTimeout, zero durations and a zero cap', () => {
    const paths = (server: string): string[] => { const r = load(server); return r.ok ? [] : r.errors.map((e) => e.path).sort() }
    expect(paths('  keepAliveTimeout: 0s\n  maxConnections: 0')).toEqual(['server.keepAliveTimeout', 'server.maxConnections'])
    expect(paths('  requestTimeout: 5s\n  headersTimeout: 10s')).toEqual(['server.headersTimeout'])
  })
})
