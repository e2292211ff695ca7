/**
 * Rate limits through a real gateway (in process, real sockets) in front of the fake Core: the
 * 429 on the wire, the RateLimit headers, shadow limits, overrides, per-route buckets and
 * per-instance buckets, with the memory store and with Redis.
 */
import { randomUUID } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { inject } from 'vitest'
import { startFakeCore, type FakeCore } from '../support/fake-flagsmith.js'
import { startTestGateway, type TestGateway } from '../support/gateway.js'
import { raw, json } from '../support/http.js'

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))
const FLAGS = '/api/v1/flags/'
const DOC = '/api/v1/environment-document/'
const KEY = 'dev_client_key'
const SERVER_KEY = 'ser.dev_server_key'
/** Core's own answer (200, or 403 for a key it does not know) is not the point: passed or limited. */
const P = 'passed'
const outcome = (status: number): number | string => status === 429 ? 429 : P

function policy (coreUrl: string, redis?: { url: string; keyPrefix: string }): string {
  return `server:
  listen: 127.0.0.1:0
  trustedProxies: [127.0.0.1/32, "::1"]
admin:
  listen: 127.0.0.1:0
upstreams:
  core: { url: "${coreUrl}", timeout: 5s }
${redis === undefined ? '' : `store:
  redis:
    url: ${redis.url}
    keyPrefix: "${redis.keyPrefix}"
    commandTimeout: 200ms
`}routes:
  - name: environment-document
    match: { methods: [GET], path: ${DOC} }
    upstream: core
    limit: { by: environmentKey, rate: 1/s, burst: 2 }
  - name: flags
    match: { methods: [GET], path: ${FLAGS} }
    upstream: core
    limit:
      - { by: environmentKey, rate: 1/m, burst: 4 }
      - { by: [environmentKey, ip], rate: 1/m, burst: 2 }
  - name: identities
    match: { methods: [GET, POST], path: /api/v1/identities/ }
    upstream: core
    limit: { by: "header:X-Client-Id", rate: 1/m, burst: 1 }
  - name: default
    match: { pathPrefix: / }
    upstream: core
    limit: { by: ip, rate: 1/m, burst: 1, shadow: true }
overrides:
  - key: ${SERVER_KEY}
    routes: [environment-document]
    limit: { by: environmentKey, rate: 1/s, burst: 5 }
`
}

const get = (gw: TestGateway, path: string, headers: Record<string, string> = {}) => raw(gw.url, path, { headers })
const withKey = (key: string, ip?: string): Record<string, string> => ({ 'x-environment-key': key, ...(ip === undefined ? {} : { 'x-forwarded-for': ip }) })

let core: FakeCore
beforeAll(async () => { core = await startFakeCore() })
afterAll(async () => { await core.close() })

for (const storeKind of ['memory', 'redis'] as const) {
  describe(`through the gateway (${storeKind} store)`, () => {
    let gw: TestGateway
    beforeAll(async () => {
      const redis = storeKind === 'redis' ? { url: inject('redisUrl'), keyPrefix: `test-${randomUUID()}:` } : undefined
      gw = await startTestGateway(policy(core.url, redis), { watch: false })
      const wired = (json(await raw(gw.adminUrl, '/admin/status')) as { store: { mode?: string } }).store.mode !== undefined
      if (!wired) throw new Error('the rate-limit room is not wired into src/gateway.ts (docs/design.md, "The request pipeline")')
      if (storeKind === 'redis') {
        // the store connects in the background; until then decisions are local
        const deadline = Date.now() + 5000
        while (Date.now() < deadline) {
          const s = await raw(gw.adminUrl, '/admin/status')
          if ((json(s) as { store: { mode?: string } }).store.mode === 'redis') break
          await sleep(20)
        }
      }
    })
    afterAll(async () => { await gw.close() })

    it('answers 429 with the JSON error body and headers once the burst is spent, and Core never sees it', async () => {
      const ip = '198.51.100.1'
      const key = 'ser.prod_server_key'
      core.reset()
      const a = await get(gw, DOC, withKey(key, ip))
      expect(a.status).toBe(200)
      expect(a.headers['ratelimit-policy']).toBe('"environment-document";q=2;w=2')
      expect(a.headers.ratelimit).toBe('"environment-document";r=1;t=1')
      const b = await get(gw, DOC, withKey(key, ip))
      expect(b.status).toBe(200)
      expect(b.headers.ratelimit).toBe('"environment-document";r=0;t=1')
      const c = await get(gw, DOC, withKey(key, ip))
      expect(c.status).toBe(429)
      expect(c.headers['content-type']).toMatch(/^application\/json/)
      expect(c.headers['retry-after']).toBe('1')
      expect(c.headers['ratelimit-policy']).toBe('"environment-document";q=2;w=2')
      expect(c.headers.ratelimit).toBe('"environment-document";r=0;t=1')
      expect(c.headers['x-flaggate-upstream']).toBe('none')
      expect(json(c)).toEqual({
        statusCode: 429,
        code: 'FLAGGATE_RATE_LIMITED',
        error: 'Too Many Requests',
        message: "Rate limit 'environment-document' exceeded (1/s, burst 2, per environmentKey); retry after 1 s."
      })
      expect(core.counts(DOC, key)).toBe(2)
      // Retry-After is honest: one second later a token exists
      await sleep(1000)
      expect((await get(gw, DOC, withKey(key, ip))).status).toBe(200)
    })

    it('applies an override to its key only', async () => {
      const statuses = []
      for (let i = 0; i < 6; i++) statuses.push(outcome((await get(gw, DOC, withKey(SERVER_KEY))).status))
      expect(statuses).toEqual([P, P, P, P, P, 429])
      const refused = await get(gw, DOC, withKey(SERVER_KEY))
      expect(refused.headers['ratelimit-policy']).toBe('"override-0";q=5;w=5')
      expect((json(refused) as { message: string }).message).toContain("'override-0'")
    })

    it('keeps each route its own buckets', async () => {
      const key = 'ser.prod_server_key_2'
      expect((await get(gw, DOC, withKey(key))).status).toBe(200)
      expect((await get(gw, DOC, withKey(key))).status).toBe(200)
      expect((await get(gw, DOC, withKey(key))).status).toBe(429)
      // same client, other route: untouched
      expect((await get(gw, FLAGS, withKey(key, '203.0.113.50'))).status).toBe(200)
    })

    it('[environmentKey, ip]: one bucket per instance, and the key-wide bucket above them', async () => {
      const key = KEY
      const s = async (ip: string) => (await get(gw, FLAGS, withKey(key, ip))).status
      // instance A: 2 per instance
      expect([await s('203.0.113.1'), await s('203.0.113.1'), await s('203.0.113.1')]).toEqual([200, 200, 429])
      const refusedA = await get(gw, FLAGS, withKey(key, '203.0.113.1'))
      expect(refusedA.headers.ratelimit).toBe('"flags.1";r=0;t=60')
      expect(refusedA.headers['retry-after']).toBe('60')
      expect(refusedA.headers['ratelimit-policy']).toBe('"flags.0";q=4;w=240, "flags.1";q=2;w=120')
      // instance B has its own 2; the refusals of A spent none of the key's 4
      expect([await s('203.0.113.2'), await s('203.0.113.2')]).toEqual([200, 200])
      // the key-wide bucket (4) is now empty for every instance
      const c = await get(gw, FLAGS, withKey(key, '203.0.113.3'))
      expect(c.status).toBe(429)
      expect(c.headers.ratelimit).toBe('"flags.0";r=0;t=60')
      expect((json(c) as { message: string }).message).toBe("Rate limit 'flags.0' exceeded (1/m, burst 4, per environmentKey); retry after 60 s.")
    })

    it('limits requests without a key by IP', async () => {
      const s = async (ip: string) => outcome((await get(gw, FLAGS, { 'x-forwarded-for': ip })).status)
      expect([await s('192.0.2.7'), await s('192.0.2.7'), await s('192.0.2.7')]).toEqual([P, P, 429])
      expect(await s('192.0.2.8')).toBe(P)
    })

    it('header:<name> limits by that header', async () => {
      const id = `client-${storeKind}`
      const s = async (h: Record<string, string>) => outcome((await get(gw, '/api/v1/identities/?identifier=x', { ...withKey(KEY), ...h })).status)
      expect(await s({ 'x-client-id': id })).toBe(P)
      expect(await s({ 'x-client-id': id })).toBe(429)
      expect(await s({ 'x-client-id': `${id}-other` })).toBe(P)
    })

    it('shadow limits never reject and add no headers, but are counted and logged', async () => {
      const ip = storeKind === 'memory' ? '192.0.2.100' : '192.0.2.101'
      const statuses = []
      let headers = 0
      for (let i = 0; i < 5; i++) {
        const r = await get(gw, '/api/v1/traits/', { ...withKey(KEY), 'x-forwarded-for': ip, 'x-request-id': `shadow-${storeKind}-${i}` })
        statuses.push(r.status)
        if (r.headers.ratelimit !== undefined || r.headers['ratelimit-policy'] !== undefined) headers++
      }
      expect(statuses.every((s) => s !== 429)).toBe(true)
      expect(headers).toBe(0)
      const metrics = (await raw(gw.adminUrl, '/metrics')).body.toString()
      expect(metrics).toMatch(/flaggate_ratelimit_decisions_total\{route="default",result="shadow_limited"\} 4/)
      expect(gw.logs.lines.filter((l) => l.msg === 'shadow rate limit exceeded (not enforced)' && l.limit === 'default').length).toBeGreaterThanOrEqual(4)
      // logged through request.log (made lazily, shared/logger.ts): each line names its request
      const shadowIds = gw.logs.lines.filter((l) => l.msg === 'shadow rate limit exceeded (not enforced)' && String(l.reqId).startsWith(`shadow-${storeKind}-`)).map((l) => l.reqId)
      expect(shadowIds).toEqual([1, 2, 3, 4].map((i) => `shadow-${storeKind}-${i}`))
    })

    it('counts decisions per route and result, and reports the store', async () => {
      const metrics = (await raw(gw.adminUrl, '/metrics')).body.toString()
      expect(metrics).toMatch(/flaggate_ratelimit_decisions_total\{route="environment-document",result="allowed"\} \d+/)
      expect(metrics).toMatch(/flaggate_ratelimit_decisions_total\{route="flags",result="limited"\} \d+/)
      expect(metrics).toMatch(/flaggate_store_fallback_total 0/)
      const status = json(await raw(gw.adminUrl, '/admin/status')) as { store: Record<string, unknown> }
      expect(status.store).toMatchObject(storeKind === 'memory'
        ? { kind: 'memory', healthy: true, mode: 'memory' }
        : { kind: 'redis', healthy: true, mode: 'redis', liveReplicas: 1 })
    })
  })
}
