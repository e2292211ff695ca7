/**
 * The breaker and load shedding end to end: a real gateway in front of the fake Core, whose
 * database latency is raised and lowered while steady load runs. Assertions are on states and
 * counts (what Core received, at most how many at once, what each client got), never on speed:
 * the machine is shared and slow. Latencies are printed for the record.
 */
import { describe, expect, it, onTestFinished } from 'vitest'
import { startFakeCore, type FakeCore } from '../support/fake-flagsmith.js'
import { policyYaml, startTestGateway, type TestGateway } from '../support/gateway.js'
import { raw } from '../support/http.js'
import { scrapeMetrics } from '../support/metrics.js'
import { DEV_KEY, ENV_DOC, eventually, sleep } from '../cache/support.js'

const FLAGS = '/api/v1/flags/'
const CLIENT_KEY = 'dev_client_key'

interface Status { state: string; reason: string | null; p95Ms: number | null; errorRate: number; inFlight: number; limit: number | null; requests: number }

async function breakerStatus (gw: TestGateway): Promise<Status> {
  const r = await raw(gw.adminUrl, '/admin/status')
  return (JSON.parse(r.body.toString()) as { breakers: Record<string, Status> }).breakers.core!
}

async function metricsText (gw: TestGateway): Promise<string> {
  return (await scrapeMetrics(gw.adminUrl)).text
}

function routes (opts: { flagsLimit?: string; cache?: string } = {}): string {
  return `  - name: environment-document
    match: { methods: [GET], path: ${ENV_DOC} }
    upstream: core
    cache: ${opts.cache ?? '{ ttl: 500ms, staleWhileRevalidate: 1m, staleIfError: 10m }'}
  - name: flags
    match: { methods: [GET], path: ${FLAGS} }
    upstream: core
${opts.flagsLimit === undefined ? '' : `    limit: ${opts.flagsLimit}\n`}  - name: default
    match: { pathPrefix: / }
    upstream: core`
}

async function setup (breaker: string, opts: { db?: Partial<FakeCore['db']>; flagsLimit?: string; cache?: string; coreTimeout?: string } = {}): Promise<{ core: FakeCore; gw: TestGateway }> {
  const core = await startFakeCore({ db: { poolSize: 4, queryLatencyMs: 1, ...opts.db } })
  onTestFinished(core.close)
  const gw = await startTestGateway(policyYaml({
    coreUrl: core.url,
    coreTimeout: opts.coreTimeout ?? '10s',
    // X-Forwarded-For from loopback is believed: each load loop below is its own client address
    // (a trip needs slow or failed requests from 3 distinct clients)
    server: '  trustedProxies: [127.0.0.1/32]',
    routes: routes(opts),
    extra: `breakers:\n  core:\n${breaker.split('\n').map((l) => `    ${l}`).join('\n')}\n`
  }), { watch: false })
  onTestFinished(gw.close)
  return { core, gw }
}

interface Answer { status: number; ms: number; retryAfter: string | undefined; cache: string | undefined; at: number }

/** `n` clients in a loop, each waiting `pauseMs` between requests, until `stop()`; every answer kept. */
function load (url: string, path: string, headers: Record<string, string>, n: number, pauseMs: number) {
  const answers: Answer[] = []
  const errors: string[] = []
  let running = true
  const loops = Array.from({ length: n }, async (_, i) => {
    while (running) {
      const t0 = performance.now()
      try {
        // an SDK-like client: one request at a time, a 10 s timeout (flagsmith-nodejs' default)
        const r = await raw(url, path, { headers: { 'x-forwarded-for': `10.7.${n}.${i}`, ...headers }, timeoutMs: 10_000 })
        answers.push({ status: r.status, ms: performance.now() - t0, retryAfter: r.headers['retry-after'] as string | undefined, cache: r.headers['x-cache-status'] as string | undefined, at: Date.now() })
      } catch (err) {
        errors.push((err as Error).message)
      }
      await sleep(pauseMs)
    }
  })
  return {
    answers,
    errors,
    stop: async () => { running = false; await Promise.all(loops) }
  }
}

function p99 (xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.max(0, Math.ceil(0.99 * s.length) - 1)] ?? NaN
}

describe('breaker end to end: a database brownout under steady load', () => {
  it('opens on latency, serves stale documents and 503s the rest at once, keeps to maxInFlight (and fair shares), closes when the database recovers and stays closed', async () => {
    const { core, gw } = await setup(`latency: { percentile: 95, above: 1s, window: 4s, minRequests: 8 }
errorRate: { above: 50%, window: 4s, minRequests: 8 }
maxInFlight: 6
openFor: 1s
halfOpenRequests: 3
recovery: 1s`)
    // warm up (connections, JIT) one request at a time, then let the window forget those
    // first, slower answers: the load below starts on a clean window
    for (let i = 0; i < 5; i++) {
      expect((await raw(gw.url, ENV_DOC, { headers: { 'x-environment-key': DEV_KEY } })).status).toBe(200)
      expect((await raw(gw.url, FLAGS, { headers: { 'x-environment-key': CLIENT_KEY } })).status).toBe(200)
    }
    await sleep(4100)
    const sdk = load(gw.url, ENV_DOC, { 'x-environment-key': DEV_KEY }, 4, 50)
    const flags = load(gw.url, FLAGS, { 'x-environment-key': CLIENT_KEY }, 6, 20)
    onTestFinished(async () => { await sdk.stop(); await flags.stop() })

    // healthy: everything answered, the breaker closed
    expect(await eventually(() => flags.answers.length > 50 && sdk.answers.length > 20, 20_000)).toBe(true)
    expect((await breakerStatus(gw)).state).toBe('closed')
    core.reset()

    // the database slows down 1500×: a flags request now holds a connection for 1.5 s, a document
    // fill for 16.5 s (it times out at 10 s; SDKs are served the cached copy meanwhile)
    const raisedAt = Date.now()
    core.db.queryLatencyMs = 1500
    expect(await eventually(async () => (await breakerStatus(gw)).state === 'open', 20_000, 50)).toBe(true)
    const openedAfterMs = Date.now() - raisedAt
    const opened = gw.logs.lines.find((l) => l.msg === 'breaker core: open')!
    expect(opened).toMatchObject({ upstream: 'core', from: 'closed', to: 'open', level: 40 })
    expect(String(opened.reason)).toMatch(/^p95 latency \d+ ms > 1000 ms over 4 s/)

    // while open: documents come from the cache (STALE), flags are shed without reaching Core
    const shedFrom = flags.answers.length
    const sdkFrom = sdk.answers.length
    const coreFlagsBefore = core.counts(FLAGS)
    const status = await breakerStatus(gw)
    // a latency trip with maxInFlight: a trickle at the floor (3 of 6) goes on while open
    expect(status).toMatchObject({ state: 'open', limit: 3 })
    expect(status.p95Ms).toBeGreaterThan(1000)
    const metrics = await metricsText(gw)
    expect(metrics).toContain('flaggate_breaker_state{upstream="core"} 2')
    expect(metrics).toContain('flaggate_upstream_concurrency_limit{upstream="core"} 3')
    expect(metrics).toMatch(/flaggate_upstream_inflight\{upstream="core"\} \d+/)
    await sleep(500)

    // the database recovers: half-open, three good trials, closed, and it stays closed
    core.db.queryLatencyMs = 1
    const recoveredAt = Date.now()
    expect(await eventually(() => gw.logs.lines.some((l) => l.msg === 'breaker core: closed'), 20_000, 50)).toBe(true)
    const shedWhileOpen = flags.answers.slice(shedFrom).filter((a) => a.status === 503)
    const sdkWhileOpen = sdk.answers.slice(sdkFrom)
    await sleep(3000)
    await sdk.stop()
    await flags.stop()

    // environment documents: zero errors for the SDK-like clients, stale while the breaker was open
    expect(sdk.errors).toEqual([])
    expect(sdk.answers.every((a) => a.status === 200)).toBe(true)
    expect(sdkWhileOpen.length).toBeGreaterThan(0)
    expect(sdkWhileOpen.some((a) => a.cache === 'STALE')).toBe(true)
    // everything else: 503 with a whole-second Retry-After ≥ 1, and Core never saw those
    expect(flags.errors).toEqual([])
    expect(shedWhileOpen.length).toBeGreaterThan(10)
    for (const a of shedWhileOpen) expect(Number(a.retryAfter)).toBeGreaterThanOrEqual(1)
    expect(flags.answers.every((a) => a.status === 200 || a.status === 503)).toBe(true)
    const sent = flags.answers.slice(shedFrom).length
    expect(core.counts(FLAGS) - coreFlagsBefore).toBeLessThan(sent - shedWhileOpen.length + 10)
    // Core never worked on more requests at once than maxInFlight, clients that gave up included,
    // plus what fair admission lets a key under its share add at the limit (two keys here: the
    // documents' key may add its share, 6 / 2, while the flags key holds the limit)
    expect(core.maxBusySeen()).toBeLessThanOrEqual(6 + 3)

    // no flapping: one open, one close, and closed at the end
    const transitions = gw.logs.lines.filter((l) => typeof l.msg === 'string' && l.msg.startsWith('breaker core:')).map((l) => `${String(l.from)}→${String(l.to)}`)
    expect(transitions[0]).toBe('closed→open')
    expect(transitions.at(-1)).toBe('half-open→closed')
    expect(transitions.filter((t) => t === 'half-open→closed')).toHaveLength(1)
    expect((await breakerStatus(gw)).state).toBe('closed')
    const shed = (await scrapeMetrics(gw.adminUrl)).value('flaggate_requests_total', { route: 'flags', decision: 'shed', status: '503' })
    expect(shed).toBeGreaterThanOrEqual(shedWhileOpen.length)
    process.stdout.write(`brownout: opened ${openedAfterMs} ms after the latency rise; closed ${Date.now() - recoveredAt - 3000} ms after recovery; ` +
      `${shedWhileOpen.length} shed, p99 ${p99(shedWhileOpen.map((a) => a.ms)).toFixed(1)} ms; transitions ${transitions.join(', ')}\n`)
  })

  it('opens on errors when Core cannot be reached, and answers 503 at once instead of 502s', async () => {
    const { core, gw } = await setup(`errorRate: { above: 50%, window: 5s, minRequests: 5 }
openFor: 30s`)
    core.db.down = true
    const answers: number[] = []
    // five requests from three client addresses: the failures are not one client's
    for (let i = 0; i < 5; i++) answers.push((await raw(gw.url, FLAGS, { headers: { 'x-environment-key': CLIENT_KEY, 'x-forwarded-for': `192.0.2.${i % 3}` } })).status)
    expect(answers).toEqual([502, 502, 502, 502, 502])
    const before = core.counts()
    const shed = await raw(gw.url, FLAGS, { headers: { 'x-environment-key': CLIENT_KEY } })
    expect(shed.status).toBe(503)
    expect(JSON.parse(shed.body.toString())).toMatchObject({ statusCode: 503, code: 'FLAGGATE_UPSTREAM_OVERLOADED', error: 'Service Unavailable' })
    expect(Number(shed.headers['retry-after'])).toBeGreaterThanOrEqual(29)
    expect(shed.headers['x-flaggate-upstream']).toBe('none')
    expect(core.counts()).toBe(before)
    expect(await breakerStatus(gw)).toMatchObject({ state: 'open', errorRate: 1, requests: 5 })
    expect((await breakerStatus(gw)).reason).toBe('error rate 100% > 50% over 5 s (5 of 5 failed, from 3+ clients)')
  })
})

describe('load shedding end to end', () => {
  it('maxInFlight: Core never sees more than N at once; the rest get 503 Retry-After: 1 without reaching it', async () => {
    const { core, gw } = await setup('maxInFlight: 3', { db: { poolSize: 10, queryLatencyMs: 300 } })
    const answers = await Promise.all(Array.from({ length: 30 }, async () => await raw(gw.url, FLAGS, { headers: { 'x-environment-key': CLIENT_KEY } })))
    const ok = answers.filter((a) => a.status === 200)
    const shed = answers.filter((a) => a.status === 503)
    expect(ok.length + shed.length).toBe(30)
    expect(ok.length).toBeGreaterThanOrEqual(3)
    expect(shed.length).toBeGreaterThan(0)
    for (const s of shed) expect(s.headers['retry-after']).toBe('1')
    expect(core.maxBusySeen()).toBeLessThanOrEqual(3)
    expect(core.counts(FLAGS)).toBe(ok.length)
    // shedding is not an upstream failure: the breaker (no trip rule here) and its figures stay clean
    expect(await breakerStatus(gw)).toMatchObject({ state: 'closed', errorRate: 0, inFlight: 0, limit: 3 })
  })

  it('a document fill that is shed serves the stale copy; without one, the 503', async () => {
    const { core, gw } = await setup('maxInFlight: 1', { cache: '{ ttl: 500ms, staleIfError: 10m }' })
    const doc = async (key: string) => await raw(gw.url, ENV_DOC, { headers: { 'x-environment-key': key } })
    expect((await doc(DEV_KEY)).status).toBe(200)
    // the only slot is taken by a slow flags request
    core.db.queryLatencyMs = 1500
    const slow = raw(gw.url, FLAGS, { headers: { 'x-environment-key': CLIENT_KEY } })
    expect(await eventually(async () => (await breakerStatus(gw)).inFlight === 1, 10_000)).toBe(true)
    await sleep(600) // past the document's 500 ms ttl
    const docsBefore = core.counts(ENV_DOC)
    const stale = await doc(DEV_KEY)
    expect(stale.status).toBe(200)
    expect(stale.headers['x-cache-status']).toBe('STALE')
    const cold = await doc('ser.prod_server_key')
    expect(cold.status).toBe(503)
    expect(cold.headers['retry-after']).toBe('1')
    expect(core.counts(ENV_DOC)).toBe(docsBefore)
    expect((await slow).status).toBe(200)
  })

  it('many 429s from the gateway leave the breaker closed and out of its figures', async () => {
    const { core, gw } = await setup('errorRate: { above: 10%, window: 10s, minRequests: 5 }\nlatency: { above: 1s, minRequests: 5 }', { flagsLimit: '{ by: environmentKey, rate: 1/m, burst: 2 }' })
    const statuses: number[] = []
    for (let i = 0; i < 60; i++) statuses.push((await raw(gw.url, FLAGS, { headers: { 'x-environment-key': CLIENT_KEY } })).status)
    expect(statuses.filter((s) => s === 200)).toHaveLength(2)
    expect(statuses.filter((s) => s === 429)).toHaveLength(58)
    expect(core.counts(FLAGS)).toBe(2)
    expect(await breakerStatus(gw)).toMatchObject({ state: 'closed', errorRate: 0, requests: 2 })
  })

  it('maxInFlight: auto learns a limit from latency and reports it', async () => {
    const { gw } = await setup('maxInFlight: { auto: { min: 2, max: 50 } }', { db: { poolSize: 4, queryLatencyMs: 5 } })
    const first = await breakerStatus(gw)
    // generous at start: nothing is shed while minRTT is unknown
    expect(first).toMatchObject({ state: 'closed', limit: 20, inFlight: 0 })
    const flags = load(gw.url, FLAGS, { 'x-environment-key': CLIENT_KEY }, 8, 0)
    onTestFinished(flags.stop)
    // minRTT is taken from answers to requests admitted with at most `min` in flight
    expect(await eventually(async () => { const s = await breakerStatus(gw) as Status & { minRttMs: number | null; sampleRttMs: number | null }; return s.minRttMs !== null && s.sampleRttMs !== null }, 20_000, 50)).toBe(true)
    await flags.stop()
    const s = await breakerStatus(gw) as Status & { minRttMs: number; sampleRttMs: number | null }
    expect(s.minRttMs).toBeGreaterThan(0)
    expect(s.limit).toBeGreaterThanOrEqual(2)
    expect(s.limit).toBeLessThanOrEqual(50)
    expect(flags.errors).toEqual([])
    expect(flags.answers.every((a) => a.status === 200 || (a.status === 503 && a.retryAfter === '1'))).toBe(true)
  })
})

describe('breaker: reload and probe', () => {
  it('a reload applies new settings live and keeps the state', async () => {
    const { core, gw } = await setup('errorRate: { above: 50%, window: 10s, minRequests: 3 }\nopenFor: 1m')
    core.db.down = true
    for (let i = 0; i < 3; i++) await raw(gw.url, FLAGS, { headers: { 'x-environment-key': CLIENT_KEY, 'x-forwarded-for': `192.0.2.${i}` } })
    expect((await breakerStatus(gw)).state).toBe('open')
    const { readFileSync, writeFileSync } = await import('node:fs')
    writeFileSync(gw.file, readFileSync(gw.file, 'utf8').replace('openFor: 1m', 'openFor: 1m\n    maxInFlight: 7'))
    expect(gw.reload().ok).toBe(true)
    // open on errors: nothing goes through, whatever the limit (a latency trip would keep a trickle)
    expect(await breakerStatus(gw)).toMatchObject({ state: 'open', limit: 0 })
    // without any trip rule the breaker has nothing to be open about
    writeFileSync(gw.file, readFileSync(gw.file, 'utf8').replace(/ {4}errorRate: .*\n/, ''))
    expect(gw.reload().ok).toBe(true)
    expect(await breakerStatus(gw)).toMatchObject({ state: 'closed', limit: 7 })
  })

  it('with no traffic, the active probe times Core\'s readiness check and decides the recovery', async () => {
    const { core, gw } = await setup(`latency: { above: 200ms, window: 5s, minRequests: 3 }
openFor: 300ms
halfOpenRequests: 2
probe: { path: /health/readiness/, interval: 100ms }`, { db: { queryLatencyMs: 400 } })
    // the readiness check writes to the database: at 400 ms a query, it is too slow → open
    expect(await eventually(async () => (await breakerStatus(gw)).state === 'open', 20_000, 50)).toBe(true)
    expect(core.counts('/health/readiness/')).toBeGreaterThanOrEqual(3)
    expect(core.counts(FLAGS)).toBe(0)
    core.db.queryLatencyMs = 1
    // trials are probes too (the gateway's own probe is trusted evidence on its own): a fast one
    // closes it, with no client request at all
    expect(await eventually(async () => (await breakerStatus(gw)).state === 'closed', 20_000, 50)).toBe(true)
    expect(gw.logs.lines.find((l) => l.msg === 'breaker core: closed')).toMatchObject({ reason: '1 trial request succeeded' })
  })
})
