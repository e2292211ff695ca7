/**
 * SIGTERM: stop accepting, /readyz 503 on the admin listener, finish what is in flight, exit 0.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startFakeCore, type FakeCore } from '../support/fake-flagsmith.js'
import { policyYaml, spawnGateway } from '../support/gateway.js'
import { raw } from '../support/http.js'

let core: FakeCore
beforeAll(async () => { core = await startFakeCore() })
afterAll(async () => { await core?.close() })

describe('graceful shutdown', () => {
  it('drains in-flight requests, answers readyz 503 meanwhile, and exits 0', async () => {
    const g = await spawnGateway(policyYaml({ coreUrl: core.url }))
    core.db.queryLatencyMs = 150 // the env doc is 11 queries: ~1.6 s in flight
    const inflight = Array.from({ length: 5 }, () => raw(g.url, '/api/v1/environment-document/', { headers: { 'x-environment-key': 'ser.dev_server_key' } }))
    await new Promise((r) => setTimeout(r, 300))
    const exit = g.stop('SIGTERM')
    await new Promise((r) => setTimeout(r, 200))
    const ready = await raw(g.adminUrl, '/readyz')
    expect(ready.status).toBe(503)
    await expect(raw(g.url, '/api/v1/flags/', { headers: { 'x-environment-key': 'dev_client_key' }, timeoutMs: 2000 })).rejects.toThrow()
    const results = await Promise.all(inflight)
    expect(results.map((r) => r.status)).toEqual([200, 200, 200, 200, 200])
    expect(await exit).toBe(0)
    core.db.queryLatencyMs = 0
  })

  it('gives up on requests still running after server.shutdownTimeout, and still exits 0', async () => {
    const g = await spawnGateway(policyYaml({ coreUrl: core.url, shutdownTimeout: '500ms', coreTimeout: '30s' }))
    core.db.hang = true
    try {
      const hanging = raw(g.url, '/api/v1/flags/', { headers: { 'x-environment-key': 'dev_client_key' } }).catch((e: Error) => e)
      await new Promise((r) => setTimeout(r, 200))
      const started = Date.now()
      expect(await g.stop('SIGTERM')).toBe(0)
      expect(Date.now() - started).toBeLessThan(3000)
      await hanging
    } finally { core.db.hang = false }
  })
})
