/**
 * A database brownout, second by second: steady SDK-like traffic through flaggate while Core's
 * database latency climbs, holds, and recovers. Prints one line per second: the query latency
 * set on the fake Core, how many requests Core is working on, the breaker's state, concurrency
 * limit and window p95 (from /admin/status), and what clients got (2xx, 503, other, gave up).
 *
 * Every part in its own process: the fake Core (bench/upstream.ts, with its control port), the
 * gateway (dist/cli.js) and the open-loop load client (bench/load-client.ts).
 *
 * Usage: npm run scenario:brownout [-- --rate 60 --pool 8 --base-ms 5 --peak-ms 400]
 */
import { spawn } from 'node:child_process'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { parseArgs } from 'node:util'
import { Children } from './support.js'
import type { Second } from './load-client.js'

const { values } = parseArgs({
  options: {
    rate: { type: 'string', default: '60' },
    pool: { type: 'string', default: '8' },
    'base-ms': { type: 'string', default: '5' },
    'peak-ms': { type: 'string', default: '400' },
    'timeout-ms': { type: 'string', default: '10000' }
  }
})
const RATE = Number(values.rate)
const POOL = Number(values.pool)
const BASE_MS = Number(values['base-ms'])
const PEAK_MS = Number(values['peak-ms'])
const TIMEOUT_MS = Number(values['timeout-ms'])

/** Query latency at second t: calm, a 15 s climb, a plateau, a sudden recovery, calm again. */
function queryMsAt (t: number): number {
  if (t < 10) return BASE_MS
  if (t < 25) return Math.round(BASE_MS + (PEAK_MS - BASE_MS) * (t - 10) / 15)
  if (t < 40) return PEAK_MS
  return BASE_MS
}
const DURATION_S = 70

const BREAKER = `breakers:
  core:
    latency: { percentile: 95, above: 1s, window: 5s, minRequests: 20 }
    errorRate: { above: 50%, window: 5s, minRequests: 20 }
    maxInFlight: auto
    openFor: 5s
    halfOpenRequests: 5
    recovery: 10s
`

function policy (coreUrl: string): string {
  return `server: { listen: 127.0.0.1:0 }
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
${BREAKER}`
}

interface Breaker { state: string; limit: number | null; inFlight: number; p95Ms: number | null; minRttMs?: number | null }

const children = new Children()
try {
  const core = JSON.parse(await children.start(['--import', 'tsx', 'bench/upstream.ts'], { POOL_SIZE: String(POOL), QUERY_LATENCY_MS: String(BASE_MS) },
    (l) => typeof l.control === 'string' ? JSON.stringify(l) : undefined)) as { url: string; control: string }
  const dir = mkdtempSync(join(tmpdir(), 'flaggate-brownout-'))
  writeFileSync(join(dir, 'gateway.yaml'), policy(core.url))
  const { url: gw, admin: adminUrl } = JSON.parse(await children.start(['dist/cli.js', 'serve', '--config', join(dir, 'gateway.yaml')], { LOG_LEVEL: 'info' },
    (l) => l.msg === 'flaggate serving' ? JSON.stringify({ url: l.url, admin: l.admin }) : undefined)) as { url: string; admin: string }

  const sample: Array<{ queryMs: number; busy: number; breaker: Breaker }> = []
  const setDb = async (queryLatencyMs: number): Promise<void> => { await fetch(`${core.control}/db`, { method: 'POST', body: JSON.stringify({ queryLatencyMs }) }) }
  const load = spawn(process.execPath, ['--import', 'tsx', 'bench/load-client.ts'], {
    env: {
      ...process.env,
      URL: gw,
      // an SDK-like mix: two flag requests for every environment document (served from cache)
      PATHS: '/api/v1/flags/,/api/v1/flags/,/api/v1/environment-document/',
      HEADERS: JSON.stringify({ 'x-environment-key': 'ser.dev_server_key' }),
      RATE: String(RATE), DURATION_S: String(DURATION_S), TIMEOUT_MS: String(TIMEOUT_MS), CONNECTIONS: '500'
    },
    stdio: ['ignore', 'pipe', 'inherit']
  })
  const seconds: Second[] = []
  const lines = createInterface({ input: load.stdout })
  lines.on('line', (l) => { const s = JSON.parse(l) as Second & { summary?: unknown }; if (s.summary === undefined) seconds.push(s) })
  const done = new Promise<void>((resolve) => load.once('exit', () => resolve()))

  console.log(`brownout: Core pool ${POOL}, ${BASE_MS} ms/query → ${PEAK_MS} ms → ${BASE_MS} ms; ${RATE} req/s offered (2 flags : 1 environment document); clients give up after ${TIMEOUT_MS} ms`)
  console.log(BREAKER.trimEnd())
  console.log('')
  console.log('   t  db ms  core busy  breaker     limit  in flight  p95 ms |   2xx   503  other  gave up  2xx p50 ms')
  const started = Date.now()
  for (let t = 0; t < DURATION_S; t++) {
    await setDb(queryMsAt(t))
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, started + (t + 1) * 1000 - Date.now())))
    const stats = await (await fetch(`${core.control}/stats`)).json() as { busy: number }
    const status = await (await fetch(`${adminUrl}/admin/status`)).json() as { breakers: Record<string, Breaker> }
    sample.push({ queryMs: queryMsAt(t), busy: stats.busy, breaker: status.breakers.core! })
  }
  await done
  for (let t = 0; t < DURATION_S; t++) {
    const s = sample[t]!
    const c = seconds.find((x) => x.t === t + 1)
    const other = c === undefined ? 0 : Object.entries(c.status).filter(([k]) => !k.startsWith('2') && k !== '503').reduce((a, [, v]) => a + v, 0)
    const ok = c === undefined ? 0 : Object.entries(c.status).filter(([k]) => k.startsWith('2')).reduce((a, [, v]) => a + v, 0)
    console.log(`${String(t + 1).padStart(4)}  ${String(s.queryMs).padStart(5)}  ${String(s.busy).padStart(9)}  ${s.breaker.state.padEnd(10)}  ${String(s.breaker.limit ?? '-').padStart(5)}  ${String(s.breaker.inFlight).padStart(9)}  ${String(s.breaker.p95Ms === null ? '-' : Math.round(s.breaker.p95Ms)).padStart(6)} | ${String(ok).padStart(5)} ${String(c?.status['503'] ?? 0).padStart(5)}  ${String(other).padStart(5)}  ${String(c?.timeouts ?? 0).padStart(7)}  ${String(c?.p50 ?? '-').padStart(10)}`)
  }
} finally {
  children.stopAll()
}

