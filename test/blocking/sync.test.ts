/**
 * Two in-process gateways on the suite's Redis (own key prefix): blocks travel both ways, a
 * replica that saw every message stays in step without reading the hash again, and one that
 * missed messages (its block hash edited behind its back) catches up at the periodic resync.
 */
import { randomUUID } from 'node:crypto'
import { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest'
import { startFakeCore, type FakeCore } from '../support/fake-flagsmith.js'
import { policyYaml, startTestGateway, type TestGateway } from '../support/gateway.js'
import { json, raw } from '../support/http.js'

let core: FakeCore
let a: TestGateway
let b: TestGateway
const keyPrefix = `test-${randomUUID()}:`

async function until (check: () => Promise<boolean>, timeoutMs: number): Promise<number> {
  const start = performance.now()
  while (performance.now() - start < timeoutMs) {
    if (await check()) return performance.now() - start
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  return Infinity
}
const status = async (g: TestGateway, key: string): Promise<number> => (await raw(g.url, '/api/v1/flags/', { headers: { 'x-environment-key': key } })).status
const post = async (g: TestGateway, body: unknown) => await raw(g.adminUrl, '/admin/blocks', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })

beforeAll(async () => {
  core = await startFakeCore()
  const yaml = policyYaml({ coreUrl: core.url, redis: { url: inject('redisUrl'), keyPrefix, commandTimeout: '500ms' } })
  a = await startTestGateway(yaml)
  b = await startTestGateway(yaml)
}, 60_000)
afterAll(async () => { await a?.close(); await b?.close(); await core?.close() })

describe('block sync through Redis (in process)', () => {
  it('blocks and unblocks travel both ways, without full reloads while no message is lost', async () => {
    const one = json(await post(a, { key: 'dev_client_key', reason: 'from a' })) as { id: string }
    expect(await until(async () => await status(b, 'dev_client_key') === 403, 5000)).toBeLessThan(Infinity)
    const two = json(await post(b, { key: 'prod_client_key', reason: 'from b' })) as { id: string }
    expect(await until(async () => await status(a, 'prod_client_key') === 403, 5000)).toBeLessThan(Infinity)
    expect((await raw(b.adminUrl, `/admin/blocks/${one.id}`, { method: 'DELETE' })).status).toBe(204)
    expect(await until(async () => await status(a, 'dev_client_key') === 200, 5000)).toBeLessThan(Infinity)
    expect((await raw(a.adminUrl, `/admin/blocks/${two.id}`, { method: 'DELETE' })).status).toBe(204)
    expect(await until(async () => await status(b, 'prod_client_key') === 200, 5000)).toBeLessThan(Infinity)
    // every change came with its version, so neither replica read the hash again after its first
    // load (one more is tolerated: a periodic resync may read the counter in the milliseconds
    // between the other replica's write and its message; re-reading after every change makes ≥ 3)
    for (const g of [a, b]) {
      const s = json(await raw(g.adminUrl, '/admin/status')) as { blocking: { store: { kind: string; fullLoads: number } } }
      expect(s.blocking.store.kind).toBe('redis')
      expect(s.blocking.store.fullLoads).toBeGreaterThanOrEqual(1)
      expect(s.blocking.store.fullLoads).toBeLessThanOrEqual(2)
    }
  })

  it('a change a replica never heard of is picked up by the periodic resync', async () => {
    const r = new Redis(inject('redisUrl'))
    try {
      // written behind both replicas' backs, as a lost message would leave things
      const block = { id: 'r-behindback', keyDigest: undefined as string | undefined, ip: '127.0.0.1', reason: 'lost message', source: 'runtime', createdAt: Date.now(), actor: 'test' }
      delete block.keyDigest
      await r.hset(`${keyPrefix}{blocks}`, block.id, JSON.stringify(block))
      await r.incr(`${keyPrefix}{blocks}:version`)
      // resync every 10 s: well within 15 s, on both
      expect(await until(async () => await status(a, 'ser.dev_server_key') === 403 && await status(b, 'ser.dev_server_key') === 403, 15_000)).toBeLessThan(Infinity)
      await r.hdel(`${keyPrefix}{blocks}`, block.id)
      await r.incr(`${keyPrefix}{blocks}:version`)
      expect(await until(async () => await status(a, 'ser.dev_server_key') === 200 && await status(b, 'ser.dev_server_key') === 200, 15_000)).toBeLessThan(Infinity)
    } finally { r.disconnect() }
  }, 60_000)
})
