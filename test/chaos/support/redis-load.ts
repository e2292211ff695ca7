/**
 * What the Redis chaos tests and the Redis-topology scenario share: a gateway policy on a given
 * Redis, gateway processes and fake Cores cleaned up after each test, a load loop and its checks.
 */
import { randomUUID } from 'node:crypto'
import { afterEach, expect } from 'vitest'
import { startFakeCore, type FakeCore } from '../../support/fake-flagsmith.js'
import { spawnGateway, type SpawnedGateway } from '../../support/gateway.js'

export const KEY = 'dev_client_key'
export const COMMAND_TIMEOUT_MS = 50
/** scheduling slack on a loaded 2-core box, on top of one command timeout */
export const SLACK_MS = 250

export const cleanups: Array<() => Promise<unknown>> = []
afterEach(async () => { for (const c of cleanups.splice(0).reverse()) await c().catch(() => {}) })

export function policy (coreUrl: string, redisYaml: string): string {
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

export async function core (): Promise<FakeCore> {
  const c = await startFakeCore({ db: { queryLatencyMs: 0 } })
  cleanups.push(() => c.close())
  return c
}

export async function gateway (yaml: string): Promise<SpawnedGateway> {
  const g = await spawnGateway(yaml)
  cleanups.push(() => g.stop('SIGKILL'))
  return g
}

/** Concurrent clients against the gateways until stopped; every status counted. */
export function load (gateways: SpawnedGateway[], loops = 4) {
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

export async function storeMode (gw: SpawnedGateway): Promise<string | undefined> {
  const r = await fetch(`${gw.adminUrl}/admin/status`, { signal: AbortSignal.timeout(2000) })
  const body = await r.json() as { store?: { mode?: string } }
  return body.store?.mode
}

/** Time each request spent in the gateway outside the upstream, from the access log. */
export function gatewayOwnMs (gw: SpawnedGateway): number[] {
  return gw.logs.filter((l) => l.msg === 'request' && typeof l.totalMs === 'number')
    .map((l) => (l.totalMs as number) - ((l.upstreamMs as number | undefined) ?? 0))
}

export function expectNo5xx (statuses: Map<number, number>): void {
  const bad = [...statuses.entries()].filter(([s]) => s >= 500)
  expect(bad, JSON.stringify([...statuses.entries()])).toEqual([])
}

