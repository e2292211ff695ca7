/**
 * Three gateway processes (`node dist/cli.js serve`) sharing one Redis hold one key to its global
 * limit; with Redis SIGSTOPped mid-load they keep answering (no 5xx, no hang) on local fair
 * shares, and return to Redis after SIGCONT. The Redis server is this test's own, so stopping it
 * touches nobody else.
 */
import { randomUUID } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startPrivateRedis, type PrivateRedis } from '../support/redis-server.js'
import { startFakeCore, type FakeCore } from '../support/fake-flagsmith.js'
import { spawnGateway, type SpawnedGateway } from '../support/gateway.js'

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))
const RATE = 40
const BURST = 40
const KEY = 'dev_client_key'
const COMMAND_TIMEOUT_MS = 100

function policy (coreUrl: string, redisUrl: string, keyPrefix: string): string {
  return `server:
  listen: 127.0.0.1:0
  shutdownTimeout: 2s
admin:
  listen: 127.0.0.1:0
upstreams:
  core: { url: "${coreUrl}", timeout: 5s }
store:
  redis:
    url: ${redisUrl}
    keyPrefix: "${keyPrefix}"
    commandTimeout: ${COMMAND_TIMEOUT_MS}ms
routes:
  - name: flags
    match: { methods: [GET], path: /api/v1/flags/ }
    upstream: core
    limit: { by: environmentKey, rate: ${RATE}/s, burst: ${BURST} }
  - name: default
    match: { pathPrefix: / }
    upstream: core
`
}

interface Result { status: number; at: number; ms: number }

/** `loops` clients per gateway, each sending one request every ~`pauseMs`, until stopped. */
function load (gateways: SpawnedGateway[], loops: number, pauseMs: number) {
  const results: Result[] = []
  const failures: string[] = []
  let running = true
  const all = gateways.flatMap((gw) => Array.from({ length: loops }, async () => {
    while (running) {
      const t = performance.now()
      try {
        const r = await fetch(`${gw.url}/api/v1/flags/`, { headers: { 'x-environment-key': KEY }, signal: AbortSignal.timeout(5000) })
        await r.arrayBuffer()
        results.push({ status: r.status, at: t, ms: performance.now() - t })
      } catch (err) {
        failures.push(String(err))
      }
      await sleep(pauseMs)
    }
  }))
  return { results, failures, async stop () { running = false; await Promise.all(all) } }
}

async function status (gw: SpawnedGateway): Promise<{ mode?: string; liveReplicas?: number }> {
  const r = await fetch(`${gw.adminUrl}/admin/status`)
  return ((await r.json()) as { store: { mode?: string; liveReplicas?: number } }).store
}

async function fallbackCount (gw: SpawnedGateway): Promise<number> {
  const text = await (await fetch(`${gw.adminUrl}/metrics`)).text()
  const m = /^flaggate_store_fallback_total (\d+)/m.exec(text)
  return m === null ? 0 : Number(m[1])
}

describe('three gateway processes, one Redis', () => {
  let redis: PrivateRedis
  let core: FakeCore
  const gateways: SpawnedGateway[] = []

  beforeAll(async () => {
    redis = await startPrivateRedis()
    core = await startFakeCore()
    const yaml = policy(core.url, redis.url, `test-${randomUUID()}:`)
    gateways.push(...await Promise.all([spawnGateway(yaml), spawnGateway(yaml), spawnGateway(yaml)]))
    // every replica on Redis and seeing the other two through the heartbeats
    const deadline = Date.now() + 10_000
    for (;;) {
      const s = await Promise.all(gateways.map(status))
      if (s.every((x) => x.mode === 'redis' && x.liveReplicas === 3)) break
      if (Date.now() > deadline) throw new Error(`replicas not ready: ${JSON.stringify(s)}`)
      await sleep(100)
    }
  }, 30_000)

  afterAll(async () => {
    try { process.kill(redis.pid, 'SIGCONT') } catch {}
    await Promise.all(gateways.map((g) => g.stop()))
    await core.close()
    await redis.stop()
  })

  it('hold a key to its global limit within 10%, then survive a hung Redis without a 5xx', async () => {
    // ~300 requests/s offered against a 40/s limit, spread over the three replicas
    const run = load(gateways, 4, 40)
    await sleep(4000)
    const phase1End = performance.now()
    const p1 = run.results.filter((r) => r.at < phase1End)
    const first = Math.min(...p1.map((r) => r.at))
    const last = Math.max(...p1.map((r) => r.at))
    const allowed = p1.filter((r) => r.status === 200).length
    const expected = BURST + RATE * (last - first) / 1000
    const fallbacksPhase1 = (await Promise.all(gateways.map(fallbackCount))).reduce((a, b) => a + b, 0)

    // phase 2: Redis hangs
    process.kill(redis.pid, 'SIGSTOP')
    const stoppedAt = performance.now()
    await sleep(2000)
    const during = run.results.filter((r) => r.at >= stoppedAt + 2 * COMMAND_TIMEOUT_MS)
    const modesDuring = await Promise.all(gateways.map(status))
    process.kill(redis.pid, 'SIGCONT')
    const resumedAt = performance.now()
    let back = false
    while (performance.now() - resumedAt < 5000) {
      if ((await Promise.all(gateways.map(status))).every((s) => s.mode === 'redis')) { back = true; break }
      await sleep(50)
    }
    const recoveryMs = performance.now() - resumedAt
    await sleep(500)
    await run.stop()

    const statuses = new Map<number, number>()
    for (const r of run.results) statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1)
    const stopWindow = run.results.filter((r) => r.at >= stoppedAt && r.at < resumedAt)
    const worstDuringStop = Math.max(...stopWindow.map((r) => r.ms))
    const allowedDuring = during.filter((r) => r.status === 200).length
    const windowS = (resumedAt - (stoppedAt + 2 * COMMAND_TIMEOUT_MS)) / 1000
    const fallbacks = await Promise.all(gateways.map(fallbackCount))
    console.log(JSON.stringify({
      phase1: { requests: p1.length, allowed, expected: Number(expected.toFixed(1)), errorPct: Number((100 * (allowed - expected) / expected).toFixed(1)), fallbacks: fallbacksPhase1 },
      sigstop: { requests: stopWindow.length, worstMs: Math.round(worstDuringStop), allowedLocal: allowedDuring, fairShareBound: Math.round(BURST + RATE * windowS), modesDuring: modesDuring.map((m) => m.mode), recoveryMs: Math.round(recoveryMs), fallbacks },
      statuses: Object.fromEntries(statuses)
    }))

    expect(run.failures).toEqual([])
    expect([...statuses.keys()].every((s) => s === 200 || s === 429), `statuses ${JSON.stringify([...statuses])}`).toBe(true)
    expect(p1.length).toBeGreaterThan(3 * expected)
    expect(Math.abs(allowed - expected) / expected, `${allowed} allowed, ${expected.toFixed(1)} expected`).toBeLessThanOrEqual(0.10)

    expect(modesDuring.every((m) => m.mode === 'local-fallback')).toBe(true)
    expect(stopWindow.length).toBeGreaterThan(100)
    expect(worstDuringStop, 'no request hangs on a hung Redis').toBeLessThan(COMMAND_TIMEOUT_MS + 900)
    // local fair shares (rate and burst / 3 on each replica) still hold the fleet near the limit
    expect(allowedDuring).toBeGreaterThan(0.5 * RATE * windowS)
    expect(allowedDuring).toBeLessThanOrEqual(1.2 * (BURST + RATE * windowS))
    expect(fallbacks.every((n) => n > 0)).toBe(true)
    expect(back, 'every replica back on Redis after SIGCONT').toBe(true)
  }, 30_000)
})
