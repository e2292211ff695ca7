/**
 * A database brownout, second by second: steady SDK-like traffic through flaggate while Core's
 * database latency climbs, holds, and recovers. Prints one line per second: the query latency
 * set on the fake Core, how many requests Core is working on, the breaker's state, concurrency
 * limit and window p95 (from /admin/status), and what clients got (2xx, 503, other, gave up).
 *
 * Every part in its own process: Core (the fake, bench/upstream.ts, with its control port; or
 * the gunicorn-like model; or any Core by URL, see bench/core-target.ts), the gateway
 * (dist/cli.js) and the open-loop load client (bench/load-client.ts).
 *
 * Usage: npm run scenario:brownout [-- --rate 60 --pool 8 --base-ms 5 --peak-ms 400 --duration 70]
 *        npm run scenario:brownout -- --core model [--workers 2] [--base-ms 1 --peak-ms 30]
 *        npm run scenario:brownout -- --core model --local --duration 30   (local evaluation, mode fallback)
 *        npm run scenario:brownout -- --core http://127.0.0.1:18500 --client-key … --server-key ser.… \
 *          --db-delay-proxy http://127.0.0.1:15433 [--base-ms 0 --peak-ms 30]
 * `--base-ms`/`--peak-ms` are per query for the fake (defaults 5/400) and per database round trip
 * for the model and a real Core (defaults 1/30 and 0/30). `--breaker '{…}'` replaces the
 * `breakers.core` settings below (YAML flow mapping).
 */
import { spawn } from 'node:child_process'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { parseArgs } from 'node:util'
import { Children } from './support.js'
import { CORE_OPTIONS, coreTarget } from './core-target.js'
import type { Second } from './load-client.js'

const { values } = parseArgs({
  options: {
    rate: { type: 'string', default: '60' },
    pool: { type: 'string', default: '8' },
    'base-ms': { type: 'string' },
    'peak-ms': { type: 'string' },
    'timeout-ms': { type: 'string', default: '10000' },
    duration: { type: 'string', default: '70' },
    breaker: { type: 'string' },
    /** list the Core's environment for local evaluation (mode fallback): flags Core cannot answer are answered from its document */
    local: { type: 'boolean', default: false },
    ...CORE_OPTIONS
  }
})
const target = coreTarget(values)
const RATE = Number(values.rate)
const POOL = Number(values.pool)
const DEFAULT_MS = { fake: [5, 400], model: [1, 30], external: [0, 30] }[target.kind]
const BASE_MS = Number(values['base-ms'] ?? DEFAULT_MS[0])
const PEAK_MS = Number(values['peak-ms'] ?? DEFAULT_MS[1])
const TIMEOUT_MS = Number(values['timeout-ms'])
const DURATION_S = Number(values.duration)

/**
 * Database latency at second t of the default 70: calm for 10 s, a 15 s climb, a 15 s plateau, a
 * sudden recovery, calm again; a shorter `--duration` keeps the proportions.
 */
function queryMsAt (t: number): number {
  const x = t * 70 / DURATION_S
  if (x < 10) return BASE_MS
  if (x < 25) return Math.round(BASE_MS + (PEAK_MS - BASE_MS) * (x - 10) / 15)
  if (x < 40) return PEAK_MS
  return BASE_MS
}

const BREAKER = `breakers:
  core:${values.breaker !== undefined ? ` ${values.breaker}` : `
    latency: { percentile: 95, above: 1s, window: 5s, minRequests: 20 }
    errorRate: { above: 50%, window: 5s, minRequests: 20 }
    maxInFlight: auto
    openFor: 5s
    halfOpenRequests: 5
    recovery: 10s`}
`

function localPolicy (dir: string): string {
  if (values.local !== true) return ''
  return `localEvaluation:
  mode: fallback
  refresh: 10s
  stateFile: ${join(dir, 'local-state.json')}
  environments:
    - serverKey: ${target.serverKey}
`
}

/** flags/ answers so far, from the gateway's flaggate_requests_total: by Core (2xx), locally (2xx), failed (not 2xx). */
async function flagCounts (adminUrl: string): Promise<{ core: number; local: number; failed: number }> {
  const text = await (await fetch(`${adminUrl}/metrics`)).text()
  const out = { core: 0, local: 0, failed: 0 }
  for (const m of text.matchAll(/^flaggate_requests_total\{([^}]*)\} (\d+)/gm)) {
    const labels = m[1]!
    if (!labels.includes('route="flags"')) continue
    const n = Number(m[2])
    const ok = /status="2/.test(labels)
    if (!ok) out.failed += n
    else if (labels.includes('decision="local"')) out.local += n
    else out.core += n
  }
  return out
}

function policy (coreUrl: string, dir: string): string {
  // loopback is a trusted proxy: the load client's X-Forwarded-For addresses are distinct clients
  return `server: { listen: 127.0.0.1:0, trustedProxies: [127.0.0.1/32] }
admin: { listen: 127.0.0.1:0 }
upstreams:
  core: { url: "${coreUrl}", timeout: 10s, maxConnections: 128 }
routes:
  - name: environment-document
    match: { methods: [GET], path: /api/v1/environment-document/ }
    upstream: core
    cache: { ttl: 2s, staleWhileRevalidate: 30s, staleIfError: 10m }
  - name: flags
    match: { methods: [GET], path: /api/v1/flags/ }
    upstream: core
  - name: default
    match: { pathPrefix: / }
    upstream: core
${BREAKER}${localPolicy(dir)}`
}

interface Breaker { state: string; limit: number | null; inFlight: number; p95Ms: number | null; minRttMs?: number | null }

const children = new Children()
try {
  if (!target.latencyKnob) console.log('note: no --db-delay-proxy: the database latency of this Core cannot be changed; the timeline below is only nominal')
  const core = await target.start(children, BASE_MS, { poolSize: POOL })
  const dir = mkdtempSync(join(tmpdir(), 'flaggate-brownout-'))
  writeFileSync(join(dir, 'gateway.yaml'), policy(core.url, dir))
  const { url: gw, admin: adminUrl } = JSON.parse(await children.start(['dist/cli.js', 'serve', '--config', join(dir, 'gateway.yaml')], { LOG_LEVEL: 'info' },
    (l) => l.msg === 'flaggate serving' ? JSON.stringify({ url: l.url, admin: l.admin }) : undefined)) as { url: string; admin: string }

  const sample: Array<{ queryMs: number; busy: number | undefined; breaker: Breaker; flags: { core: number; local: number; failed: number } }> = []
  const setDb = async (ms: number): Promise<void> => { await core.setDbLatency(ms) }
  const load = spawn(process.execPath, ['--import', 'tsx', 'bench/load-client.ts'], {
    env: {
      ...process.env,
      URL: gw,
      // an SDK-like mix: two flag requests for every environment document (served from cache)
      PATHS: '/api/v1/flags/,/api/v1/flags/,/api/v1/environment-document/',
      HEADERS: JSON.stringify({ 'x-environment-key': target.serverKey }),
      RATE: String(RATE), DURATION_S: String(DURATION_S), TIMEOUT_MS: String(TIMEOUT_MS), CONNECTIONS: '500', CLIENTS: '50'
    },
    stdio: ['ignore', 'pipe', 'inherit']
  })
  const seconds: Second[] = []
  const lines = createInterface({ input: load.stdout })
  lines.on('line', (l) => { const s = JSON.parse(l) as Second & { summary?: unknown }; if (s.summary === undefined) seconds.push(s) })
  const done = new Promise<void>((resolve) => load.once('exit', () => resolve()))

  const core_ = target.kind === 'fake' ? `fake Core pool ${POOL}, ${BASE_MS} ms/query` : `${target.describe()}, ${BASE_MS} ms/database round trip`
  console.log(`brownout: ${core_} → ${PEAK_MS} ms → ${BASE_MS} ms over ${DURATION_S} s; ${RATE} req/s offered (2 flags : 1 environment document); clients give up after ${TIMEOUT_MS} ms`)
  console.log(BREAKER.trimEnd())
  console.log('')
  if (values.local === true) console.log(`local evaluation: mode fallback for ${target.serverKey.slice(0, 6)}…; flags/ columns from the gateway's flaggate_requests_total{route="flags"}`)
  console.log(`   t  db ms  core busy  breaker     limit  in flight  p95 ms |   2xx   503  other  gave up  2xx p50 ms | flags: core 2xx  local 2xx  failed`)
  let before = await flagCounts(adminUrl)
  const started = Date.now()
  for (let t = 0; t < DURATION_S; t++) {
    await setDb(queryMsAt(t))
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, started + (t + 1) * 1000 - Date.now())))
    const stats = await core.stats()
    const status = await (await fetch(`${adminUrl}/admin/status`)).json() as { breakers: Record<string, Breaker> }
    const now = await flagCounts(adminUrl)
    sample.push({ queryMs: queryMsAt(t), busy: stats?.busy, breaker: status.breakers.core!, flags: { core: now.core - before.core, local: now.local - before.local, failed: now.failed - before.failed } })
    before = now
  }
  await done
  // a Core that outlives this run gets its normal database back
  await setDb(BASE_MS)
  for (let t = 0; t < DURATION_S; t++) {
    const s = sample[t]!
    const c = seconds.find((x) => x.t === t + 1)
    const other = c === undefined ? 0 : Object.entries(c.status).filter(([k]) => !k.startsWith('2') && k !== '503').reduce((a, [, v]) => a + v, 0)
    const ok = c === undefined ? 0 : Object.entries(c.status).filter(([k]) => k.startsWith('2')).reduce((a, [, v]) => a + v, 0)
    console.log(`${String(t + 1).padStart(4)}  ${String(s.queryMs).padStart(5)}  ${String(s.busy ?? '-').padStart(9)}  ${s.breaker.state.padEnd(10)}  ${String(s.breaker.limit ?? '-').padStart(5)}  ${String(s.breaker.inFlight).padStart(9)}  ${String(s.breaker.p95Ms === null ? '-' : Math.round(s.breaker.p95Ms)).padStart(6)} | ${String(ok).padStart(5)} ${String(c?.status['503'] ?? 0).padStart(5)}  ${String(other).padStart(5)}  ${String(c?.timeouts ?? 0).padStart(7)}  ${String(c?.p50 ?? '-').padStart(10)} | ${String(s.flags.core).padStart(14)}  ${String(s.flags.local).padStart(9)}  ${String(s.flags.failed).padStart(6)}`)
  }
  const total = sample.reduce((a, s) => ({ core: a.core + s.flags.core, local: a.local + s.flags.local, failed: a.failed + s.flags.failed }), { core: 0, local: 0, failed: 0 })
  console.log(`flags/ in ${DURATION_S} s: core 2xx ${total.core}, local 2xx ${total.local}, failed ${total.failed}; seconds with a failed flag request: ${sample.filter((s) => s.flags.failed > 0).length}`)
} finally {
  children.stopAll()
  // a Core that outlives this run gets its normal database back, even after a failure
  if (target.kind === 'external') await target.start(children, BASE_MS)
}

