/**
 * Regression (found by the soak, issue 13): Redis restarted empty while a block made during the
 * outage was queued. The replica wrote the queued block first, which started the version counter
 * again at 1, so it no longer saw the counter as gone; it then read the (nearly empty) hash and
 * dropped every other runtime block it held, and the other replicas followed. An operator's block
 * vanished, and lifting it answered 404.
 *
 * One in-process gateway on a private Redis that this file kills and restarts on the same port.
 */
import { randomUUID } from 'node:crypto'
import { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startPrivateRedis, type PrivateRedis } from '../support/redis-server.js'
import { startFakeCore, type FakeCore } from '../support/fake-flagsmith.js'
import { policyYaml, startTestGateway, type TestGateway } from '../support/gateway.js'
import { json, raw } from '../support/http.js'

let redis: PrivateRedis
let core: FakeCore
let gw: TestGateway
const keyPrefix = `test-${randomUUID()}:`

interface SyncStatus { pendingWrites: number; lastSyncAt?: string }

async function until (what: string, check: () => Promise<boolean>, timeoutMs = 8000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (await check().catch(() => false)) return
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  throw new Error(`timed out waiting for: ${what}`)
}
const sync = async (): Promise<SyncStatus> => (json(await raw(gw.adminUrl, '/admin/status')) as { blocking: { store: SyncStatus } }).blocking.store
const blockIds = async (): Promise<string[]> => (json(await raw(gw.adminUrl, '/admin/blocks')) as Array<{ id: string }>).map((b) => b.id).sort()
const block = async (ip: string, reason: string): Promise<string> => {
  const r = await raw(gw.adminUrl, '/admin/blocks', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ip, reason }) })
  expect(r.status).toBe(201)
  return (json(r) as { id: string }).id
}

beforeAll(async () => {
  redis = await startPrivateRedis()
  core = await startFakeCore()
  gw = await startTestGateway(policyYaml({ coreUrl: core.url, redis: { url: redis.url, keyPrefix, commandTimeout: '100ms' } }))
}, 30_000)
afterAll(async () => { await gw?.close(); await core?.close(); await redis?.stop() })

describe('blocks when Redis restarts empty', () => {
  it('a block queued during the outage does not make the replica drop the blocks it already held', async () => {
    // a few changes first, so the counter this replica holds is well above 1
    const kept = await block('198.51.100.1', 'kept through the restart')
    const lifted = await block('198.51.100.2', 'lifted before the restart')
    expect((await raw(gw.adminUrl, `/admin/blocks/${lifted}`, { method: 'DELETE' })).status).toBe(204)
    await until('written to Redis', async () => (await sync()).pendingWrites === 0)

    await redis.stop()
    const queued = await block('198.51.100.3', 'made while Redis is down')
    await until('queued', async () => (await sync()).pendingWrites > 0)
    const restartedAt = Date.now()
    redis = await startPrivateRedis(redis.port)

    // the queued block is written, and a whole sync pass has run since Redis came back
    await until('synced with the new Redis', async () => {
      const s = await sync()
      return s.pendingWrites === 0 && s.lastSyncAt !== undefined && Date.parse(s.lastSyncAt) > restartedAt
    })
    expect(await blockIds()).toEqual([kept, queued].sort())
    // and Redis holds both again, so the other replicas (and a restart of this one) keep them too
    const r = new Redis(redis.url)
    try {
      expect(Object.keys(await r.hgetall(`${keyPrefix}{blocks}`)).sort()).toEqual([kept, queued].sort())
    } finally { r.disconnect() }
    expect((await raw(gw.adminUrl, `/admin/blocks/${kept}`, { method: 'DELETE' })).status).toBe(204)
  }, 20_000)
})
