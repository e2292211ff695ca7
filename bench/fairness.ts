/**
 * Fairness between environment keys when Core's limit is reached: one key offering 10× Core's
 * capacity beside nine keys offering 5 % of it each (45 % together), all through one flaggate in
 * front of the gunicorn-like Core model. What counts: the share of the nine keys' requests
 * answered 2xx within the client's timeout (target ≥ 95 %), and the goodput of the whole.
 *
 * `--gateway DIR` runs another build's `DIR/dist/cli.js` (e.g. a checkout from before fair
 * admission) against the same Core and load, for the comparison.
 *
 * Usage: node --import tsx bench/fairness.ts [--query-ms 30] [--duration 15] [--timeout-ms 2000]
 *          [--workers 2] [--breaker '{ maxInFlight: auto }'] [--gateway DIR]
 */
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { coreTarget } from './core-target.js'
import type { Second } from './load-client.js'
import { Children, runNode } from './support.js'

const { values } = parseArgs({
  options: {
    'query-ms': { type: 'string', default: '30' },
    duration: { type: 'string', default: '15' },
    'timeout-ms': { type: 'string', default: '2000' },
    workers: { type: 'string', default: '2' },
    breaker: { type: 'string', default: '{ maxInFlight: auto }' },
    gateway: { type: 'string' }
  }
})
const QUERY_MS = Number(values['query-ms'])
const DURATION_S = Number(values.duration)
const TIMEOUT_MS = Number(values['timeout-ms'])
const WORKERS = Number(values.workers)
const STEADY_FROM_S = 3
const FLAGS = '/api/v1/flags/'
const LIGHT_KEYS = Array.from({ length: 9 }, (_, i) => `fair_key_${i}`)
const STORM_KEY = 'dev_client_key'

process.env.EXTRA_KEYS = String(LIGHT_KEYS.length) // bench/model-core.ts: nine more environments
const target = coreTarget({ core: 'model', workers: String(WORKERS) })
const children = new Children()

interface Totals { sent: number; good: number; status: Record<string, number>; timeouts: number; errors: number; goodPerS: number }

function totals (out: string): Totals {
  const seconds = out.trim().split('\n').map((l) => JSON.parse(l) as Second & { summary?: unknown }).filter((s) => s.summary === undefined && s.t <= DURATION_S)
  const steady = seconds.filter((s) => s.t > STEADY_FROM_S)
  const t: Totals = { sent: 0, good: 0, status: {}, timeouts: 0, errors: 0, goodPerS: 0 }
  for (const s of steady) {
    t.sent += s.sent; t.good += s.good; t.timeouts += s.timeouts; t.errors += s.errors
    for (const [k, v] of Object.entries(s.status)) t.status[k] = (t.status[k] ?? 0) + v
  }
  t.goodPerS = t.good / Math.max(1, steady.length)
  return t
}

try {
  const core = await target.start(children, QUERY_MS)
  const closedLoop = async (durationS: number): Promise<number> => (JSON.parse(await runNode(['--import', 'tsx', 'bench/closed-loop.ts'], {
    URL: core.url, PATHS: FLAGS, HEADERS: JSON.stringify({ 'x-environment-key': STORM_KEY }), CONNECTIONS: String(2 * WORKERS), DURATION_S: String(durationS)
  })) as { rps: number }).rps
  await closedLoop(2)
  const capacity = await closedLoop(5)

  const dir = mkdtempSync(join(tmpdir(), 'flaggate-fairness-'))
  const file = join(dir, 'gateway.yaml')
  writeFileSync(file, `server: { listen: 127.0.0.1:0, trustedProxies: [127.0.0.1/32] }
admin: { listen: 127.0.0.1:0 }
upstreams:
  core: { url: "${core.url}", timeout: 10s, maxConnections: 128 }
routes:
  - name: flags
    match: { methods: [GET], path: ${FLAGS} }
    upstream: core
  - name: default
    match: { pathPrefix: / }
    upstream: core
breakers:
  core: ${values.breaker}
`)
  const cli = values.gateway === undefined ? resolve('dist/cli.js') : resolve(values.gateway, 'dist/cli.js')
  const gw = await children.spawn([cli, 'serve', '--config', file], { LOG_LEVEL: 'info' }, (l) => l.msg === 'flaggate serving')
  const url = gw.info.url as string

  const offer = async (keys: string[], rate: number, clients: number): Promise<Totals> => totals(await runNode(['--import', 'tsx', 'bench/load-client.ts'], {
    URL: url, PATHS: FLAGS, HEADERS: '{}', KEYS: keys.join(','), CLIENTS: String(clients), RATE: String(Math.round(rate)), DURATION_S: String(DURATION_S), TIMEOUT_MS: String(TIMEOUT_MS), CONNECTIONS: '2000'
  }))
  const [storm, light] = await Promise.all([offer([STORM_KEY], 10 * capacity, 50), offer(LIGHT_KEYS, 0.45 * capacity, 9)])
  const stats = await core.stats()

  console.log(`fairness: ${cli}  breakers.core ${values.breaker}`)
  console.log(`Core: gunicorn-like model, ${WORKERS} sync workers, ${QUERY_MS} ms per database round trip; capacity ${capacity.toFixed(0)} req/s (closed loop); clients give up after ${TIMEOUT_MS} ms`)
  for (const [name, t, rate] of [['storm key (10× capacity)', storm, 10 * capacity], ['nine keys (5 % each)', light, 0.45 * capacity]] as const) {
    console.log(`  ${name.padEnd(26)} offered ${rate.toFixed(0)} req/s  sent ${t.sent}  2xx ${t.good} (${(100 * t.good / Math.max(1, t.sent)).toFixed(1)} %)  goodput ${t.goodPerS.toFixed(0)} req/s  status ${JSON.stringify(t.status)}  gave up ${t.timeouts}  errors ${t.errors}`)
  }
  console.log(`  total goodput ${(storm.goodPerS + light.goodPerS).toFixed(0)} req/s (${((storm.goodPerS + light.goodPerS) / capacity).toFixed(2)}× capacity); Core at most ${stats?.maxBusySeen ?? '?'} at once`)
  const share = light.good / Math.max(1, light.sent)
  console.log(`  target: the nine keys get ≥ 95 % 2xx: ${share >= 0.95 ? 'met' : 'MISSED'} (${(100 * share).toFixed(1)} %), from second ${STEADY_FROM_S + 1} to ${DURATION_S}`)
} finally {
  children.stopAll()
}
