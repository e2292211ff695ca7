/**
 * Errors that say why: a 502/504 from the upstream carries its cause (refused, reset, timeout;
 * which upstream and URL host) in the access log and in one rate-limited `warn` line; the admin
 * status (and `flaggate status`) shows each upstream's URL, its last failure and when, and
 * requests per second by decision. Real sockets: a port nothing listens on, a server that drops
 * every connection, a server that never answers.
 */
import { execFile } from 'node:child_process'
import { createServer, type Server, type Socket } from 'node:net'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { describeCause, kindOf } from '../../src/upstream/cause.js'
import { policyYaml, startTestGateway, type TestGateway } from '../support/gateway.js'
import { json, raw } from '../support/http.js'
import { freePort } from '../support/redis-server.js'

async function listen (onSocket: (s: Socket) => void): Promise<{ server: Server; port: number }> {
  const server = createServer(onSocket)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return { server, port: (server.address() as { port: number }).port }
}

describe('the cause of an upstream failure', () => {
  let gw: TestGateway
  let refusedPort: number
  let reset: { server: Server; port: number }
  let silent: { server: Server; port: number }
  const sockets: Socket[] = []
  beforeAll(async () => {
    refusedPort = await freePort()
    reset = await listen((s) => { s.once('data', () => s.resetAndDestroy()) })
    silent = await listen((s) => { sockets.push(s) })
    gw = await startTestGateway(policyYaml({
      coreUrl: `http://127.0.0.1:${refusedPort}`,
      routes: `  - name: refused
    match: { pathPrefix: /refused/ }
    upstream: core
  - name: reset
    match: { pathPrefix: /reset/ }
    upstream: dropper
  - name: slow
    match: { pathPrefix: /slow/ }
    upstream: silent`,
      extra: ''
    }).replace('upstreams:\n', `upstreams:\n  dropper: { url: "http://127.0.0.1:${reset.port}" }\n  silent: { url: "http://127.0.0.1:${silent.port}/base", timeout: 300ms }\n`))
  })
  afterAll(async () => {
    await gw?.close()
    for (const s of sockets) s.destroy()
    reset?.server.close()
    silent?.server.close()
  })

  const accessLine = (reqId: string) => gw.logs.lines.find((l) => l.msg === 'request' && l.reqId === reqId)

  it('refused, reset and timeout: the client gets the fixed answer, the access log the cause', async () => {
    const r1 = await raw(gw.url, '/refused/x', { headers: { 'x-request-id': 'cause-refused' } })
    expect(r1.status).toBe(502)
    expect((json(r1) as { message: string }).message).toBe('The upstream could not be reached.')
    expect(accessLine('cause-refused')).toMatchObject({ status: 502, error: `connection refused by 127.0.0.1:${refusedPort} (upstream core: ECONNREFUSED)` })

    const r2 = await raw(gw.url, '/reset/x', { method: 'POST', body: 'x', headers: { 'x-request-id': 'cause-reset' } })
    expect(r2.status).toBe(502)
    expect(accessLine('cause-reset')?.error).toMatch(new RegExp(`^connection reset by 127\\.0\\.0\\.1:${reset.port} \\(upstream dropper: (ECONNRESET|UND_ERR_SOCKET)\\)$`))

    const r3 = await raw(gw.url, '/slow/x', { headers: { 'x-request-id': 'cause-timeout' } })
    expect(r3.status).toBe(504)
    expect(accessLine('cause-timeout')?.error).toMatch(new RegExp(`^timed out waiting for 127\\.0\\.0\\.1:${silent.port} \\(upstream silent: UND_ERR_HEADERS_TIMEOUT\\)$`))
  })

  it('one warn line per upstream and kind of failure, however many requests fail', async () => {
    for (let i = 0; i < 20; i++) expect((await raw(gw.url, '/refused/again')).status).toBe(502)
    const warns = gw.logs.lines.filter((l) => l.level === 40 && l.upstream === 'core' && l.cause === 'refused')
    expect(warns).toHaveLength(1)
    expect(warns[0]).toMatchObject({ host: `127.0.0.1:${refusedPort}`, code: 'ECONNREFUSED', status: 502, msg: `upstream failing: connection refused by 127.0.0.1:${refusedPort} (upstream core: ECONNREFUSED)` })
  })

  it('the admin status: each upstream\'s URL, last failure and its time; requests per second by decision', async () => {
    const s = json(await raw(gw.adminUrl, '/admin/status')) as { upstreams: Record<string, { url: string; lastError?: string; lastErrorAt?: string }>; traffic: { windowSeconds: number; perSecond: Record<string, number> } }
    expect(s.upstreams.core).toMatchObject({ url: `http://127.0.0.1:${refusedPort}`, lastError: expect.stringContaining('connection refused') })
    expect(Date.now() - Date.parse(s.upstreams.core!.lastErrorAt!)).toBeLessThan(60_000)
    expect(s.upstreams.silent!.url).toBe(`http://127.0.0.1:${silent.port}/base`)
    expect(s.traffic.windowSeconds).toBe(60)
    // 23 answered requests so far, all `allowed` (the upstream failed them): 23/60 per second
    expect(s.traffic.perSecond.allowed).toBeCloseTo(23 / 60, 2)
    expect(s.traffic.perSecond.limited).toBe(0)

    const cli = await promisify(execFile)(process.execPath, ['dist/cli.js', 'status', '--admin', gw.adminUrl], { encoding: 'utf8', env: { ...process.env, FLAGGATE_ADMIN_TOKEN: '' } })
    expect(cli.stdout).toMatch(new RegExp(`^ +core +http://127\\.0\\.0\\.1:${refusedPort} +last failure \\d+s ago: connection refused by`, 'm'))
    expect(cli.stdout).toMatch(/^upstreams /m)
    expect(cli.stdout).toMatch(/^traffic {3}allowed 0\.38\/s \(average over the last 60 s\)$/m)
    expect(cli.stdout).toMatch(/^blocks {4}static 0, runtime 0, abuse 0$/m)
    expect(cli.stdout).not.toMatch(/\{"/) // no raw JSON
  })
})

describe('describeCause', () => {
  it('names DNS and TLS failures as such', () => {
    expect(kindOf('ENOTFOUND')).toBe('dns')
    expect(kindOf('EAI_AGAIN')).toBe('dns')
    expect(kindOf('ERR_TLS_CERT_ALTNAME_INVALID')).toBe('tls')
    expect(kindOf('UNABLE_TO_VERIFY_LEAF_SIGNATURE')).toBe('tls')
    expect(kindOf('SELF_SIGNED_CERT_IN_CHAIN')).toBe('tls')
    const dns = Object.assign(new Error('fetch failed'), { cause: Object.assign(new Error('getaddrinfo ENOTFOUND core.internal'), { code: 'ENOTFOUND' }) })
    expect(describeCause(dns, 'core', 'core.internal:8000').text).toBe('DNS lookup failed for core.internal:8000 (upstream core: ENOTFOUND)')
  })
})
