/**
 * Replicas share the document work through Redis: Core is asked once per environment per
 * interval, not once per replica. Three gateway processes, the suite's Redis, the fake Core.
 */
import { randomUUID } from 'node:crypto'
import { join } from 'node:path'
import { afterAll, describe, expect, inject, it } from 'vitest'
import { signWebhook, startFakeCore, webhookBody, type FakeCore } from '../support/fake-flagsmith.js'
import { policyYaml, spawnGateway, type SpawnedGateway } from '../support/gateway.js'
import { json, raw } from '../support/http.js'
import { stateDir } from './support.js'
import { startTcpProxy } from '../chaos/support/tcp-proxy.js'

const SERVER = 'ser.dev_server_key'
const CLIENT = 'dev_client_key'
const TOKEN = 'a-very-long-admin-token'
const opened: Array<{ close?: () => Promise<void>; stop?: () => Promise<unknown> }> = []
afterAll(async () => { for (const o of opened.reverse()) await (o.close?.() ?? o.stop?.()) })

async function lastRefresh (g: SpawnedGateway): Promise<string | undefined> {
  const s = json(await raw(g.adminUrl, '/admin/status', { headers: { authorization: `Bearer ${TOKEN}` } })) as { localEvaluation: { environments: Array<{ lastRefresh: { result: string } | null }> } }
  return s.localEvaluation.environments[0]!.lastRefresh?.result
}

async function until (f: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 500; i++) { if (await f()) return; await new Promise((r) => setTimeout(r, 20)) }
  throw new Error('condition never met')
}

describe('local evaluation across replicas (Redis)', () => {
  it('one replica asks Core, the others adopt its document; all answer locally', async () => {
    const core: FakeCore = await startFakeCore()
    opened.push(core)
    const yaml = (dir: string): string => policyYaml({
      coreUrl: core.url,
      adminToken: TOKEN,
      // about sharing, not slow replies: a command timeout a busy machine cannot miss, or a
      // replica whose read or claim timed out would (rightly) ask Core itself
      redis: { url: inject('redisUrl'), keyPrefix: `test-${randomUUID()}:`, commandTimeout: '5s' },
      extra: `localEvaluation:\n  mode: always\n  refresh: 1h\n  stateFile: ${join(dir, 's.json')}\n  environments:\n    - serverKey: ${SERVER}\n`
    })
    const shared = yaml(stateDir())
    const replicas: SpawnedGateway[] = []
    for (let i = 0; i < 3; i++) {
      // each its own state file, the same Redis prefix
      const g = await spawnGateway(shared.replace(/stateFile: .*/, `stateFile: ${join(stateDir(), 's.json')}`))
      opened.push(g)
      replicas.push(g)
      await until(async () => (await lastRefresh(g)) !== undefined)
    }
    expect(await Promise.all(replicas.map(lastRefresh))).toEqual(['ok', 'shared', 'shared'])
    expect(core.counts('/api/v1/environment-document/')).toBe(1)
    for (const g of replicas) {
      const r = await raw(g.url, '/api/v1/flags/?feature=banner', { headers: { 'x-environment-key': CLIENT } })
      expect([r.status, r.headers['x-flaggate-source'], (json(r) as { feature_state_value: unknown }).feature_state_value]).toEqual([200, 'local', 'hello'])
    }
    expect(core.counts('/api/v1/flags/')).toBe(0)
  // three gateway processes start one after another: generous on a loaded machine
  }, 120_000)

  it('a replica still connecting to Redis at start waits for it and adopts the document', async () => {
    const core: FakeCore = await startFakeCore()
    opened.push(core)
    const proxy = await startTcpProxy(Number(new URL(inject('redisUrl')).port))
    opened.push(proxy)
    const prefix = randomUUID()
    const yaml = (redisUrl: string): string => policyYaml({
      coreUrl: core.url,
      adminToken: TOKEN,
      redis: { url: redisUrl, keyPrefix: `test-${prefix}:`, commandTimeout: '10s' },
      extra: `localEvaluation:\n  mode: always\n  refresh: 1h\n  stateFile: ${join(stateDir(), 's.json')}\n  environments:\n    - serverKey: ${SERVER}\n`
    })
    const a = await spawnGateway(yaml(inject('redisUrl')))
    opened.push(a)
    await until(async () => (await lastRefresh(a)) === 'ok')
    // b's Redis answers each reply 1.5 s late: connected and probed some 3 s after start, later
    // than any fixed short wait, yet Redis is there and holds a's document
    proxy.setDelay(1500)
    const b = await spawnGateway(yaml(proxy.url))
    opened.push(b)
    await until(async () => (await lastRefresh(b)) !== undefined)
    expect(await lastRefresh(b)).toBe('shared')
    expect(core.counts('/api/v1/environment-document/')).toBe(1)
  }, 120_000)

  it('a signed webhook on one replica refreshes the document on every replica at once (the fleet purge channel)', async () => {
    const core: FakeCore = await startFakeCore()
    opened.push(core)
    const yaml = (): string => policyYaml({
      coreUrl: core.url,
      adminToken: TOKEN,
      redis: { url: inject('redisUrl'), keyPrefix: `test-${randomUUID()}:` },
      extra: `localEvaluation:\n  mode: always\n  refresh: 1h\n  stateFile: ${join(stateDir(), 's.json')}\n  environments:\n    - serverKey: ${SERVER}\nwebhooks:\n  flagsmith: { path: /webhooks/flagsmith, secret: s3cret }\n`
    })
    const prefixed = yaml()
    const a = await spawnGateway(prefixed)
    opened.push(a)
    await until(async () => (await lastRefresh(a)) !== undefined)
    const b = await spawnGateway(prefixed.replace(/stateFile: .*/, `stateFile: ${join(stateDir(), 's.json')}`))
    opened.push(b)
    await until(async () => (await lastRefresh(b)) !== undefined)
    const banner = async (g: SpawnedGateway): Promise<unknown> =>
      (json(await raw(g.url, '/api/v1/flags/?feature=banner', { headers: { 'x-environment-key': CLIENT } })) as { feature_state_value: unknown }).feature_state_value
    expect([await banner(a), await banner(b)]).toEqual(['hello', 'hello'])

    core.envs[0]!.features[0]!.value = 'changed'
    core.touch(1)
    const body = webhookBody(1, 'banner')
    const hook = await raw(a.url, '/webhooks/flagsmith', { method: 'POST', body, headers: { 'content-type': 'application/json', 'x-flagsmith-signature': signWebhook('s3cret', body) } })
    expect(hook.status).toBe(200)
    // refresh: 1h, so only the webhook's purge (through Redis for b) can bring the change
    await until(async () => (await banner(b)) === 'changed')
    expect(await banner(a)).toBe('changed')
    expect(core.counts('/api/v1/flags/')).toBe(0)
  }, 120_000)
})
