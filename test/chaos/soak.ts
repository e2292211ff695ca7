/**
 * The soak: two gateway processes sharing a private Redis in front of the fake Core and Edge, fed
 * mixed traffic for a long time while Redis and Core are broken on a schedule and operators block,
 * purge and reload. It reports what the clients saw (every answer classified as expected or not),
 * and what the gateways did with their memory, event loop and handles, every 10 s.
 *
 *   npm run soak -- --duration 10m [--report test/chaos/SOAK.md]
 *
 * Expected answers: 200/304 and Core's own 4xx; 429 (limited); 403 FLAGGATE_BLOCKED; 503
 * FLAGGATE_UPSTREAM_OVERLOADED; 502/504 only while Core is being broken on purpose. Anything else
 * (a 500, a connection error, a client timeout, a 502 with Core healthy) is an unexpected error.
 * The run exits 1 when there was one, or when memory did not plateau.
 */
import { readFileSync, writeFileSync } from 'node:fs'
import { cpus } from 'node:os'
import { parseArgs } from 'node:util'
import { Agent, request } from 'undici'
import { startPrivateRedis, type PrivateRedis } from '../support/redis-server.js'
import { defaultEnvironments, startFakeCore, startFakeEdge, type FakeCore, type FakeEdge } from '../support/fake-flagsmith.js'
import { spawnGateway, type SpawnedGateway } from '../support/gateway.js'
import { parseDuration } from '../../src/shared/units.js'

const { values } = parseArgs({ options: { duration: { type: 'string', default: '2m' }, report: { type: 'string' }, 'sample-every': { type: 'string', default: '10s' } } })
const DURATION_MS = parseDuration(values.duration!) ?? 120_000
const SAMPLE_MS = parseDuration(values['sample-every']!) ?? 10_000
const ADMIN_TOKEN = 'soak-admin-token-0123456789'
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

// ---------------------------------------------------------------------------------------------
// The parts
// ---------------------------------------------------------------------------------------------

function policy (coreUrl: string, edgeUrl: string, redisUrl: string, keyPrefix: string, variant: number): string {
  // `variant` changes something harmless on every reload, so each reload really swaps the policy
  return `server:
  listen: 127.0.0.1:0
  shutdownTimeout: 5s
admin:
  listen: 127.0.0.1:0
  token: ${ADMIN_TOKEN}
upstreams:
  core: { url: "${coreUrl}", timeout: 2s, maxConnections: 64 }
  edge: { url: "${edgeUrl}", timeout: 2s }
store:
  redis:
    url: ${redisUrl}
    keyPrefix: "${keyPrefix}"
    commandTimeout: 50ms
routes:
  - name: environment-document
    match: { methods: [GET], path: /api/v1/environment-document/ }
    upstream: core
    limit:
      - { by: environmentKey, rate: 20/s, burst: 100 }
      - { by: [environmentKey, ip], rate: ${10 + (variant % 3)}/s, burst: 30 }
    cache: { ttl: 5s, staleWhileRevalidate: 30s, staleIfError: 10m }
  - name: flags
    match: { methods: [GET], path: /api/v1/flags/ }
    upstream: core
    edge: { percent: ${(variant * 10) % 60}, keys: [] }
    limit:
      - { by: environmentKey, rate: 1000/s, burst: 5000 }
      - { by: [environmentKey, ip], rate: 50/s, burst: 100 }
  - name: identities
    match: { methods: [GET, POST], path: /api/v1/identities/ }
    upstream: core
    limit: { by: [environmentKey, ip], rate: 50/s, burst: 100 }
  - name: default
    match: { pathPrefix: / }
    upstream: core
    limit: { by: ip, rate: 100/s, burst: 200 }
blocklist:
  - { userAgent: "^ScraperBot/", reason: "scraper" }
abuse:
  rejections: 200 per 30s
  blockFor: 20s
breakers:
  core:
    latency: { percentile: 95, above: 500ms, window: 5s, minRequests: 20 }
    errorRate: { above: 50%, window: 5s, minRequests: 20 }
    maxInFlight: auto
    openFor: 3s
    halfOpenRequests: 3
probes:
  - { name: flags, path: /api/v1/flags/, key: dev_client_key, interval: 5s }
`
}

type Kind = 'ok' | 'limited' | 'blocked' | 'shed' | 'upstream-error-during-fault' | 'unexpected'

interface Tally { byStatus: Map<string, number>; byKind: Map<Kind, number>; unexpected: string[] }
const tally: Tally = { byStatus: new Map(), byKind: new Map(), unexpected: [] }
let coreFault = false

function count (status: number, code: string | undefined, what: string): void {
  const label = code === undefined ? String(status) : `${status} ${code}`
  tally.byStatus.set(label, (tally.byStatus.get(label) ?? 0) + 1)
  let kind: Kind
  if (status < 400 || (status >= 400 && status < 500 && code === undefined && status !== 429)) kind = 'ok'
  else if (status === 429) kind = 'limited'
  else if (code === 'FLAGGATE_BLOCKED') kind = 'blocked'
  else if (code === 'FLAGGATE_UPSTREAM_OVERLOADED') kind = 'shed'
  else if ((status === 502 || status === 504 || (status >= 500 && code === undefined)) && coreFault) kind = 'upstream-error-during-fault'
  else kind = 'unexpected'
  tally.byKind.set(kind, (tally.byKind.get(kind) ?? 0) + 1)
  if (kind === 'unexpected' && tally.unexpected.length < 50) tally.unexpected.push(`${new Date().toISOString()} ${what}: ${label}`)
}

const agent = new Agent({ connections: 256, keepAliveTimeout: 4000 })

async function hit (base: string, path: string, headers: Record<string, string>, method: 'GET' | 'POST' = 'GET', body?: string): Promise<void> {
  try {
    const r = await request(base + path, { method, headers, body, dispatcher: agent, headersTimeout: 10_000, bodyTimeout: 10_000 })
    const text = await r.body.text()
    let code: string | undefined
    if (r.statusCode >= 400 && text.startsWith('{"statusCode"')) {
      try { code = (JSON.parse(text) as { code?: string }).code } catch {}
    }
    count(r.statusCode, code, `${method} ${path}`)
  } catch (err) {
    tally.byKind.set('unexpected', (tally.byKind.get('unexpected') ?? 0) + 1)
    if (tally.unexpected.length < 50) tally.unexpected.push(`${new Date().toISOString()} ${method} ${path}: ${String(err)}`)
  }
}

// ---------------------------------------------------------------------------------------------
// Traffic
// ---------------------------------------------------------------------------------------------

interface Loop { stop (): Promise<void> }

function every (ms: number, fn: () => Promise<void>): Loop {
  let running = true
  const done = (async () => {
    while (running) {
      const t = Date.now()
      await fn().catch(() => {})
      await sleep(Math.max(1, ms - (Date.now() - t)))
    }
  })()
  return { async stop () { running = false; await done } }
}

function traffic (gws: SpawnedGateway[], env: ReturnType<typeof defaultEnvironments>): Loop[] {
  const pick = <T>(xs: T[]): T => xs[Math.floor(Math.random() * xs.length)]!
  const serverKeys = env.flatMap((e) => e.serverKeys)
  const clientKeys = env.map((e) => e.clientKey)
  const loops: Loop[] = []
  // server-side SDK fleet: environment documents every second per instance, with conditionals
  for (let i = 0; i < 20; i++) {
    loops.push(every(1000, async () => {
      await hit(pick(gws).url, '/api/v1/environment-document/', { 'x-environment-key': pick(serverKeys), 'x-forwarded-for': `10.1.0.${i}` })
    }))
  }
  // browsers and phones: flags and identities with client keys
  for (let i = 0; i < 20; i++) {
    loops.push(every(200, async () => {
      const key = pick(clientKeys)
      if (Math.random() < 0.7) await hit(pick(gws).url, '/api/v1/flags/', { 'x-environment-key': key })
      else if (Math.random() < 0.8) await hit(pick(gws).url, `/api/v1/identities/?identifier=user-${Math.floor(Math.random() * 1000)}`, { 'x-environment-key': key })
      else await hit(pick(gws).url, '/api/v1/identities/', { 'x-environment-key': key, 'content-type': 'application/json' }, 'POST', JSON.stringify({ identifier: `user-${i}`, traits: [{ trait_key: 'plan', trait_value: 'pro' }] }))
    }))
  }
  // the 2022 storm: one server key, environment documents with no pause (limited, then auto-blocked)
  for (let i = 0; i < 3; i++) loops.push(every(2, async () => { await hit(gws[0]!.url, '/api/v1/environment-document/', { 'x-environment-key': 'ser.prod_server_key_2' }) }))
  // a scraper the static User-Agent block catches, and random keys Core answers 403
  loops.push(every(100, async () => { await hit(pick(gws).url, '/api/v1/flags/', { 'x-environment-key': 'dev_client_key', 'user-agent': 'ScraperBot/1.0' }) }))
  loops.push(every(250, async () => { await hit(pick(gws).url, '/api/v1/flags/', { 'x-environment-key': `random-${Math.random().toString(36).slice(2)}` }) }))
  return loops
}

async function admin (gw: SpawnedGateway, method: string, path: string, body?: unknown): Promise<number> {
  const r = await request(gw.adminUrl + path, {
    method: method as 'GET',
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    body: body === undefined ? undefined : JSON.stringify(body),
    dispatcher: agent
  })
  await r.body.text()
  return r.statusCode
}

// ---------------------------------------------------------------------------------------------
// Faults, operators and samples
// ---------------------------------------------------------------------------------------------

interface Sample { t: number; rssMb: number[]; heapMb: number[]; elP99Ms: number[]; handles: number[]; requests: number }
const samples: Sample[] = []
const events: string[] = []

function rssMb (pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return m === null ? 0 : Number(m[1]) / 1024
}

async function scrape (gw: SpawnedGateway): Promise<Map<string, number>> {
  const r = await request(gw.adminUrl + '/metrics', { dispatcher: agent })
  const text = await r.body.text()
  const out = new Map<string, number>()
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || line === '') continue
    const i = line.lastIndexOf(' ')
    out.set(line.slice(0, i), Number(line.slice(i + 1)))
  }
  return out
}

function sumOf (m: Map<string, number>, prefix: string): number {
  let s = 0
  for (const [k, v] of m) if (k.startsWith(prefix)) s += v
  return s
}

async function main (): Promise<void> {
  const started = Date.now()
  let redis: PrivateRedis = await startPrivateRedis()
  const core: FakeCore = await startFakeCore({ db: { queryLatencyMs: 2, poolSize: 10 } })
  const edge: FakeEdge = await startFakeEdge()
  const prefix = `soak-${process.pid}:`
  let variant = 0
  const gws = [
    await spawnGateway(policy(core.url, edge.url, redis.url, prefix, variant)),
    await spawnGateway(policy(core.url, edge.url, redis.url, prefix, variant))
  ]
  const say = (s: string): void => { const line = `${((Date.now() - started) / 1000).toFixed(0).padStart(4)} s  ${s}`; events.push(line); console.log(line) }
  say(`gateways ${gws.map((g) => g.url).join(' ')}; Redis ${redis.url}; Core ${core.url}; Edge ${edge.url}`)

  const loops = traffic(gws, defaultEnvironments())

  // operators: a block and an unblock, a purge, a reload (a third of them invalid) on a schedule
  const operators = every(15_000, async () => {
    const gw = gws[variant % 2]!
    variant++
    if (variant % 3 === 0) {
      writeFileSync(gw.file, 'routes: [ this is not valid')
      say(`reload: invalid policy written on gateway ${variant % 2} (must change nothing)`)
      await sleep(500)
    }
    for (const g of gws) writeFileSync(g.file, policy(core.url, edge.url, redis.url, prefix, variant))
    const s = await admin(gw, 'POST', '/admin/blocks', { key: 'dev_client_key', routes: ['identities'], ttl: '5s', reason: 'soak: on-call drill' })
    const p = await admin(gws[(variant + 1) % 2]!, 'POST', '/admin/cache/purge', {})
    say(`operators: reload to variant ${variant}, block → ${s}, purge → ${p}`)
  })

  // faults: one every 40 s, in turn
  const faults = [
    async () => { say('fault: Redis SIGSTOP for 5 s'); process.kill(redis.pid, 'SIGSTOP'); await sleep(5000); process.kill(redis.pid, 'SIGCONT'); say('fault over: Redis continued') },
    async () => { say('fault: Core database latency 800 ms for 10 s'); core.db.queryLatencyMs = 800; await sleep(10_000); core.db.queryLatencyMs = 2; say('fault over: Core fast again') },
    async () => {
      say('fault: Redis killed, restarted empty after 5 s')
      const port = redis.port
      await redis.stop()
      await sleep(5000)
      redis = await startPrivateRedis(port)
      say('fault over: Redis back (empty)')
    },
    async () => {
      say('fault: Core down for 5 s')
      coreFault = true
      core.db.down = true
      await sleep(5000)
      core.db.down = false
      await sleep(3000) // answers already in flight may still fail
      coreFault = false
      say('fault over: Core up')
    },
    async () => { say('fault: Core 30% database errors for 10 s'); coreFault = true; core.db.failRate = 0.3; await sleep(10_000); core.db.failRate = 0; await sleep(2000); coreFault = false; say('fault over: Core healthy') }
  ]
  let f = 0
  const faulting = every(40_000, async () => { if (Date.now() - started > 20_000) await faults[f++ % faults.length]!() })

  const sampling = every(SAMPLE_MS, async () => {
    const ms = await Promise.all(gws.map(scrape))
    const s: Sample = {
      t: (Date.now() - started) / 1000,
      rssMb: gws.map((g) => rssMb(g.process.pid!)),
      heapMb: ms.map((m) => (m.get('flaggate_nodejs_heap_size_used_bytes') ?? 0) / 1048576),
      elP99Ms: ms.map((m) => (m.get('flaggate_nodejs_eventloop_lag_p99_seconds') ?? 0) * 1000),
      handles: ms.map((m) => m.get('flaggate_nodejs_active_handles_total') ?? 0),
      requests: [...tally.byStatus.values()].reduce((a, b) => a + b, 0)
    }
    samples.push(s)
    console.log(`${s.t.toFixed(0).padStart(4)} s  rss ${s.rssMb.map((x) => x.toFixed(0)).join('/')} MB  heap ${s.heapMb.map((x) => x.toFixed(0)).join('/')} MB  loop p99 ${s.elP99Ms.map((x) => x.toFixed(1)).join('/')} ms  handles ${s.handles.join('/')}  requests ${s.requests}  unexpected ${tally.byKind.get('unexpected') ?? 0}`)
  })

  await sleep(DURATION_MS)
  await Promise.all([...loops, operators, faulting, sampling].map((l) => l.stop()))
  await sleep(1000)
  const finalMetrics = await Promise.all(gws.map(scrape))
  const decisions = new Map<string, number>()
  for (const m of finalMetrics) {
    for (const [k, v] of m) {
      const d = /^flaggate_requests_total\{.*decision="([^"]+)"/.exec(k)?.[1]
      if (d !== undefined) decisions.set(d, (decisions.get(d) ?? 0) + v)
    }
  }
  const handlesAtEnd = finalMetrics.map((m) => m.get('flaggate_nodejs_active_handles_total') ?? 0)
  const exits = await Promise.all(gws.map((g) => g.stop('SIGTERM')))
  await core.close(); await edge.close(); await redis.stop(); await agent.close()

  // plateau: the RSS of the last third of the run grows by less than 10% over the middle third
  const third = Math.floor(samples.length / 3)
  const mid = samples.slice(third, 2 * third)
  const last = samples.slice(2 * third)
  const maxRss = (xs: Sample[]): number => Math.max(0, ...xs.flatMap((s) => s.rssMb))
  const plateau = samples.length < 6 || maxRss(last) <= maxRss(mid) * 1.1 + 5
  const unexpected = tally.byKind.get('unexpected') ?? 0

  const report = renderReport({ durationMs: Date.now() - started, decisions, handlesAtEnd, exits, plateau, unexpected, storeFallback: finalMetrics.map((m) => sumOf(m, 'flaggate_store_fallback_total')) })
  console.log('\n' + report)
  if (values.report !== undefined) {
    writeFileSync(values.report, report)
    writeFileSync(values.report.replace(/\.md$/, '.svg'), plot(samples))
    console.log(`report written to ${values.report} and its plot`)
  }
  process.exit(unexpected === 0 && plateau && exits.every((e) => e === 0) ? 0 : 1)
}

function renderReport (r: { durationMs: number; decisions: Map<string, number>; handlesAtEnd: number[]; exits: Array<number | null>; plateau: boolean; unexpected: number; storeFallback: number[] }): string {
  const rows = (m: Map<string, number>): string => [...m.entries()].sort((a, b) => b[1] - a[1]).map(([k, v]) => `| ${k} | ${v} |`).join('\n')
  const p99 = (xs: number[]): number => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length * 0.99)] ?? 0 }
  return `# Soak report

\`npm run soak -- --duration ${values.duration}${values.report !== undefined ? ` --report ${values.report}` : ''}\`, ${new Date().toISOString()}, ${(r.durationMs / 60000).toFixed(1)} minutes,
on ${process.platform} with ${cpus().length} cores, Node ${process.version}: two gateway processes sharing a private Redis, the fake Core and Edge, the load generator in this process.

**Unexpected errors: ${r.unexpected}.** Memory plateau: ${r.plateau ? 'yes' : 'NO'}. Gateway exit codes after SIGTERM: ${r.exits.join(', ')}.
Open handles at the end (per gateway, before SIGTERM): ${r.handlesAtEnd.join(', ')}. Decisions taken on local state while Redis was broken: ${r.storeFallback.join(', ')}.

## What the clients saw

| kind | requests |
|---|---|
${rows(tally.byKind as Map<string, number>)}

| status | requests |
|---|---|
${rows(tally.byStatus)}

${tally.unexpected.length > 0 ? `Unexpected answers (first ${tally.unexpected.length}):\n\n${tally.unexpected.map((u) => `- ${u}`).join('\n')}\n` : ''}
## What the gateways decided (flaggate_requests_total, both replicas)

| decision | requests |
|---|---|
${rows(r.decisions)}

## Memory and event loop every ${SAMPLE_MS / 1000} s

![RSS and event-loop p99 over time](${values.report !== undefined ? values.report.split('/').pop()!.replace(/\.md$/, '.svg') : 'SOAK.svg'})

| t (s) | RSS MB (gw1/gw2) | heap MB | event-loop p99 ms | handles | requests so far |
|---|---|---|---|---|---|
${samples.map((s) => `| ${s.t.toFixed(0)} | ${s.rssMb.map((x) => x.toFixed(0)).join(' / ')} | ${s.heapMb.map((x) => x.toFixed(0)).join(' / ')} | ${s.elP99Ms.map((x) => x.toFixed(1)).join(' / ')} | ${s.handles.join(' / ')} | ${s.requests} |`).join('\n')}

Event-loop p99 over the run (worst sample): ${Math.max(0, ...samples.flatMap((s) => s.elP99Ms)).toFixed(1)} ms; p99 of the samples: ${p99(samples.flatMap((s) => s.elP99Ms)).toFixed(1)} ms.

## Events

${events.map((e) => `    ${e}`).join('\n')}
`
}

/** A small SVG: RSS of each gateway (left axis) and event-loop p99 (right axis) against time. */
function plot (ss: Sample[]): string {
  const W = 720; const H = 300; const L = 50; const R = 50; const T = 20; const B = 40
  const tMax = Math.max(1, ...ss.map((s) => s.t))
  const rMax = Math.max(50, ...ss.flatMap((s) => s.rssMb)) * 1.1
  const eMax = Math.max(5, ...ss.flatMap((s) => s.elP99Ms)) * 1.1
  const x = (t: number): number => L + (t / tMax) * (W - L - R)
  const yR = (v: number): number => H - B - (v / rMax) * (H - T - B)
  const yE = (v: number): number => H - B - (v / eMax) * (H - T - B)
  const line = (pts: Array<[number, number]>, color: string, dash = ''): string =>
    `<polyline fill="none" stroke="${color}" stroke-width="2"${dash !== '' ? ` stroke-dasharray="${dash}"` : ''} points="${pts.map(([a, b]) => `${a.toFixed(1)},${b.toFixed(1)}`).join(' ')}"/>`
  const series = [0, 1].map((i) => line(ss.map((s) => [x(s.t), yR(s.rssMb[i] ?? 0)]), i === 0 ? '#1f77b4' : '#2ca02c'))
  const loops = [0, 1].map((i) => line(ss.map((s) => [x(s.t), yE(s.elP99Ms[i] ?? 0)]), '#d62728', i === 0 ? '' : '4 3'))
  const ticks = [0, 0.25, 0.5, 0.75, 1].map((f) => `<text x="${x(f * tMax)}" y="${H - B + 16}" font-size="11" text-anchor="middle">${(f * tMax).toFixed(0)} s</text>` +
    `<text x="${L - 6}" y="${yR(f * rMax) + 4}" font-size="11" text-anchor="end">${(f * rMax).toFixed(0)}</text>` +
    `<text x="${W - R + 6}" y="${yE(f * eMax) + 4}" font-size="11">${(f * eMax).toFixed(0)}</text>`).join('')
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif">
<rect width="${W}" height="${H}" fill="white"/>
<line x1="${L}" y1="${H - B}" x2="${W - R}" y2="${H - B}" stroke="#444"/><line x1="${L}" y1="${T}" x2="${L}" y2="${H - B}" stroke="#444"/><line x1="${W - R}" y1="${T}" x2="${W - R}" y2="${H - B}" stroke="#444"/>
${ticks}
${series.join('\n')}
${loops.join('\n')}
<text x="${L}" y="14" font-size="12">RSS MB (blue: gateway 1, green: gateway 2) — event-loop p99 ms (red, right axis; dashed: gateway 2)</text>
</svg>
`
}

main().catch((err: unknown) => { console.error(err); process.exit(1) })
