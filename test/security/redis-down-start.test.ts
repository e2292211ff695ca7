/**
 * Attack 12: a replica started while Redis is down enforced no runtime block until Redis
 * returned (200 for a blocked key). Two replicas (separate processes) share a private Redis; one
 * key is blocked on each, so replica A learns one itself and one from Redis. Then A stops, Redis
 * stops, and a new replica starts on A's policy (its state file): both keys get 403 at once.
 * Where the state file cannot be written, readiness says so and a block is still accepted
 * (Redis keeps it).
 */
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { startPrivateRedis, type PrivateRedis } from '../support/redis-server.js'
import { startFakeCore, type FakeCore } from '../support/fake-flagsmith.js'
import { policyYaml, spawnGateway, type SpawnedGateway } from '../support/gateway.js'
import { raw } from '../support/http.js'
import { until } from './support.js'
import { renderStatus } from '../../src/admin/status-text.js'

const PREFIX = 'sec12:'
const TOKEN = 'security-test-token-0123456789'
const KEY_A = 'ser.blocked-on-replica-a-000000000'
const KEY_C = 'ser.blocked-on-replica-c-000000000'
const auth = { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }

let redis: PrivateRedis | undefined
let core: FakeCore | undefined
const gateways: SpawnedGateway[] = []

afterAll(async () => {
  for (const g of gateways) await g.stop('SIGKILL')
  await core?.close()
  await redis?.stop()
})

function yamlFor (coreUrl: string, redisUrl: string, stateFile: string): string {
  return policyYaml({ coreUrl, adminToken: TOKEN, redis: { url: redisUrl, keyPrefix: PREFIX, commandTimeout: '200ms' }, extra: `blocking:\n  stateFile: ${JSON.stringify(stateFile)}\n` })
}

async function block (g: SpawnedGateway, key: string): Promise<void> {
  const res = await raw(g.adminUrl, '/admin/blocks', { method: 'POST', headers: auth, body: JSON.stringify({ key, reason: 'attack 12', ttl: '1h' }) })
  expect(res.status, res.body.toString()).toBe(201)
}

const flags = async (g: SpawnedGateway, key: string): Promise<number> => (await raw(g.url, '/api/v1/flags/', { headers: { 'x-environment-key': key } })).status

describe('attack 12: a replica started while Redis is down', () => {
  it('enforces the blocks it last knew, its own and those learned from Redis', async () => {
    redis = await startPrivateRedis()
    core = await startFakeCore()
    const dir = mkdtempSync(join(tmpdir(), 'flaggate-sec12-'))
    const fileA = join(dir, 'a', 'blocks.json')
    const yamlA = yamlFor(core.url, redis.url, fileA)
    const a = await spawnGateway(yamlA)
    const c = await spawnGateway(yamlFor(core.url, redis.url, join(dir, 'c', 'blocks.json')))
    gateways.push(a, c)
    await block(a, KEY_A)
    await block(c, KEY_C)
    // A learns C's block through Redis and keeps both in its state file
    const inFile = (): number => existsSync(fileA) ? (JSON.parse(readFileSync(fileA, 'utf8')) as { blocks: unknown[] }).blocks.length : 0
    await until(async () => inFile(), (n) => n === 2, 15_000)
    expect(await flags(a, KEY_A)).toBe(403)
    expect(await flags(a, KEY_C)).toBe(403)

    await a.stop()
    await c.stop()
    await redis.stop()

    const b = await spawnGateway(yamlA)
    gateways.push(b)
    expect(await flags(b, KEY_A)).toBe(403)
    expect(await flags(b, KEY_C)).toBe(403)
    expect(await flags(b, 'dev_client_key')).toBe(200)
  }, 120_000)

  it('says so in readiness where the state file cannot be written, and still accepts blocks', async () => {
    redis ??= await startPrivateRedis()
    core ??= await startFakeCore()
    // a directory that cannot be created: its parent is a file
    const dir = mkdtempSync(join(tmpdir(), 'flaggate-sec12-'))
    writeFileSync(join(dir, 'not-a-dir'), '')
    if (redis.process.exitCode !== null || redis.process.signalCode !== null) redis = await startPrivateRedis()
    const g = await spawnGateway(yamlFor(core.url, redis.url, join(dir, 'not-a-dir', 'blocks.json')))
    gateways.push(g)
    const ready = await raw(g.url, '/readyz')
    expect(ready.status).toBe(200)
    expect(ready.body.toString()).toContain('cannot be written')
    const status = JSON.parse((await raw(g.adminUrl, '/admin/status', { headers: auth })).body.toString()) as Record<string, unknown>
    expect(renderStatus(status)).toContain('STATE FILE NOT WRITABLE')
    await block(g, KEY_A)
    expect(await flags(g, KEY_A)).toBe(403)
  }, 60_000)
})
