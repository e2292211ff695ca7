/**
 * Two gateway processes (`node dist/cli.js serve`) sharing one Redis: a block made on one
 * refuses on the other within one second, an unblock lifts it within one second, automatic
 * blocks and expiries travel too, a restart of the whole fleet keeps the blocks, and while Redis
 * hangs the known blocks keep working and a new one is written when it answers again. The Redis
 * server is this file's own (it gets SIGSTOPped), so nobody else is touched.
 */
import { randomUUID } from 'node:crypto'
import { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startPrivateRedis, type PrivateRedis } from '../support/redis-server.js'
import { startFakeCore, type FakeCore } from '../support/fake-flagsmith.js'
import { spawnGateway, type SpawnedGateway } from '../support/gateway.js'

const sleep = async (ms: number): Promise<void> => await new Promise((resolve) => setTimeout(resolve, ms))
const KEY = 'dev_client_key'

/**
 * commandTimeout 1 s: these tests are about blocks travelling through Redis, not about slow
 * replies; a busy machine can outlast 100 ms, and a limit or rejection count decided on local
 * state then (rightly) differs from the fleet's. A hung Redis is still noticed within a second.
 */
function policy (coreUrl: string, redisUrl: string, keyPrefix: string): string {
  return `server:
  listen: 127.0.0.1:0
  shutdownTimeout: 2s
  trustedProxies: [127.0.0.1]
admin:
  listen: 127.0.0.1:0
upstreams:
  core: { url: "${coreUrl}", timeout: 5s }
store:
  redis:
    url: ${redisUrl}
    keyPrefix: "${keyPrefix}"
    commandTimeout: 1s
routes:
  - name: flags
    match: { methods: [GET], path: /api/v1/flags/ }
    upstream: core
    limit: { by: [environmentKey, ip], rate: 1/m, burst: 1 }
  - name: identities
    match: { methods: [GET, POST], path: /api/v1/identities/ }
    upstream: core
  - name: default
    match: { pathPrefix: / }
    upstream: core
abuse:
  rejections: 2 per 5s
  blockFor: 10m
`
}

async function get (gw: SpawnedGateway, path: string, key: string, ip = '192.0.2.1'): Promise<number> {
  const r = await fetch(`${gw.url}${path}`, { headers: { 'x-environment-key': key, 'x-forwarded-for': ip }, signal: AbortSignal.timeout(5000) })
  await r.arrayBuffer()
  return r.status
}

async function admin (gw: SpawnedGateway, method: string, path: string, body?: unknown): Promise<{ status: number; json: unknown }> {
  const r = await fetch(`${gw.adminUrl}${path}`, { method, headers: body === undefined ? {} : { 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body), signal: AbortSignal.timeout(5000) })
  const text = await r.text()
  return { status: r.status, json: text === '' ? undefined : JSON.parse(text) }
}

/** Polls `check` every 20 ms; resolves with the ms it took, or Infinity after `timeoutMs`. */
async function within (check: () => Promise<boolean>, timeoutMs: number): Promise<number> {
  const start = performance.now()
  while (performance.now() - start < timeoutMs) {
    if (await check()) return performance.now() - start
    await sleep(20)
  }
  return Infinity
}

async function storeMode (gw: SpawnedGateway): Promise<string | undefined> {
  return ((await admin(gw, 'GET', '/admin/status')).json as { store: { mode?: string } }).store.mode
}

describe('two gateway processes, one Redis', () => {
  let redis: PrivateRedis
  let core: FakeCore
  let yaml: string
  let keyPrefix: string
  let a: SpawnedGateway
  let b: SpawnedGateway

  beforeAll(async () => {
    redis = await startPrivateRedis()
    core = await startFakeCore()
    keyPrefix = `test-${randomUUID()}:`
    yaml = policy(core.url, redis.url, keyPrefix)
    ;[a, b] = await Promise.all([spawnGateway(yaml), spawnGateway(yaml)])
    for (const gw of [a, b]) expect(await within(async () => await storeMode(gw) === 'redis', 10_000)).toBeLessThan(Infinity)
  }, 90_000)

  afterAll(async () => {
    try { process.kill(redis.pid, 'SIGCONT') } catch {}
    await Promise.all([a?.stop(), b?.stop()])
    await core?.close()
    await redis?.stop()
  })

  it('a block made on one replica refuses on the other within one second; an unblock lifts it within one second', async () => {
    expect(await get(b, '/api/v1/identities/?identifier=x', KEY)).toBe(200)
    const created = await admin(a, 'POST', '/admin/blocks', { key: KEY, reason: 'runaway poller' })
    expect(created.status).toBe(201)
    const id = (created.json as { id: string }).id
    const blockedIn = await within(async () => await get(b, '/api/v1/identities/?identifier=x', KEY) === 403, 5000)
    expect(blockedIn).toBeLessThan(1000)
    expect(((await admin(b, 'GET', '/admin/blocks')).json as Array<{ id: string }>).map((x) => x.id)).toContain(id)

    expect((await admin(a, 'DELETE', `/admin/blocks/${id}`)).status).toBe(204)
    const liftedIn = await within(async () => await get(b, '/api/v1/identities/?identifier=x', KEY) === 200, 5000)
    expect(liftedIn).toBeLessThan(1000)
    // lifted on B too: deleting it there is a 404
    expect((await admin(b, 'DELETE', `/admin/blocks/${id}`)).status).toBe(404)
  })

  it('Redis holds digests, never the key', async () => {
    await admin(a, 'POST', '/admin/blocks', { key: 'prod_client_key', ttl: '2s', reason: 'look in redis' })
    const r = new Redis(redis.url)
    try {
      const keys = await r.keys(`${keyPrefix}*`)
      expect(keys).toContain(`${keyPrefix}{blocks}`)
      const values = await r.hvals(`${keyPrefix}{blocks}`)
      expect(values.length).toBeGreaterThan(0)
      expect(JSON.stringify([keys, values])).not.toContain('prod_client_key')
    } finally { r.disconnect() }
  })

  it('a ttl expires on both replicas and leaves Redis', async () => {
    // long enough that a busy machine sees it on b before it expires
    const created = await admin(a, 'POST', '/admin/blocks', { ip: '192.0.2.33', ttl: '5s', reason: 'short' })
    const id = (created.json as { id: string }).id
    expect(await within(async () => await get(b, '/api/v1/identities/?identifier=x', KEY, '192.0.2.33') === 403, 5000)).toBeLessThan(Infinity)
    expect(await within(async () => await get(b, '/api/v1/identities/?identifier=x', KEY, '192.0.2.33') === 200, 15_000)).toBeLessThan(Infinity)
    expect(await within(async () => await get(a, '/api/v1/identities/?identifier=x', KEY, '192.0.2.33') === 200, 15_000)).toBeLessThan(Infinity)
    const r = new Redis(redis.url)
    try {
      expect(await within(async () => await r.hexists(`${keyPrefix}{blocks}`, id) === 0, 5000)).toBeLessThan(Infinity)
    } finally { r.disconnect() }
  })

  it('rejections on both replicas add up to an automatic block, which both enforce', async () => {
    const ip = '192.0.2.44'
    // burst 1 per (key, ip): one 200, then 429s; 2 rejections are tolerated, the third blocks
    expect(await get(a, '/api/v1/flags/', KEY, ip)).toBe(200)
    expect(await get(a, '/api/v1/flags/', KEY, ip)).toBe(429)
    expect(await get(b, '/api/v1/flags/', KEY, ip)).toBe(429)
    expect(await get(a, '/api/v1/flags/', KEY, ip)).toBe(429)
    // whichever replica counted the third rejection made the block; the other learns it from Redis
    expect(await within(async () => await get(b, '/api/v1/identities/?identifier=x', KEY, ip) === 403, 3000)).toBeLessThan(Infinity)
    expect(await within(async () => await get(a, '/api/v1/identities/?identifier=x', KEY, ip) === 403, 3000)).toBeLessThan(Infinity)
    expect(await get(a, '/api/v1/identities/?identifier=x', KEY, '192.0.2.45')).toBe(200)
    const auto = ((await admin(b, 'GET', '/admin/blocks')).json as Array<Record<string, unknown>>).filter((x) => x.source === 'abuse')
    expect(auto).toHaveLength(1)
    expect(auto[0]).toMatchObject({ ip, key: expect.stringMatching(/^dev_…/), actor: 'abuse' })
  })

  it('while Redis hangs, known blocks keep working and a new one is written when it answers again', async () => {
    const known = await admin(a, 'POST', '/admin/blocks', { key: 'prod_client_key', reason: 'known before the outage' })
    expect(known.status).toBe(201)
    expect(await within(async () => await get(b, '/api/v1/identities/?identifier=x', 'prod_client_key') === 403, 2000)).toBeLessThan(Infinity)
    // on a loaded machine the write's reply can outlast commandTimeout: it is then queued and
    // written again, and would be counted with the outage's own below; wait until it is settled
    const pending = async (): Promise<number> => ((await admin(a, 'GET', '/admin/status')).json as { blocking: { store: { pendingWrites: number } } }).blocking.store.pendingWrites
    expect(await within(async () => await pending() === 0, 10_000)).toBeLessThan(Infinity)

    process.kill(redis.pid, 'SIGSTOP')
    try {
      expect(await within(async () => await storeMode(a) === 'local-fallback' && await storeMode(b) === 'local-fallback', 10_000)).toBeLessThan(Infinity)
      expect(await get(a, '/api/v1/identities/?identifier=x', 'prod_client_key')).toBe(403)
      expect(await get(b, '/api/v1/identities/?identifier=x', 'prod_client_key')).toBe(403)
      const made = await admin(a, 'POST', '/admin/blocks', { key: 'ser.prod_server_key', reason: 'made during the outage' })
      expect(made.status).toBe(201)
      expect(await get(a, '/api/v1/identities/?identifier=x', 'ser.prod_server_key')).toBe(403)
      expect(await pending()).toBe(1)
    } finally {
      process.kill(redis.pid, 'SIGCONT')
    }
    expect(await within(async () => await get(b, '/api/v1/identities/?identifier=x', 'ser.prod_server_key') === 403, 10_000)).toBeLessThan(Infinity)
    expect(await within(async () => await pending() === 0, 10_000)).toBeLessThan(Infinity)
  }, 90_000)

  it('a restart of the whole fleet keeps runtime and automatic blocks', async () => {
    // blocks that cannot expire while the fleet restarts (a short automatic one may, and should go)
    const lasting = (xs: Array<{ id: string; expiresAt?: string }>): string[] =>
      xs.filter((x) => x.expiresAt === undefined || Date.parse(x.expiresAt) > Date.now() + 60_000).map((x) => x.id).sort()
    const before = lasting((await admin(a, 'GET', '/admin/blocks')).json as Array<{ id: string; expiresAt?: string }>)
    expect(before.length).toBeGreaterThanOrEqual(2)
    await Promise.all([a.stop(), b.stop()])
    a = await spawnGateway(yaml)
    b = await spawnGateway(yaml)
    for (const gw of [a, b]) {
      const after = ((await admin(gw, 'GET', '/admin/blocks')).json as Array<{ id: string }>).map((x) => x.id)
      expect(after).toEqual(expect.arrayContaining(before))
    }
    expect(await get(b, '/api/v1/identities/?identifier=x', 'prod_client_key')).toBe(403)
    expect(await get(a, '/api/v1/identities/?identifier=x', 'ser.prod_server_key')).toBe(403)
  }, 90_000)
})
