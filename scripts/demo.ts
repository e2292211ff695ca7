/**
 * `npm run demo [-- --duration 60s] [--json FILE]`: flaggate in front of a fake Flagsmith, under the
 * traffic that has taken Core down before, in a minute, offline, with no Flagsmith account.
 *
 * Starts the fake Core and Edge (test/support/fake-flagsmith.ts, in this process), the gateway
 * (`dist/cli.js serve`, its own process, as in production) and a traffic mix:
 * - polite SDK fleets: local-evaluation servers polling the environment document, browsers polling
 *   flags (each instance from its own address, through X-Forwarded-For from a trusted proxy);
 * - a retry storm like the 2022 Node SDK bug: a timeout of a few milliseconds, retried at once;
 * - a scraper (`BadBot/1.0`, one address, a new random key on every request);
 * - rising database latency, then a database outage, then recovery.
 * Every second it prints what the gateway decided (from its own /metrics, as Prometheus would see
 * it) and Core's load; at the end, a one-screen report. A capability that is not built yet is
 * reported as such, never faked: the policy section it needs fails validation ("not built yet"),
 * or the gateway exports no metric for it.
 */
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { Agent, request } from 'undici'
import { stringify } from 'yaml'
import { Children } from '../bench/support.js'
import { loadPolicy } from '../src/policy/load.js'
import { parseDuration } from '../src/shared/units.js'
import { startFakeCore, startFakeEdge, type FakeCore } from '../test/support/fake-flagsmith.js'

const USAGE = 'usage: npm run demo [-- --duration 60s] [--json FILE]'
function usage (problem: string): never {
  process.stderr.write(`demo: ${problem}\n${USAGE}\n`)
  process.exit(2)
}
let values: { duration: string; json?: string }
try {
  values = parseArgs({ options: { duration: { type: 'string', default: '60s' }, json: { type: 'string' } }, strict: true }).values as typeof values
} catch (e) {
  // node's messages name the option ("Unknown option '--bogus'"); the code and stack are noise here
  usage((e as Error).message.split('\n')[0]!.replace(/\. To specify a positional argument.*$/, '.'))
}
if (values.json !== undefined) {
  // the report is written after the whole run: a path that cannot be written must fail now, not then
  try { writeFileSync(values.json, '', { flag: 'a' }) } catch (e) { usage(`--json ${values.json}: cannot write there (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`) }
}
const parsedDuration = parseDuration(values.duration)
if (parsedDuration === undefined || parsedDuration < 5000) {
  usage(`--duration must be a duration of at least 5s, such as 60s (got ${values.duration})`)
}
const durationMs: number = parsedDuration

const DECISIONS = ['allowed', 'cached', 'stale', 'limited', 'shed', 'blocked'] as const
type Decision = typeof DECISIONS[number]
/** which capability produces each decision; allowed/cached/stale/limited are always there */
const CAPABILITY: Partial<Record<Decision, 'breakers' | 'blocking'>> = { shed: 'breakers', blocked: 'blocking' }

// ---------------------------------------------------------------------------------------------
// The policy: every capability the demo shows. Sections whose capability is not built fail
// validation with "not built yet" and are dropped, and the report says so.
// ---------------------------------------------------------------------------------------------

type PolicyDoc = Record<string, any> // eslint-disable-line @typescript-eslint/no-explicit-any -- a YAML document under construction

function demoPolicy (coreUrl: string, edgeUrl: string): PolicyDoc {
  return {
    server: { listen: '127.0.0.1:0', trustedProxies: ['127.0.0.1/32'], shutdownTimeout: '2s' },
    admin: { listen: '127.0.0.1:0' },
    upstreams: {
      core: { url: coreUrl, timeout: '2s', maxConnections: 64 },
      edge: { url: edgeUrl, timeout: '2s' }
    },
    routes: [
      {
        name: 'environment-document',
        match: { methods: ['GET'], path: '/api/v1/environment-document/' },
        upstream: 'core',
        limit: [{ by: 'environmentKey', rate: '50/s', burst: 100 }, { by: ['environmentKey', 'ip'], rate: '2/s', burst: 10 }],
        cache: { ttl: '2s', staleWhileRevalidate: '1s', staleIfError: '10m' }
      },
      {
        name: 'flags',
        match: { methods: ['GET'], path: '/api/v1/flags/' },
        upstream: 'core',
        edge: { percent: 0, keys: ['prod_client_key'] },
        limit: [{ by: 'environmentKey', rate: '1000/s', burst: 2000 }, { by: ['environmentKey', 'ip'], rate: '20/s', burst: 40 }]
      },
      { name: 'default', match: { pathPrefix: '/' }, upstream: 'core', limit: { by: 'ip', rate: '50/s', burst: 100, shadow: true } }
    ],
    blocklist: [{ userAgent: '^BadBot/', reason: 'scraper (demo)' }],
    abuse: { rejections: '100 per 10s', blockFor: '30s' },
    breakers: {
      core: {
        // a short run must see the breaker act: small windows and few requests needed to decide
        latency: { percentile: 95, above: '300ms', window: '3s', minRequests: 5 },
        errorRate: { above: '50%', window: '3s', minRequests: 5 },
        maxInFlight: 8,
        openFor: '3s',
        halfOpenRequests: 3
      }
    },
    probes: [
      { name: 'flags', path: '/api/v1/flags/', key: 'dev_client_key', interval: '2s' },
      { name: 'environment-document', path: '/api/v1/environment-document/', key: 'ser.dev_server_key', interval: '2s' }
    ]
  }
}

/** Drops every section that validation calls "not built yet"; returns the policy and what was dropped. */
function buildablePolicy (doc: PolicyDoc): { yaml: string; notBuilt: Map<string, string> } {
  const notBuilt = new Map<string, string>()
  for (let attempt = 0; attempt < 8; attempt++) {
    const yaml = stringify(doc)
    const result = loadPolicy('demo.yaml', yaml, {})
    if (result.ok) return { yaml, notBuilt }
    const unbuilt = result.errors.filter((e) => /not built/i.test(e.message))
    if (unbuilt.length === 0) throw new Error(`the demo policy does not validate:\n${result.errors.map((e) => `${e.path}: ${e.message}`).join('\n')}`)
    for (const e of unbuilt) {
      const section = e.path.split(/[.[]/)[0]!
      // inside routes only `edge` can be unbuilt: drop it from every route, never the routes
      if (section === 'routes') {
        for (const r of doc.routes) delete r.edge
        notBuilt.set('edge', e.message)
        continue
      }
      delete doc[section]
      notBuilt.set(section, e.message)
    }
  }
  throw new Error('the demo policy keeps failing validation')
}

// ---------------------------------------------------------------------------------------------
// Traffic
// ---------------------------------------------------------------------------------------------

interface Tally { sent: number; statuses: Map<number, number>; errors: number; upstreams: Map<string, number> }
const newTally = (): Tally => ({ sent: 0, statuses: new Map(), errors: 0, upstreams: new Map() })
const bump = <K>(m: Map<K, number>, k: K): void => { m.set(k, (m.get(k) ?? 0) + 1) }

const sleep = async (ms: number): Promise<void> => await new Promise((resolve) => setTimeout(resolve, ms))

class Traffic {
  readonly agent = new Agent({ connections: 512, keepAliveTimeout: 10_000 })
  stopped = false
  readonly #running: Array<Promise<void>> = []
  constructor (readonly base: string) {}

  async send (tally: Tally, path: string, headers: Record<string, string>, timeoutMs: number): Promise<void> {
    tally.sent++
    try {
      const res = await request(new URL(path, this.base), { dispatcher: this.agent, headers, signal: AbortSignal.timeout(timeoutMs) })
      bump(tally.statuses, res.statusCode)
      bump(tally.upstreams, String(res.headers['x-flaggate-upstream'] ?? 'none'))
      await res.body.dump()
    } catch {
      tally.errors++
    }
  }

  /** `clients` loops, each sending one request and waiting `everyMs` (0: at once) before the next. */
  run (clients: number, everyMs: number, one: (i: number) => Promise<void>): void {
    for (let i = 0; i < clients; i++) {
      this.#running.push((async () => {
        await sleep(Math.random() * Math.max(everyMs, 10)) // not all in lockstep
        while (!this.stopped) {
          const started = Date.now()
          await one(i)
          const wait = everyMs - (Date.now() - started)
          if (wait > 0) await sleep(wait)
        }
      })())
    }
  }

  async stop (): Promise<void> {
    this.stopped = true
    await Promise.all(this.#running)
    await this.agent.close()
  }
}

const randomKey = (): string => Math.random().toString(36).slice(2, 12)

// ---------------------------------------------------------------------------------------------
// Reading the gateway as an operator would: /metrics and /admin/status
// ---------------------------------------------------------------------------------------------

interface Scrape { decisions: Record<string, number>; breaker: number | undefined; blocksActive: number | undefined; text: string }

async function scrape (adminUrl: string): Promise<Scrape> {
  const res = await request(new URL('/metrics', adminUrl))
  const text = await res.body.text()
  const decisions: Record<string, number> = {}
  for (const m of text.matchAll(/^flaggate_requests_total\{([^}]*)\} (\S+)$/gm)) {
    const d = /decision="([^"]+)"/.exec(m[1]!)?.[1] ?? 'unknown'
    decisions[d] = (decisions[d] ?? 0) + Number(m[2])
  }
  const breaker = /^flaggate_breaker_state\{[^}]*upstream="core"[^}]*\} (\S+)$/m.exec(text)?.[1]
  const blocks = [...text.matchAll(/^flaggate_blocks_active(?:\{[^}]*\})? (\S+)$/gm)].reduce((n, m) => n + Number(m[1]), 0)
  return { decisions, breaker: breaker === undefined ? undefined : Number(breaker), blocksActive: blocks, text }
}

const BREAKER_STATES = ['closed', 'half-open', 'open']

// ---------------------------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------------------------

function databasePhase (core: FakeCore, f: number): string {
  if (f < 0.3) { core.db.queryLatencyMs = 1; core.db.failRate = 0; return 'db ok, 1 ms/query' }
  if (f < 0.65) {
    const ms = Math.round(1 + (f - 0.3) / 0.35 * 250)
    core.db.queryLatencyMs = ms
    core.db.failRate = 0
    return `db slowing, ${ms} ms/query`
  }
  if (f < 0.8) { core.db.failRate = 1; return 'db DOWN (every query fails)' }
  core.db.queryLatencyMs = 1
  core.db.failRate = 0
  return 'db recovered, 1 ms/query'
}

const fmt = (n: number): string => n.toLocaleString('en-US')
const pct = (part: number, whole: number): string => whole === 0 ? '-' : `${Math.round(part / whole * 100)}%`
const out = (line = ''): void => { process.stdout.write(line + '\n') }

async function main (): Promise<void> {
  const core = await startFakeCore({ db: { poolSize: 10, queryLatencyMs: 1 } })
  const edge = await startFakeEdge()
  const { yaml, notBuilt } = buildablePolicy(demoPolicy(core.url, edge.url))
  const dir = mkdtempSync(join(tmpdir(), 'flaggate-demo-'))
  const policyFile = join(dir, 'gateway.yaml')
  writeFileSync(policyFile, yaml)

  const children = new Children()
  let url: string
  let adminUrl = ''
  try {
    url = await children.start(['dist/cli.js', 'serve', '--config', policyFile], { LOG_LEVEL: 'info' }, (l) => {
      if (l.msg === 'flaggate serving') { adminUrl = l.admin as string; return l.url as string }
      return undefined
    }) // bench/support waits up to 60 s: a starved CI machine can take many seconds to start a node process
  } catch (err) {
    children.stopAll()
    await core.close(); await edge.close()
    throw new Error(`the gateway did not start (is dist/ built? npm ci builds it): ${(err as Error).message}`)
  }

  const first = await scrape(adminUrl)
  const built = {
    breakers: !notBuilt.has('breakers') && first.breaker !== undefined,
    // the policy has a static block: a gateway that enforces blocks reports it
    blocking: !notBuilt.has('blocklist') && (first.blocksActive ?? 0) > 0,
    probes: !notBuilt.has('probes'),
    edge: !notBuilt.has('edge')
  }
  const missing = (Object.keys(built) as Array<keyof typeof built>).filter((k) => !built[k])

  out(`flaggate demo: ${values.duration} against a fake Flagsmith Core (${core.url}) and Edge; gateway ${url}, admin ${adminUrl}`)
  out('traffic: 20 SDK servers polling the environment document, 40 browsers polling flags, a retry storm (3 clients,')
  out('         20 ms timeout, no backoff), a scraper with random keys; the database slows down, fails, recovers')
  if (missing.length > 0) out(`not built yet: ${missing.join(', ')} (shown as "-")`)
  out()

  const traffic = new Traffic(url)
  const fleet = newTally(); const browsers = newTally(); const edgeBrowsers = newTally(); const storm = newTally(); const scraper = newTally()
  traffic.run(20, 1000, async (i) => { await traffic.send(fleet, '/api/v1/environment-document/', { 'x-environment-key': 'ser.dev_server_key', 'x-forwarded-for': `10.1.0.${i + 1}` }, 5000) })
  traffic.run(30, 1000, async (i) => { await traffic.send(browsers, '/api/v1/flags/', { 'x-environment-key': 'dev_client_key', 'x-forwarded-for': `10.2.${i}.1` }, 5000) })
  traffic.run(10, 1000, async (i) => { await traffic.send(edgeBrowsers, '/api/v1/flags/', { 'x-environment-key': 'prod_client_key', 'x-forwarded-for': `10.3.${i}.1` }, 5000) })
  traffic.run(3, 0, async (i) => { await traffic.send(storm, '/api/v1/environment-document/', { 'x-environment-key': 'ser.prod_server_key', 'x-forwarded-for': `10.4.0.${(i % 2) + 1}` }, 20) })
  traffic.run(1, 50, async () => { await traffic.send(scraper, '/api/v1/flags/', { 'x-environment-key': randomKey(), 'x-forwarded-for': '203.0.113.9', 'user-agent': 'BadBot/1.0' }, 5000) })

  const show = (d: Decision, counts: Record<string, number>): string => {
    const cap = CAPABILITY[d]
    return cap !== undefined && !built[cap] ? '-' : fmt(counts[d] ?? 0)
  }
  const started = Date.now()
  let phase = ''
  let last = await scrape(adminUrl)
  let lastCore = core.counts()
  let lastSent = 0
  out('each second: the decisions are running totals since the start (flaggate_requests_total); "Core N/s" is what reached Core in that second, of what the clients sent in it')
  for (let tick = 1; Date.now() - started < durationMs; tick++) {
    // on the second, whatever the scrape cost; a tick missed on a starved machine is skipped
    const wait = started + tick * 1000 - Date.now()
    if (wait > 0) await sleep(wait); else continue
    const elapsed = Date.now() - started
    phase = databasePhase(core, elapsed / durationMs)
    last = await scrape(adminUrl)
    const sent = fleet.sent + browsers.sent + edgeBrowsers.sent + storm.sent + scraper.sent
    const coreNow = core.counts()
    const counts = last.decisions
    out(`${String(Math.round(elapsed / 1000)).padStart(3)}s  ${phase.padEnd(28)} ` +
      'totals: ' + DECISIONS.map((d) => `${d} ${show(d, counts)}`).join('  ') +
      ` | this second: Core ${coreNow - lastCore}/s of ${sent - lastSent}/s sent` +
      ` | breaker ${built.breakers && last.breaker !== undefined ? BREAKER_STATES[last.breaker] ?? String(last.breaker) : '-'}`)
    lastCore = coreNow
    lastSent = sent
  }

  await traffic.stop()
  const final = await scrape(adminUrl)
  const status = await (await request(new URL('/admin/status', adminUrl))).body.json() as { probes?: Array<{ name: string; ok: boolean | null; status: number | null; latencyMs: number | null; lastError: string | null }> }
  const coreReceived = core.counts()
  const coreQueries = core.dbStats().queries
  const coreFromStorm = core.counts('/api/v1/environment-document/', 'ser.prod_server_key')
  const clientsSent = fleet.sent + browsers.sent + edgeBrowsers.sent + storm.sent + scraper.sent
  const edgeAnswers = edgeBrowsers.upstreams.get('edge') ?? 0
  built.edge = built.edge && edgeAnswers > 0
  children.stopAll()
  await core.close()
  await edge.close()

  const counts = final.decisions
  const ok = (t: Tally): number => [...t.statuses].filter(([s]) => s >= 200 && s < 300).reduce((n, [, c]) => n + c, 0)
  const of = (t: Tally, s: number): number => t.statuses.get(s) ?? 0
  const fiveXx = (t: Tally): number => [...t.statuses].filter(([s]) => s >= 500).reduce((n, [, c]) => n + c, 0)
  const explain: Record<Decision, string> = {
    allowed: 'passed to Core (or Edge)',
    cached: 'environment documents answered from memory',
    stale: 'served from memory while Core was slow or failing',
    limited: '429: the retry storm, above its per-instance limit',
    shed: '503: shed to keep the database alive (breaker, maxInFlight)',
    blocked: '403: the scraper, and the storm once blocked for abuse'
  }
  out()
  out('=== flaggate demo report ===')
  out('What the gateway decided (flaggate_requests_total by decision):')
  for (const d of DECISIONS) {
    const cap = CAPABILITY[d]
    const missingCap = cap !== undefined && !built[cap]
    out(`  ${d.padEnd(8)} ${(missingCap ? '-' : fmt(counts[d] ?? 0)).padStart(9)}   ${missingCap ? `not built yet (${cap})` : explain[d]}`)
  }
  out("Core's load:")
  out(`  without the gateway Core would have received all ${fmt(clientsSent)} requests the clients sent;`)
  out(`  with it, Core received ${fmt(coreReceived)} (${pct(clientsSent - coreReceived, clientsSent)} absorbed) and ran ${fmt(coreQueries)} database queries`)
  out(`  Edge answered ${built.edge ? fmt(edgeAnswers) : '- (edge routing not built yet)'} flag requests of the edge-listed key`)
  out('Clients:')
  out(`  SDK servers (environment document): ${pct(ok(fleet), fleet.sent)} answered 2xx of ${fmt(fleet.sent)}`)
  out(`  browsers (flags):                   ${pct(ok(browsers) + ok(edgeBrowsers), browsers.sent + edgeBrowsers.sent)} answered 2xx of ${fmt(browsers.sent + edgeBrowsers.sent)}, ${fmt(fiveXx(browsers) + fiveXx(edgeBrowsers))} 5xx while the database struggled`)
  out(`  retry storm:                        ${fmt(storm.sent)} requests (${fmt(storm.errors)} gave up after 20 ms), ${fmt(of(storm, 429))} answered 429, ${fmt(of(storm, 403))} 403; Core saw ${fmt(coreFromStorm)} of them`)
  out(`  scraper (random keys):              ${fmt(scraper.sent)} requests, ${built.blocking ? `${pct(of(scraper, 403), scraper.sent)} answered 403 (blocked)` : 'blocking not built yet: each new key reached Core (403 invalid key)'}`)
  if (built.probes) {
    out('Probes (synthetic SDK calls through the gateway):')
    for (const p of status.probes ?? []) out(`  ${p.name.padEnd(22)} ${p.ok === true ? 'ok' : p.ok === false ? `FAILING: ${p.lastError ?? ''}` : 'pending'}${p.latencyMs === null ? '' : `, ${p.latencyMs} ms`}`)
  } else {
    out('Probes: not built yet')
  }
  out(`Breaker: ${built.breakers ? `core ${final.breaker === undefined ? '?' : BREAKER_STATES[final.breaker] ?? String(final.breaker)} at the end` : 'not built yet'}`)

  if (values.json !== undefined) {
    const decisions = Object.fromEntries(DECISIONS.map((d) => {
      const cap = CAPABILITY[d]
      return [d, cap !== undefined && !built[cap] ? null : counts[d] ?? 0]
    }))
    writeFileSync(values.json, JSON.stringify({
      durationMs,
      built,
      notBuilt: Object.fromEntries(notBuilt),
      decisions,
      core: { received: coreReceived, queries: coreQueries, fromStorm: coreFromStorm },
      clientsSent,
      clients: Object.fromEntries(Object.entries({ fleet, browsers, edgeBrowsers, storm, scraper }).map(([k, t]) => [k, { sent: t.sent, errors: t.errors, statuses: Object.fromEntries(t.statuses) }])),
      probes: status.probes ?? []
    }, null, 2) + '\n')
  }
}

await main()
// keep-alive sockets of undici's global agent would hold the process a few seconds more
process.exit(0)
