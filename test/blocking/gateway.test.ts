/**
 * Blocking through a real gateway (in-process, memory store) on real sockets, in front of the
 * fake Core: static blocks of every kind, runtime blocks through the admin API and the CLI, TTL
 * expiry, automatic blocks, top, the admin token, 400s, and a restart that keeps the blocks
 * (state file).
 */
import { execFile } from 'node:child_process'
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startFakeCore, type FakeCore } from '../support/fake-flagsmith.js'
import { policyYaml, startTestGateway, tempPolicyFile, type TestGateway } from '../support/gateway.js'
import { json, raw, type RawResponse } from '../support/http.js'
import { startGateway } from '../../src/gateway.js'
import pino from 'pino'

const TOKEN = 'blocking-test-token-0123456789'
const AUTH = { authorization: `Bearer ${TOKEN}` }
const KEY = 'dev_client_key'
const SERVER_KEY = 'ser.dev_server_key'

const routes = `  - name: environment-document
    match: { methods: [GET], path: /api/v1/environment-document/ }
    upstream: core
  - name: flags
    match: { methods: [GET], path: /api/v1/flags/ }
    upstream: core
    limit: { by: [environmentKey, ip], rate: 1/m, burst: 2 }
  - name: identities
    match: { methods: [GET, POST], path: /api/v1/identities/ }
    upstream: core
  - name: default
    match: { pathPrefix: / }
    upstream: core`

const staticList = `blocklist:
  - { key: ser.blocked_server_key, reason: "retry storm", publicReason: "Your SDK retries too fast; contact support" }
  - { ip: 198.51.100.0/24, reason: "scraper" }
  - { ip: "2001:db8:bad::/48", reason: "v6 scraper" }
  - { userAgent: "^BadBot/", routes: [flags], reason: "bad bot" }
`

let core: FakeCore
let gw: TestGateway

/** A request from `ip` (the gateway trusts 127.0.0.1 as a proxy, so X-Forwarded-For is the client). */
async function get (path: string, opts: { key?: string; ip?: string; ua?: string } = {}): Promise<RawResponse> {
  const headers: Record<string, string> = { 'x-forwarded-for': opts.ip ?? '192.0.2.1' }
  if (opts.key !== undefined) headers['x-environment-key'] = opts.key
  if (opts.ua !== undefined) headers['user-agent'] = opts.ua
  return await raw(gw.url, path, { headers })
}

async function admin (method: string, path: string, body?: unknown, headers: Record<string, string> = AUTH): Promise<RawResponse> {
  return await raw(gw.adminUrl, path, { method, headers: { ...headers, ...(body === undefined ? {} : { 'content-type': 'application/json' }) }, ...(body === undefined ? {} : { body: JSON.stringify(body) }) })
}

async function until<T> (what: () => Promise<T>, ok: (v: T) => boolean, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const v = await what()
    if (ok(v) || Date.now() > deadline) return v
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

function expectBlocked (r: RawResponse, message = 'This client is blocked.'): void {
  expect(r.status).toBe(403)
  expect(r.headers['x-flaggate-upstream']).toBe('none')
  expect(r.headers['content-type']).toMatch(/^application\/json/)
  expect(json(r)).toEqual({ statusCode: 403, code: 'FLAGGATE_BLOCKED', error: 'Forbidden', message })
}

beforeAll(async () => {
  core = await startFakeCore()
  gw = await startTestGateway(policyYaml({
    coreUrl: core.url,
    adminToken: TOKEN,
    routes,
    extra: `${staticList}abuse:\n  rejections: 3 per 2s\n  blockFor: 3s\n`
  }).replace('  listen: 127.0.0.1:0\n  bodyLimit', '  listen: 127.0.0.1:0\n  trustedProxies: [127.0.0.1, "::1"]\n  bodyLimit'))
})
afterAll(async () => { await gw?.close(); await core?.close() })

describe('static blocks (policy)', () => {
  it('key: 403 with the public reason, no Retry-After, nothing sent upstream', async () => {
    core.reset()
    const r = await get('/api/v1/environment-document/', { key: 'ser.blocked_server_key' })
    expectBlocked(r, 'This client is blocked: Your SDK retries too fast; contact support.')
    expect(r.headers['retry-after']).toBeUndefined()
    expect(core.counts()).toBe(0)
    expect((await get('/api/v1/environment-document/', { key: SERVER_KEY })).status).toBe(200)
  })

  it('IPv4 CIDR and IPv6 CIDR, after trustedProxies', async () => {
    expectBlocked(await get('/api/v1/flags/', { key: KEY, ip: '198.51.100.42' }))
    expect((await get('/api/v1/identities/?identifier=a', { key: KEY, ip: '198.51.101.42' })).status).toBe(200)
    expectBlocked(await get('/api/v1/identities/?identifier=a', { key: KEY, ip: '2001:db8:bad:1::9' }))
    expect((await get('/api/v1/identities/?identifier=a', { key: KEY, ip: '2001:db8:bae::9' })).status).toBe(200)
  })

  it('User-Agent, scoped to its route', async () => {
    expectBlocked(await get('/api/v1/flags/', { key: KEY, ip: '192.0.2.50', ua: 'BadBot/2.0' }))
    expect((await get('/api/v1/identities/?identifier=a', { key: KEY, ip: '192.0.2.50', ua: 'BadBot/2.0' })).status).toBe(200)
    expect((await get('/api/v1/flags/', { key: KEY, ip: '192.0.2.51', ua: 'flagsmith-js/9' })).status).toBe(200)
  })

  it('a blocked request costs no rate-limit token and counts as decision "blocked"', async () => {
    // flags allows 2 per (key, ip): ten blocked requests first, then both tokens are still there
    for (let i = 0; i < 10; i++) expectBlocked(await get('/api/v1/flags/', { key: KEY, ip: '192.0.2.60', ua: 'BadBot/1' }))
    expect((await get('/api/v1/flags/', { key: KEY, ip: '192.0.2.60' })).status).toBe(200)
    expect((await get('/api/v1/flags/', { key: KEY, ip: '192.0.2.60' })).status).toBe(200)
    const metrics = (await raw(gw.adminUrl, '/metrics')).body.toString()
    expect(metrics).toMatch(/flaggate_requests_total\{route="flags",decision="blocked",status="403"\} (\d+)/)
    expect(metrics).toMatch(/flaggate_blocks_active\{source="static"\} 4/)
  })

  it('reload applies an edited blocklist live', async () => {
    const text = readFileSync(gw.file, 'utf8')
    writeFileSync(gw.file, text.replace('blocklist:\n', 'blocklist:\n  - { key: prod_client_key, reason: "added by reload" }\n'))
    expect((await admin('POST', '/admin/reload')).status).toBe(200)
    expectBlocked(await get('/api/v1/flags/', { key: 'prod_client_key', ip: '192.0.2.70' }))
    writeFileSync(gw.file, text)
    expect((await admin('POST', '/admin/reload')).status).toBe(200)
    expect((await get('/api/v1/flags/', { key: 'prod_client_key', ip: '192.0.2.70' })).status).toBe(200)
  })
})

describe('runtime blocks (admin API)', () => {
  it('POST blocks at once with Retry-After; GET lists it; DELETE lifts it; each is logged with who and why', async () => {
    const created = await admin('POST', '/admin/blocks', { key: SERVER_KEY, routes: ['environment-document'], ttl: '10m', reason: 'ticket 42: runaway poller', publicReason: 'Too many requests from your SDK' }, { ...AUTH, 'x-flaggate-actor': 'alice' })
    expect(created.status).toBe(201)
    const b = json(created) as Record<string, unknown>
    expect(b).toMatchObject({ id: expect.stringMatching(/^r-[a-z0-9]+$/), key: expect.stringMatching(/^ser\.…[0-9a-f]{8}$/), routes: ['environment-document'], reason: 'ticket 42: runaway poller', source: 'runtime', actor: 'admin-token (alice)' })
    expect(Date.parse(b.expiresAt as string) - Date.parse(b.createdAt as string)).toBe(600_000)
    expect(JSON.stringify(b)).not.toContain(SERVER_KEY)
    // no shared store: the answer says the block holds on this replica only
    const { scope, ...view } = b
    expect(scope).toBe('replica')

    const r = await get('/api/v1/environment-document/', { key: SERVER_KEY })
    expect(r.status).toBe(403)
    expect(Number(r.headers['retry-after'])).toBeGreaterThan(590)
    expect(Number(r.headers['retry-after'])).toBeLessThanOrEqual(600)
    expect((json(r) as { message: string }).message).toMatch(/^This client is blocked: Too many requests from your SDK\. The block ends in \d+ s\.$/)
    expect((await get('/api/v1/flags/', { key: SERVER_KEY, ip: '192.0.2.80' })).status).toBe(200) // other route

    const list = json(await admin('GET', '/admin/blocks')) as Array<Record<string, unknown>>
    expect(list.find((x) => x.id === b.id)).toEqual(view)
    expect(list.filter((x) => x.source === 'static')).toHaveLength(4)
    const status = json(await admin('GET', '/admin/status')) as { blocks: number; blocking: Record<string, unknown> }
    expect(status.blocks).toBe(5)
    expect(status.blocking).toMatchObject({ static: 4, runtime: 1, abuse: 0, store: { kind: 'file' }, automatic: { rejections: 3, windowMs: 2000, blockForMs: 3000 } })

    const del = await admin('DELETE', `/admin/blocks/${b.id as string}`)
    expect(del.status).toBe(204)
    expect((await get('/api/v1/environment-document/', { key: SERVER_KEY })).status).toBe(200)
    expect((await admin('DELETE', `/admin/blocks/${b.id as string}`)).status).toBe(404)

    const audit = gw.logs.lines.filter((l) => l.action === 'block' || l.action === 'unblock')
    expect(audit.map((l) => [l.action, l.who, l.id, l.reason])).toEqual(expect.arrayContaining([
      ['block', 'admin-token (alice)', b.id, 'ticket 42: runaway poller'],
      ['unblock', 'admin-token', b.id, 'ticket 42: runaway poller']
    ]))
    expect(JSON.stringify(gw.logs.lines)).not.toContain(SERVER_KEY)
  })

  it('a static block cannot be lifted at runtime (409); an unknown id is 404', async () => {
    const list = json(await admin('GET', '/admin/blocks')) as Array<{ id: string; source: string }>
    const s = list.find((x) => x.source === 'static')!
    const r = await admin('DELETE', `/admin/blocks/${s.id}`)
    expect(r.status).toBe(409)
    expect((json(r) as { message: string }).message).toMatch(/policy file/)
    expect((await admin('DELETE', '/admin/blocks/r-nosuchblock')).status).toBe(404)
  })

  it('a ttl expires: 403, then through again, and gone from the list', async () => {
    const b = json(await admin('POST', '/admin/blocks', { ip: '192.0.2.90', ttl: '1s', reason: 'short' })) as { id: string }
    expectBlocked(await get('/api/v1/identities/?identifier=x', { key: KEY, ip: '192.0.2.90' }), (json(await get('/api/v1/identities/?identifier=x', { key: KEY, ip: '192.0.2.90' })) as { message: string }).message)
    const after = await until(async () => await get('/api/v1/identities/?identifier=x', { key: KEY, ip: '192.0.2.90' }), (r) => r.status === 200)
    expect(after.status).toBe(200)
    const list = await until(async () => json(await admin('GET', '/admin/blocks')) as Array<{ id: string }>, (l) => !l.some((x) => x.id === b.id))
    expect(list.some((x) => x.id === b.id)).toBe(false)
  })

  it('without the token, or with a wrong one: 401 and nothing changes', async () => {
    const before = json(await admin('GET', '/admin/blocks'))
    for (const headers of [{}, { authorization: 'Bearer wrong' }] as Array<Record<string, string>>) {
      expect((await admin('POST', '/admin/blocks', { key: KEY, reason: 'x' }, headers)).status).toBe(401)
      expect((await admin('GET', '/admin/blocks', undefined, headers)).status).toBe(401)
      expect((await admin('GET', '/admin/top', undefined, headers)).status).toBe(401)
      const id = (before as Array<{ id: string }>)[0]!.id
      expect((await admin('DELETE', `/admin/blocks/${id}`, undefined, headers)).status).toBe(401)
    }
    expect(json(await admin('GET', '/admin/blocks'))).toEqual(before)
    expect((await get('/api/v1/flags/', { key: KEY, ip: '192.0.2.91' })).status).toBe(200)
  })

  it('malformed requests: 400 with a clear message, nothing added', async () => {
    const cases: Array<[unknown, RegExp]> = [
      [{ reason: 'x' }, /exactly one of "key"/],
      [{ key: KEY, ip: '10.0.0.1', reason: 'x' }, /exactly one target/],
      [{ ip: '10.0.0.0/40', reason: 'x' }, /not an IP address or CIDR/],
      [{ ip: '10.0.0.1', ttl: 'tomorrow', reason: 'x' }, /"ttl" must be a duration/],
      [{ userAgent: '(a)\\1', reason: 'x' }, /no backreferences or lookaround/],
      [{ userAgent: '[unclosed', reason: 'x' }, /not a valid regular expression/],
      [{ key: KEY }, /"reason" is required/],
      [{ key: KEY, reason: 'x', routes: ['nope'] }, /Unknown route "nope"/]
    ]
    const before = (json(await admin('GET', '/admin/blocks')) as unknown[]).length
    for (const [body, message] of cases) {
      const r = await admin('POST', '/admin/blocks', body)
      expect(r.status, JSON.stringify(body)).toBe(400)
      expect(json(r)).toMatchObject({ statusCode: 400, code: 'FLAGGATE_BAD_REQUEST', message: expect.stringMatching(message) })
    }
    const notJson = await raw(gw.adminUrl, '/admin/blocks', { method: 'POST', headers: { ...AUTH, 'content-type': 'application/json' }, body: '{"key":' })
    expect(notJson.status).toBe(400)
    expect((await admin('GET', '/admin/top?by=bytes')).status).toBe(400)
    expect((await admin('GET', '/admin/top?limit=0')).status).toBe(400)
    expect((json(await admin('GET', '/admin/blocks')) as unknown[]).length).toBe(before)
  })
})

describe('automatic blocks (abuse)', () => {
  it('blocks the (key, ip) a limit kept refusing, only that one, and lets it go after blockFor', async () => {
    const ip = '192.0.2.100'
    // burst 2: two 200s, then 429s; the 4th rejection (> 3 per 2s) blocks key+ip for 3 s
    const statuses: number[] = []
    for (let i = 0; i < 6; i++) statuses.push((await get('/api/v1/flags/', { key: KEY, ip })).status)
    expect(statuses.slice(0, 2)).toEqual([200, 200])
    expect(statuses.slice(2, 6)).toEqual([429, 429, 429, 429])
    const blocked = await until(async () => await get('/api/v1/flags/', { key: KEY, ip }), (r) => r.status === 403)
    expect(blocked.status).toBe(403)
    expect(Number(blocked.headers['retry-after'])).toBeGreaterThanOrEqual(1)
    expect(Number(blocked.headers['retry-after'])).toBeLessThanOrEqual(3)
    // the same key from another address, and another key from that address, are not blocked
    expect((await get('/api/v1/flags/', { key: KEY, ip: '192.0.2.101' })).status).toBe(200)
    expect((await get('/api/v1/identities/?identifier=a', { key: 'prod_client_key', ip })).status).toBe(200)
    // blocked on every route
    expect((await get('/api/v1/identities/?identifier=a', { key: KEY, ip })).status).toBe(403)

    const list = json(await admin('GET', '/admin/blocks')) as Array<Record<string, unknown>>
    const auto = list.find((b) => b.source === 'abuse')!
    expect(auto).toMatchObject({ id: expect.stringMatching(/^a-/), key: expect.stringMatching(/^dev_…/), ip, actor: 'abuse', reason: expect.stringMatching(/more than 3 requests refused with 429 within 2s \(limit flags on route flags\)/) })
    expect(Date.parse(auto.expiresAt as string) - Date.parse(auto.createdAt as string)).toBe(3000)
    expect((await raw(gw.adminUrl, '/metrics')).body.toString()).toMatch(/flaggate_blocks_active\{source="abuse"\} 1/)

    // expiry: no longer 403 (the bucket refills 1/m, so 429), and gone from the list
    const later = await until(async () => await get('/api/v1/flags/', { key: KEY, ip }), (r) => r.status !== 403)
    expect(later.status).toBe(429)
    const gone = await until(async () => json(await admin('GET', '/admin/blocks')) as Array<{ id: string }>, (l) => !l.some((b) => b.id === auto.id))
    expect(gone.some((b) => b.id === auto.id)).toBe(false)
  })
})

describe('top', () => {
  it('ranks clients with their full key (admin only), by requests and by rejections', async () => {
    for (let i = 0; i < 30; i++) await get('/api/v1/identities/?identifier=t', { key: 'prod_client_key', ip: '192.0.2.200' })
    expect((json(await admin('GET', '/admin/top?by=requests&limit=2')) as { clients: unknown[] }).clients).toHaveLength(2)
    const byReq = json(await admin('GET', '/admin/top?by=requests&limit=50')) as { by: string; clients: Array<Record<string, unknown>> }
    expect(byReq.by).toBe('requests')
    const counts = byReq.clients.map((c) => c.requests as number)
    expect(counts).toEqual([...counts].sort((a, b) => b - a))
    const mine = byReq.clients.find((c) => c.client === 'prod_client_key@192.0.2.200')
    expect(mine).toEqual({ client: 'prod_client_key@192.0.2.200', key: 'prod_client_key', ip: '192.0.2.200', route: 'identities', requests: 30, rejections: 0, error: 0 })
    const byRej = json(await admin('GET', '/admin/top?by=rejections&limit=50')) as { clients: Array<{ client: string; rejections: number }> }
    expect(byRej.clients.every((c) => c.rejections > 0)).toBe(true)
    expect(byRej.clients.map((c) => c.client)).toContain('dev_client_key@192.0.2.100')
    // nowhere else: not in the logs, not in the metrics
    expect((await raw(gw.adminUrl, '/metrics')).body.toString()).not.toContain('prod_client_key')
  })
})

describe('the CLI', () => {
  const cli = async (...args: string[]): Promise<{ stdout: string; stderr: string; code: number }> => {
    try {
      const r = await promisify(execFile)(process.execPath, ['dist/cli.js', ...args, '--admin', gw.adminUrl], { encoding: 'utf8', env: { ...process.env, FLAGGATE_ADMIN_TOKEN: TOKEN, USER: 'oncall' } })
      return { stdout: r.stdout, stderr: r.stderr, code: 0 }
    } catch (err) {
      const e = err as { stdout: string; stderr: string; code: number }
      return { stdout: e.stdout, stderr: e.stderr, code: e.code }
    }
  }

  it('top → block --client → blocks → unblock', async () => {
    for (let i = 0; i < 40; i++) await get('/api/v1/identities/?identifier=c', { key: 'ser.prod_server_key', ip: '192.0.2.210' })
    const top = await cli('top', '--limit', '50')
    expect(top.code).toBe(0)
    expect(top.stdout).toMatch(/^REQUESTS\s+REJECTED\s+ROUTE\s+CLIENT$/m)
    expect(top.stdout).toMatch(/^40\s+0\s+identities\s+ser\.prod_server_key@192\.0\.2\.210$/m)
    expect(top.stdout).toMatch(/^  flaggate block --client '\S+' --ttl 1h --reason '\.\.\.'$/m)

    const block = await cli('block', '--client', 'ser.prod_server_key@192.0.2.210', '--route', 'identities', '--ttl', '1h', '--reason', 'hammering identities')
    expect(block.code).toBe(0)
    const id = /^blocked (r-\w+): key ser\.…[0-9a-f]{8} on identities, until \S+ \((?:59m\d+s|1h0m) left\), on this gateway only \(no shared store: repeat it on each replica\)$/m.exec(block.stdout)?.[1]
    expect(id, block.stdout).toBeDefined()
    expect((await get('/api/v1/identities/?identifier=c', { key: 'ser.prod_server_key', ip: '192.0.2.210' })).status).toBe(403)

    const blocks = await cli('blocks')
    expect(blocks.stdout).toMatch(new RegExp(`^${id!}\\s+runtime\\s+key ser\\.…[0-9a-f]{8}\\s+identities\\s+in (?:59m\\d+s|1h0m)\\s+admin-token \\(oncall\\)\\s+hammering identities$`, 'm'))
    expect(blocks.stdout).not.toContain('ser.prod_server_key')

    const status = await cli('status', '--json')
    expect(JSON.parse(status.stdout)).toMatchObject({ blocks: 5 })

    const un = await cli('unblock', id!)
    expect(un).toMatchObject({ code: 0, stdout: `unblocked ${id!}\n` })
    expect((await get('/api/v1/identities/?identifier=c', { key: 'ser.prod_server_key', ip: '192.0.2.210' })).status).toBe(200)
    const again = await cli('unblock', id!)
    expect(again.code).toBe(1)
    expect(again.stderr).toMatch(/^flaggate: no block r-\w+ \(it may have expired\); `flaggate blocks` lists the blocks in force$/m)
    // an address the CLI can judge is a usage error before any request; a pattern only the
    // gateway judges (RE2 syntax) comes back as the admin API's 400
    const bad = await cli('block', '--ip', '10.0.0.0/99', '--reason', 'x')
    expect(bad.code).toBe(2)
    expect(bad.stderr).toMatch(/"10.0.0.0\/99" is not an IP address or CIDR block/)
    const badPattern = await cli('block', '--user-agent', '([', '--reason', 'x')
    expect(badPattern.code).toBe(1)
    expect(badPattern.stderr).toMatch(/admin API answered 400: .*userAgent/)
  }, 120_000) // seven CLI processes: seconds each on a busy 2-core machine
})

describe('restart (memory store)', () => {
  it('runtime blocks survive in the state file next to the policy; expired ones do not come back', async () => {
    const file = tempPolicyFile(policyYaml({ coreUrl: core.url, adminToken: TOKEN }))
    const logger = pino({ level: 'silent' })
    const first = await startGateway({ configPath: file, logger, watch: false })
    const post = async (base: string, body: unknown) => await raw(base, '/admin/blocks', { method: 'POST', headers: { ...AUTH, 'content-type': 'application/json' }, body: JSON.stringify(body) })
    const kept = json(await post(first.adminUrl, { key: 'prod_client_key', reason: 'keep me' })) as { id: string }
    await post(first.adminUrl, { key: 'dev_client_key', ttl: '1s', reason: 'gone by then' })
    await first.close()
    const stateFile = join(dirname(file), '.flaggate', 'blocks.json')
    expect(existsSync(stateFile)).toBe(true)
    const stored = readFileSync(stateFile, 'utf8')
    expect(stored).not.toContain('prod_client_key')
    await new Promise((resolve) => setTimeout(resolve, 1100))

    const second = await startGateway({ configPath: file, logger, watch: false })
    try {
      const list = json(await raw(second.adminUrl, '/admin/blocks', { headers: AUTH })) as Array<{ id: string; reason: string }>
      expect(list.map((b) => [b.id, b.reason])).toEqual([[kept.id, 'keep me']])
      expect((await raw(second.url, '/api/v1/flags/', { headers: { 'x-environment-key': 'prod_client_key' } })).status).toBe(403)
      expect((await raw(second.url, '/api/v1/flags/', { headers: { 'x-environment-key': 'dev_client_key' } })).status).toBe(200)
    } finally {
      await second.close()
    }
  })
})
