/**
 * Goodput under overload: what clients actually get when offered 4× what Core can serve.
 *
 * Core (the fake, its own process) has a small database pool: POOL connections, QUERY_MS per
 * query, one query per flags request, FIFO queue, and it finishes every request it started even
 * when the client is gone (as Django and PostgreSQL do). Each round:
 *   1. measures Core's capacity directly (autocannon, closed loop, 2×POOL connections);
 *   2. offers 4× that, open loop, from many clients that give up after 1 s, through a bare
 *      @fastify/http-proxy — Core's queue outgrows the timeout and goodput collapses;
 *   3. the same through flaggate with `breakers.core.maxInFlight: auto` (nothing else: no cache,
 *      no limits, no trip rules), on a fresh Core.
 * Goodput = 2xx answers received within the client's timeout, per second, over the steady part of
 * the run (from second 3). Prints each round and the medians; targets: flaggate ≥ 0.9× capacity
 * and ≥ 3× the bare proxy.
 *
 * Usage: npm run bench:overload [-- --rounds 3 --duration 15 --pool 4 --query-ms 50 --factor 4]
 *        npm run bench:overload -- --core model [--workers 2] [--query-ms 30]
 *        npm run bench:overload -- --core http://127.0.0.1:18500 --client-key … --server-key ser.… \
 *          --db-delay-proxy http://127.0.0.1:15433 [--query-ms 30]
 *        npm run bench:overload -- --core model --factor 0.5 --duration 600 --rounds 1 --skip-bare
 *          (the healthy soak: half of Core's capacity for 10 minutes; `shed` must stay 0)
 * With `--core model` or a Core URL (bench/core-target.ts), `--query-ms` is the latency of each
 * database round trip (default 30), Core's capacity is measured with a closed-loop client
 * (bench/closed-loop.ts, 2× workers connections; gunicorn closes every connection, which
 * autocannon miscounts), and a Core given by URL is the same one in every phase: the run waits
 * for it to drain between phases. `--breaker '{…}'` replaces flaggate's `breakers.core`
 * (YAML flow mapping; default `{ maxInFlight: auto }`).
 */
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { autocannonCli, Children, runNode } from './support.js'
import { CORE_OPTIONS, coreTarget, type RunningCore } from './core-target.js'
import type { Second } from './load-client.js'

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' },
    duration: { type: 'string', default: '15' },
    pool: { type: 'string', default: '4' },
    'query-ms': { type: 'string' },
    factor: { type: 'string', default: '4' },
    'timeout-ms': { type: 'string', default: '1000' },
    breaker: { type: 'string', default: '{ maxInFlight: auto }' },
    'capacity-s': { type: 'string', default: '5' },
    'skip-bare': { type: 'boolean', default: false },
    ...CORE_OPTIONS
  }
})
const target = coreTarget(values)
const ROUNDS = Number(values.rounds)
const DURATION_S = Number(values.duration)
const POOL = Number(values.pool)
const QUERY_MS = Number(values['query-ms'] ?? (target.kind === 'fake' ? 50 : 30))
const WORKERS = Number(values.workers)
const FACTOR = Number(values.factor)
const TIMEOUT_MS = Number(values['timeout-ms'])
const STEADY_FROM_S = 3
const FLAGS = '/api/v1/flags/'
const HEADERS = { 'x-environment-key': target.clientKey }

async function startCore (children: Children): Promise<RunningCore> {
  await target.settle()
  return await target.start(children, QUERY_MS, { poolSize: POOL })
}

async function coreStats (core: RunningCore): Promise<{ maxBusySeen: number | string; requests: number | string }> {
  return await core.stats() ?? { maxBusySeen: '?', requests: '?' }
}

/** Closed-loop capacity: the fake keeps its connections (autocannon); a gunicorn-like Core closes each one. */
async function capacityOf (url: string, durationS: number): Promise<number> {
  if (target.kind === 'fake') return (await autocannonCli(`${url}${FLAGS}`, { connections: 2 * POOL, durationS, headers: HEADERS })).rps
  const out = await runNode(['--import', 'tsx', 'bench/closed-loop.ts'], {
    URL: url, PATHS: FLAGS, HEADERS: JSON.stringify(HEADERS), CONNECTIONS: String(2 * WORKERS), DURATION_S: String(durationS)
  })
  return (JSON.parse(out) as { rps: number }).rps
}

function flaggatePolicy (coreUrl: string): string {
  // loopback is a trusted proxy: the load client's 100 X-Forwarded-For addresses are 100 clients
  return `server: { listen: 127.0.0.1:0, trustedProxies: [127.0.0.1/32] }
admin: { listen: 127.0.0.1:0 }
upstreams:
  core: { url: "${coreUrl}", timeout: 10s, maxConnections: 128 }
routes:
  - name: flags
    match: { methods: [GET], path: ${FLAGS} }
    upstream: core
  - name: default
    match: { pathPrefix: / }
    upstream: core
breakers:
  core: ${values.breaker}
`
}

interface Run { goodput: number; seconds: Second[]; summary: Record<string, unknown> }

async function offer (url: string, rate: number): Promise<Run> {
  const out = await runNode(['--import', 'tsx', 'bench/load-client.ts'], {
    URL: url, PATHS: FLAGS, HEADERS: JSON.stringify(HEADERS), RATE: String(rate), DURATION_S: String(DURATION_S), TIMEOUT_MS: String(TIMEOUT_MS), CONNECTIONS: '2000', CLIENTS: '100'
  })
  const lines = out.trim().split('\n').map((l) => JSON.parse(l) as Second & { summary?: Record<string, unknown> })
  const seconds = lines.filter((l) => l.summary === undefined && l.t <= DURATION_S)
  const steady = seconds.filter((s) => s.t > STEADY_FROM_S)
  return { goodput: steady.reduce((a, s) => a + s.good, 0) / Math.max(1, steady.length), seconds, summary: lines.find((l) => l.summary !== undefined)!.summary! }
}

interface BreakerSample { t: number; state: string; limit: number | null; inFlight: number; minRttMs: number | null; sampleRttMs: number | null }

/** Samples `breakers.core` from the admin API every 200 ms (t: seconds since the load began). */
function watchBreaker (admin: string): { samples: BreakerSample[]; stop: () => void } {
  const samples: BreakerSample[] = []
  const t0 = Date.now()
  let stopped = false
  void (async () => {
    while (!stopped) {
      try {
        const res = await fetch(`${admin}/admin/status`)
        const b = ((await res.json()) as { breakers?: Record<string, BreakerSample> }).breakers?.core
        if (b !== undefined) samples.push({ t: (Date.now() - t0) / 1000, state: b.state, limit: b.limit, inFlight: b.inFlight, minRttMs: b.minRttMs ?? null, sampleRttMs: b.sampleRttMs ?? null })
      } catch {}
      await new Promise((resolve) => setTimeout(resolve, 200))
    }
  })()
  return { samples, stop: () => { stopped = true } }
}

function range (xs: Array<number | null>): string {
  const v = xs.filter((x): x is number => x !== null)
  if (v.length === 0) return '-'
  const lo = Math.min(...v)
  const hi = Math.max(...v)
  return lo === hi ? String(lo) : `${lo}–${hi}`
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
const f0 = (x: number): string => x.toFixed(0).padStart(5)

async function round (i: number): Promise<{ capacity: number; bare: number; flaggate: number }> {
  const all: Children[] = []
  try { return await roundIn(i, all) } finally { for (const c of all) c.stopAll() }
}

async function roundIn (i: number, all: Children[]): Promise<{ capacity: number; bare: number; flaggate: number }> {
  const fresh = (): Children => { const c = new Children(); all.push(c); return c }
  // 1. Core alone
  let children = fresh()
  let core = await startCore(children)
  await capacityOf(core.url, 2) // warm up
  const capacity = await capacityOf(core.url, Number(values['capacity-s']))
  children.stopAll()
  const rate = Math.round(FACTOR * capacity)

  // 2. bare proxy, fresh Core (skipped by --skip-bare: the healthy soak compares with nothing)
  let bare: Run = { goodput: 0, seconds: [], summary: { sent: 0, timeouts: 0, errors: 0, status: {}, p50: null, p99: null } }
  let bareCore: Awaited<ReturnType<typeof coreStats>> = { maxBusySeen: '-', requests: '-' }
  if (values['skip-bare'] !== true) {
    children = fresh()
    core = await startCore(children)
    const bareUrl = await children.start(['--import', 'tsx', 'bench/bare-proxy.ts'], { UPSTREAM_URL: core.url }, (l) => l.url as string)
    bare = await offer(bareUrl, rate)
    bareCore = await coreStats(core)
    children.stopAll()
  }

  // 3. flaggate, maxInFlight: auto, fresh Core
  children = fresh()
  core = await startCore(children)
  const dir = mkdtempSync(join(tmpdir(), 'flaggate-overload-'))
  writeFileSync(join(dir, 'gateway.yaml'), flaggatePolicy(core.url))
  const gw = await children.spawnFlaggate(join(dir, 'gateway.yaml'))
  const watch = watchBreaker(gw.info.admin as string)
  const gate = await offer(gw.url, rate)
  watch.stop()
  const gateCore = await coreStats(core)
  children.stopAll()

  const coreIs = target.kind === 'fake' ? `pool ${POOL}, ${QUERY_MS} ms/query` : `${target.describe()}, ${QUERY_MS} ms/database round trip`
  console.log(`round ${i}: Core capacity ${capacity.toFixed(0)} req/s (${coreIs}); offered ${rate} req/s, clients give up after ${TIMEOUT_MS} ms`)
  for (const [name, r, c] of [['bare @fastify/http-proxy', bare, bareCore], [`flaggate ${values.breaker}`, gate, gateCore]] as const) {
    const s = r.summary as { sent: number; timeouts: number; errors: number; status: Record<string, number>; p50: number | null; p99: number | null }
    if (name.startsWith('bare') && values['skip-bare'] === true) continue
    console.log(`  ${name.padEnd(28)} goodput ${f0(r.goodput)} req/s   sent ${s.sent}  shed (503) ${s.status['503'] ?? 0}  status ${JSON.stringify(s.status)}  gave up ${s.timeouts}  errors ${s.errors}  2xx p50 ${s.p50} ms p99 ${s.p99} ms  Core received ${c.requests}, at most ${c.maxBusySeen} at once`)
    console.log(`  ${''.padEnd(28)} good/s by second: ${r.seconds.map((x) => x.good).join(' ')}`)
  }
  // where flaggate shed, what its breaker said in that second (the status sampled every 200 ms)
  console.log(`  breaker over the run: limit ${range(watch.samples.map((x) => x.limit))}, in flight at most ${Math.max(0, ...watch.samples.map((x) => x.inFlight))}, minRTT ${range(watch.samples.map((x) => x.minRttMs))} ms, states ${[...new Set(watch.samples.map((x) => x.state))].join(', ')}`)
  const shedSeconds = gate.seconds.filter((sec) => (sec.status['503'] ?? 0) > 0)
  if (shedSeconds.length > 20) console.log(`  ${shedSeconds.length} seconds shed; the first 20:`)
  for (const sec of shedSeconds.slice(0, 20)) {
    const shed = sec.status['503'] ?? 0
    const at = watch.samples.filter((x) => x.t > sec.t - 1 && x.t <= sec.t)
    console.log(`  second ${sec.t}: shed ${shed}; limit ${range(at.map((x) => x.limit))}, in flight ${range(at.map((x) => x.inFlight))}, sample RTT ${range(at.map((x) => x.sampleRttMs))} ms, minRTT ${range(at.map((x) => x.minRttMs))} ms, ${[...new Set(at.map((x) => x.state))].join('/')}`)
  }
  return { capacity, bare: bare.goodput, flaggate: gate.goodput }
}

const results = []
try {
  for (let i = 1; i <= ROUNDS; i++) results.push(await round(i))
} finally {
  // a Core that outlives this run gets its normal database back (start() sets the latency given)
  if (target.kind === 'external') await target.start(new Children(), 0)
}
const capacity = median(results.map((r) => r.capacity))
const bare = median(results.map((r) => r.bare))
const gate = median(results.map((r) => r.flaggate))
console.log('')
console.log(`median of ${ROUNDS} round(s), goodput from second ${STEADY_FROM_S + 1} to ${DURATION_S}:`)
console.log(`  Core capacity (direct)          ${f0(capacity)} req/s`)
console.log(`  bare proxy goodput              ${f0(bare)} req/s   (${(bare / capacity).toFixed(2)}× capacity)`)
console.log(`  flaggate goodput                ${f0(gate)} req/s   (${(gate / capacity).toFixed(2)}× capacity, ${(gate / Math.max(bare, 0.001)).toFixed(1)}× bare)`)
// paired: each round's flaggate goodput against the capacity measured in that round (Core's
// capacity moves from round to round, the more so for a real Core), then the median
const paired = median(results.map((r) => r.flaggate / r.capacity))
console.log(`  paired (median of the rounds' ratios) ${paired.toFixed(2)}× capacity; rounds: ${results.map((r) => (r.flaggate / r.capacity).toFixed(2)).join(', ')}`)
console.log(`  targets: flaggate ≥ 0.9× capacity: ${gate >= 0.9 * capacity ? 'met' : 'MISSED'} (paired: ${paired >= 0.9 ? 'met' : 'MISSED'}); ≥ 3× bare: ${gate >= 3 * bare ? 'met' : 'MISSED'}`)
