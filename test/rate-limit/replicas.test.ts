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
import { scrapeMetrics } from '../support/metrics.js'

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))
const RATE = 20
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

interface Result { status: number; at: number; ms: number; gw: number }

/**
 * How many of `arrivals` (start times, ms) a perfect token bucket of `rate`/s and `burst` would
 * allow, starting with `start` tokens. The limit is judged against the requests actually sent, so a
 * machine too busy to offer much load changes the expectation, not the verdict.
 */
function idealAllowed (arrivals: number[], rate: number, burst: number, start = burst): number {
  let tokens = start
  let prev = arrivals[0] ?? 0
  let allowed = 0
  for (const t of [...arrivals].sort((a, b) => a - b)) {
    tokens = Math.min(burst, tokens + rate * (t - prev) / 1000)
    prev = t
    if (tokens >= 1) { tokens -= 1; allowed++ }
  }
  return allowed
}

/** Polls `cond` every 50 ms until it holds or `timeoutMs` passes; says which. */
async function waitFor (cond: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = performance.now() + timeoutMs
  while (!cond()) {
    if (performance.now() > deadline) return false
    await sleep(50)
  }
  return true
}

/** `loops` clients per gateway, each sending one request every ~`pauseMs`, until stopped. */
function load (gateways: SpawnedGateway[], loops: number, pauseMs: number) {
  const results: Result[] = []
  const failures: string[] = []
  let running = true
  const all = gateways.flatMap((gw, gwIndex) => Array.from({ length: loops }, async () => {
    while (running) {
      const t = performance.now()
      try {
        const r = await fetch(`${gw.url}/api/v1/flags/`, { headers: { 'x-environment-key': KEY }, signal: AbortSignal.timeout(5000) })
        await r.arrayBuffer()
        results.push({ status: r.status, at: t, ms: performance.now() - t, gw: gwIndex })
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
  return (await scrapeMetrics(gw.adminUrl)).value('flaggate_store_fallback_total')
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
  }, 90_000)

  afterAll(async () => {
    try { process.kill(redis.pid, 'SIGCONT') } catch {}
    await Promise.all(gateways.map((g) => g.stop()))
    await core.close()
    await redis.stop()
  })

  it('hold a key to its global limit within 10%, then survive a hung Redis without a 5xx', async () => {
    // ~300 requests/s offered on an idle machine against a 20/s limit, spread over the three replicas
    const run = load(gateways, 4, 40)
    // phase 1 lasts at least 4 s and until the offered load has been well over the limit: a perfect
    // bucket would have refused a burst's worth and a quarter of what it allowed, so that a fleet
    // not limiting at all (or each replica on its own) would miss the 10% below (a busy machine,
    // offering less, takes longer)
    const started = performance.now()
    const overLimit = (): boolean => {
      const sent = run.results.map((r) => r.at)
      const ideal = idealAllowed(sent, RATE, BURST)
      return sent.length - ideal >= Math.max(BURST, 0.25 * ideal)
    }
    const offeredEnough = await waitFor(() => performance.now() - started >= 4000 && overLimit(), 20_000)
    const phase1End = performance.now()
    const p1 = run.results.filter((r) => r.at < phase1End)
    const allowed = p1.filter((r) => r.status === 200).length
    const expected = idealAllowed(p1.map((r) => r.at), RATE, BURST)
    const fallbacksPhase1 = (await Promise.all(gateways.map(fallbackCount))).reduce((a, b) => a + b, 0)

    // phase 2: Redis hangs
    process.kill(redis.pid, 'SIGSTOP')
    const stoppedAt = performance.now()
    // Redis stays hung at least 2 s and until 100 requests started in the hang have been answered:
    // answers that keep coming are the behaviour; if the gateways hung, this would time out
    const answeredInHang = (): number => run.results.filter((r) => r.at >= stoppedAt).length
    const answeredThroughHang = await waitFor(() => performance.now() - stoppedAt >= 2000 && answeredInHang() > 100, 20_000)
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
      phase1: { requests: p1.length, allowed, expected, errorPct: Number((100 * (allowed - expected) / expected).toFixed(1)), fallbacks: fallbacksPhase1 },
      sigstop: { requests: stopWindow.length, worstMs: Math.round(worstDuringStop), allowedLocal: allowedDuring, fairShareBound: Math.round(BURST + RATE * windowS), modesDuring: modesDuring.map((m) => m.mode), recoveryMs: Math.round(recoveryMs), fallbacks },
      statuses: Object.fromEntries(statuses)
    }))

    expect(run.failures).toEqual([])
    expect([...statuses.keys()].every((s) => s === 200 || s === 429), `statuses ${JSON.stringify([...statuses])}`).toBe(true)
    expect(offeredEnough, `offered load over the limit: ${p1.length} sent, a perfect bucket allows ${expected}`).toBe(true)
    expect(p1.length - expected).toBeGreaterThanOrEqual(Math.max(BURST, 0.25 * expected))
    expect(Math.abs(allowed - expected) / expected, `${allowed} allowed, ${expected} by a perfect bucket over the same requests`).toBeLessThanOrEqual(0.10)

    expect(modesDuring.every((m) => m.mode === 'local-fallback')).toBe(true)
    expect(answeredThroughHang, `${answeredInHang()} answered during the hang`).toBe(true)
    expect(stopWindow.length).toBeGreaterThan(100)
    expect(worstDuringStop, 'no request hangs on a hung Redis').toBeLessThan(COMMAND_TIMEOUT_MS + 900)
    // local fair shares (rate and burst / 3 on each replica) still hold the fleet near the limit
    // at least half what per-replica buckets of a third of the rate, starting empty, allow of what
    // each replica was actually sent
    const localFloor = gateways.reduce((sum, _g, i) => sum + idealAllowed(during.filter((r) => r.gw === i).map((r) => r.at), RATE / 3, BURST / 3, 0), 0)
    expect(allowedDuring, `local fair shares allow ${localFloor} of what was sent`).toBeGreaterThanOrEqual(0.5 * localFloor)
    expect(localFloor).toBeGreaterThan(0)
    expect(allowedDuring).toBeLessThanOrEqual(1.2 * (BURST + RATE * windowS))
    expect(fallbacks.every((n) => n > 0)).toBe(true)
    expect(back, 'every replica back on Redis after SIGCONT').toBe(true)
  }, 90_000)
})
