/**
 * Redis misbehaving under load, against gateway processes: slow (a delaying TCP proxy), restarted
 * empty, failing over behind Sentinel, and losing a Cluster master. In every case: no 5xx, no
 * request held by Redis longer than one commandTimeout (plus scheduling slack), and decisions are
 * back on Redis once it answers again. Every Redis here is this file's own.
 */
import { randomUUID } from 'node:crypto'
import { afterEach, describe, expect, it } from 'vitest'
import { startPrivateRedis } from '../support/redis-server.js'
import { startFakeCore, type FakeCore } from '../support/fake-flagsmith.js'
import { spawnGateway, type SpawnedGateway } from '../support/gateway.js'
import { startTcpProxy } from './support/tcp-proxy.js'
import { until } from './support/redis-topologies.js'

const KEY = 'dev_client_key'
const COMMAND_TIMEOUT_MS = 50
/** scheduling slack on a loaded 2-core box, on top of one command timeout */
const SLACK_MS = 250

const cleanups: Array<() => Promise<unknown>> = []
afterEach(async () => { for (const c of cleanups.splice(0).reverse()) await c().catch(() => {}) })

function policy (coreUrl: string, redisYaml: string): string {
  return `server:
  listen: 127.0.0.1:0
  shutdownTimeout: 2s
admin:
  listen: 127.0.0.1:0
upstreams:
  core: { url: "${coreUrl}", timeout: 5s }
store:
  redis:
${redisYaml}
    keyPrefix: "chaos-${randomUUID()}:"
    commandTimeout: ${COMMAND_TIMEOUT_MS}ms
routes:
  - name: flags
    match: { methods: [GET], path: /api/v1/flags/ }
    upstream: core
    limit: { by: environmentKey, rate: 200/s, burst: 400 }
  - name: default
    match: { pathPrefix: / }
    upstream: core
`
}

async function core (): Promise<FakeCore> {
  const c = await startFakeCore({ db: { queryLatencyMs: 0 } })
  cleanups.push(() => c.close())
  return c
}

async function gateway (yaml: string): Promise<SpawnedGateway> {
  const g = await spawnGateway(yaml)
  cleanups.push(() => g.stop('SIGKILL'))
  return g
}

/** Concurrent clients against the gateways until stopped; every status counted. */
function load (gateways: SpawnedGateway[], loops = 4) {
  const statuses = new Map<number, number>()
  const failures: string[] = []
  let running = true
  const all = gateways.flatMap((gw) => Array.from({ length: loops }, async () => {
    while (running) {
      try {
        const r = await fetch(`${gw.url}/api/v1/flags/`, { headers: { 'x-environment-key': KEY }, signal: AbortSignal.timeout(5000) })
        await r.arrayBuffer()
        statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1)
      } catch (err) { failures.push(String(err)) }
      await new Promise((resolve) => setTimeout(resolve, 5))
    }
  }))
  return {
    statuses,
    failures,
    total: () => [...statuses.values()].reduce((a, b) => a + b, 0),
    async stop () { running = false; await Promise.all(all) }
  }
}

async function storeMode (gw: SpawnedGateway): Promise<string | undefined> {
  const r = await fetch(`${gw.adminUrl}/admin/status`, { signal: AbortSignal.timeout(2000) })
  const body = await r.json() as { store?: { mode?: string } }
  return body.store?.mode
}

/** Time each request spent in the gateway outside the upstream, from the access log. */
function gatewayOwnMs (gw: SpawnedGateway): number[] {
  return gw.logs.filter((l) => l.msg === 'request' && typeof l.totalMs === 'number')
    .map((l) => (l.totalMs as number) - ((l.upstreamMs as number | undefined) ?? 0))
}

function expectNo5xx (statuses: Map<number, number>): void {
  const bad = [...statuses.entries()].filter(([s]) => s >= 500)
  expect(bad, JSON.stringify([...statuses.entries()])).toEqual([])
}

describe('chaos: Redis', () => {
  it('slow Redis (20–200 ms per reply, commandTimeout 50 ms): no 5xx, nobody held past one timeout', async () => {
    const redis = await startPrivateRedis()
    cleanups.push(() => redis.stop())
    const proxy = await startTcpProxy(redis.port)
    cleanups.push(() => proxy.close())
    const c = await core()
    const gws = [await gateway(policy(c.url, `    url: ${proxy.url}`)), await gateway(policy(c.url, `    url: ${proxy.url}`))]
    await until('both on Redis', async () => (await storeMode(gws[0]!)) === 'redis' && (await storeMode(gws[1]!)) === 'redis')

    const l = load(gws)
    await until('some load', () => l.total() > 100)
    proxy.setDelay(() => 20 + Math.random() * 180)
    const before = l.total()
    await until('load through the slow Redis', () => l.total() > before + 300, 30_000)
    proxy.setDelay(0)
    await until('back on Redis', async () => (await storeMode(gws[0]!)) === 'redis' && (await storeMode(gws[1]!)) === 'redis', 30_000)
    const after = l.total()
    await until('load after recovery', () => l.total() > after + 100)
    await l.stop()

    expect(l.failures).toEqual([])
    expectNo5xx(l.statuses)
    await until('access logs flushed', () => gws.every((g) => gatewayOwnMs(g).length > 100), 5000)
    const own = gws.flatMap(gatewayOwnMs).sort((a, b) => a - b)
    expect(own.at(-1)!, `slowest: ${own.slice(-10).map((x) => x.toFixed(0)).join(', ')} of ${own.length}`).toBeLessThan(COMMAND_TIMEOUT_MS + SLACK_MS)
  })

  it('Redis restarted empty: limits are enforced in Redis again, from a fresh bucket', async () => {
    const redis = await startPrivateRedis()
    cleanups.push(() => redis.stop())
    const c = await core()
    const yaml = policy(c.url, `    url: ${redis.url}`).replace('rate: 200/s, burst: 400', 'rate: 1/m, burst: 5')
    const gw = await gateway(yaml)
    await until('on Redis', async () => (await storeMode(gw)) === 'redis')
    const hit = async (): Promise<number> => (await fetch(`${gw.url}/api/v1/flags/`, { headers: { 'x-environment-key': KEY } })).status
    const first: number[] = []
    for (let i = 0; i < 7; i++) first.push(await hit())
    expect(first.filter((s) => s === 200)).toHaveLength(5)

    await redis.stop()
    const statusesDuringOutage: number[] = []
    for (let i = 0; i < 5; i++) statusesDuringOutage.push(await hit())
    expect(statusesDuringOutage.every((s) => s < 500)).toBe(true)

    const again = await startPrivateRedis(redis.port)
    cleanups.push(() => again.stop())
    await until('back on Redis', async () => (await storeMode(gw)) === 'redis', 30_000)
    // an empty Redis starts every bucket full: five more, then refused again, fleet-wide
    const second: number[] = []
    for (let i = 0; i < 7; i++) second.push(await hit())
    expect(second.filter((s) => s === 200)).toHaveLength(5)
    expect(second.slice(5)).toEqual([429, 429])
  })
})
