/**
 * The soak: two gateway processes sharing a private Redis in front of the fake Core and Edge, fed
 * mixed traffic for a long time while Redis and Core are broken on a schedule and operators block,
 * purge and reload. It reports what the clients saw (every answer classified as expected or not),
 * and what the gateways did with their memory, event loop and handles, every 10 s.
 *
 *   npm run soak -- --duration 10m [--report test/chaos/SOAK.md]
 *
 * Expected answers, judged per simulated client (`Who`): the statuses Core gives that client (200/304
 * for SDKs and browsers, 403 for unknown keys); 429 only for the storm and the SDKs sharing its key;
 * 403 FLAGGATE_BLOCKED only for those, the scraper (always) and the drill key on identities while
 * the drill's block is in force; 503 FLAGGATE_UPSTREAM_OVERLOADED (shown second by second when Core
 * is healthy); 5xx from Core and 502/504 only while Core is being broken on purpose. Every answer
 * must also keep the wire contract (X-Flaggate-Upstream, the JSON body, Retry-After, RateLimit
 * headers). Anything else (a 500, a connection error, a client timeout, a 502 with Core healthy, a
 * reload not applied, a block that does not reach the other replica, an admin call refused, replicas
 * that disagree on their blocks at the end) is an unexpected error.
 * The run exits 1 when there was one, when memory did not plateau, when a gateway holds more
 * handles after the traffic than before it, or when a gateway does not exit 0 on SIGTERM.
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
  trustedProxies: [127.0.0.1/32]   # the load generator says which client it plays in X-Forwarded-For
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

const KINDS = ['ok', 'limited', 'blocked', 'shed', 'upstream-error-during-fault', 'unexpected'] as const
type Kind = typeof KINDS[number]

/**
 * Who sent a request: the statuses Core answers that client when all is well, and when it may be
 * refused. A 429 or 403 to a client that should never see one (a browser's flags, an SDK instance
 * on a key nobody storms), or a 4xx Core would not have given it, is unexpected.
 */
interface Who { name: string; ok: number[]; mayBeLimited: () => boolean; mayBeBlocked: () => boolean; staticBlock?: boolean }
const never = (): boolean => false
const always = (): boolean => true

interface Tally {
  byStatus: Map<string, number>
  byKind: Map<Kind, number>
  byWho: Map<string, Map<Kind, number>>
  statusByWho: Map<string, Map<string, number>>
  unexpected: string[]
  shedHealthy: Map<number, number>
}
const tally: Tally = { byStatus: new Map(), byKind: new Map(), byWho: new Map(), statusByWho: new Map(), unexpected: [], shedHealthy: new Map() }
let coreFault = false
/** Redis is stopped or down; `redisBackAt`: when it last answered again */
let redisFault = false
let redisBackAt = 0
let started = Date.now()
const at = (): string => `${((Date.now() - started) / 1000).toFixed(1).padStart(6)} s`
const bump = <K>(m: Map<K, number>, k: K): void => { m.set(k, (m.get(k) ?? 0) + 1) }

function unexpected (what: string): void {
  bump(tally.byKind, 'unexpected')
  if (tally.unexpected.length < 50) tally.unexpected.push(`${at()} ${what}`)
}

function classify (who: Who, status: number, code: string | undefined): Kind {
  if (code === undefined) {
    // Core's own answer, passed through
    if (who.ok.includes(status)) return 'ok'
    if (status >= 500 && coreFault) return 'upstream-error-during-fault'
    return 'unexpected'
  }
  if (status === 429 && code === 'FLAGGATE_RATE_LIMITED') return who.mayBeLimited() ? 'limited' : 'unexpected'
  if (status === 403 && code === 'FLAGGATE_BLOCKED') return who.mayBeBlocked() ? 'blocked' : 'unexpected'
  if (status === 503 && code === 'FLAGGATE_UPSTREAM_OVERLOADED') return 'shed'
  if ((status === 502 && code === 'FLAGGATE_UPSTREAM_UNREACHABLE') || (status === 504 && code === 'FLAGGATE_UPSTREAM_TIMEOUT')) return coreFault ? 'upstream-error-during-fault' : 'unexpected'
  return 'unexpected'
}

function count (who: Who, status: number, code: string | undefined, what: string, broken: string[]): void {
  const label = code === undefined ? String(status) : `${status} ${code}`
  bump(tally.byStatus, label)
  let s = tally.statusByWho.get(who.name)
  if (s === undefined) tally.statusByWho.set(who.name, s = new Map())
  bump(s, label)
  const kind = broken.length > 0 ? 'unexpected' : classify(who, status, code)
  let w = tally.byWho.get(who.name)
  if (w === undefined) tally.byWho.set(who.name, w = new Map())
  bump(w, kind)
  if (kind === 'unexpected') { unexpected(`${who.name}: ${what}: ${label}${broken.length > 0 ? ` breaks the contract: ${broken.join('; ')}` : ''}`); return }
  bump(tally.byKind, kind)
  // shedding while Core is healthy is the adaptive limit measuring minRTT (docs/design.md, "maxInFlight: auto"):
  // expected, but shown second by second so that shedding at any other time stands out
  if (kind === 'shed' && !coreFault) bump(tally.shedHealthy, Math.floor((Date.now() - started) / 1000))
}

const agent = new Agent({ connections: 256, keepAliveTimeout: 4000 })
/** admin calls and scrapes: their own connections, so closing the traffic's leaves them working */
const control = new Agent({ connections: 8 })

interface Answer { status: number; headers: Record<string, string | string[] | undefined> }

const header = (a: Answer, name: string): string | undefined => { const v = a.headers[name]; return Array.isArray(v) ? v.join(', ') : v }
const wholeSeconds = (v: string | undefined): boolean => v !== undefined && /^[1-9]\d*$/.test(v)

/** What the gateway promises on the wire; a breach is an unexpected error whatever the status. */
function breaches (who: Who, a: Answer, code: string | undefined, text: string): string[] {
  const out: string[] = []
  if (!['core', 'edge', 'none'].includes(header(a, 'x-flaggate-upstream') ?? '')) out.push(`X-Flaggate-Upstream ${String(header(a, 'x-flaggate-upstream'))}`)
  if (code === undefined) return out
  if (!(header(a, 'content-type') ?? '').startsWith('application/json')) out.push(`Content-Type ${String(header(a, 'content-type'))}`)
  try {
    const b = JSON.parse(text) as Record<string, unknown>
    if (b.statusCode !== a.status || typeof b.error !== 'string' || typeof b.message !== 'string') out.push(`body ${text.slice(0, 120)}`)
  } catch { out.push(`body is not JSON: ${text.slice(0, 80)}`) }
  const retryAfter = header(a, 'retry-after')
  if (code === 'FLAGGATE_RATE_LIMITED') {
    if (!wholeSeconds(retryAfter)) out.push(`Retry-After ${String(retryAfter)} on 429`)
    if (header(a, 'ratelimit-policy') === undefined || header(a, 'ratelimit') === undefined) out.push('429 without RateLimit-Policy and RateLimit')
  }
  if (code === 'FLAGGATE_UPSTREAM_OVERLOADED' && !wholeSeconds(retryAfter)) out.push(`Retry-After ${String(retryAfter)} on 503`)
  if (code === 'FLAGGATE_BLOCKED') {
    // static blocks have no end; runtime and automatic ones here all have a ttl
    if (who.staticBlock === true ? retryAfter !== undefined : !wholeSeconds(retryAfter)) out.push(`Retry-After ${String(retryAfter)} on 403`)
  }
  return out
}

async function hit (who: Who, base: string, path: string, headers: Record<string, string>, method: 'GET' | 'POST' = 'GET', body?: string): Promise<Answer | undefined> {
  try {
    const r = await request(base + path, { method, headers, body, dispatcher: agent, headersTimeout: 10_000, bodyTimeout: 10_000 })
    const text = await r.body.text()
    const a: Answer = { status: r.statusCode, headers: r.headers }
    let code: string | undefined
    if (r.statusCode >= 400 && text.startsWith('{"statusCode"')) {
      try { code = (JSON.parse(text) as { code?: string }).code } catch {}
    }
    count(who, r.statusCode, code, `${method} ${path}`, breaches(who, a, code, text))
    return a
  } catch (err) {
    unexpected(`${who.name}: ${method} ${path}: ${String(err)}`)
    return undefined
  }
}

// ---------------------------------------------------------------------------------------------
// Traffic
// ---------------------------------------------------------------------------------------------

interface Loop { stop (): Promise<void> }

/**
 * Runs `fn` every `ms` until stopped. `stop()` cuts the pause short (a fault every 40 s must not
 * hold the end of the run for 40 s) but lets a call in progress finish, so a fault always ends
 * with Redis continued and Core healthy again.
 */
function every (ms: number, fn: () => Promise<void>): Loop {
  let running = true
  let wake: (() => void) | undefined
  const done = (async () => {
    while (running) {
      const t = Date.now()
      await fn().catch((err: unknown) => { console.error(err) })
      if (!running) break
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.max(1, ms - (Date.now() - t)))
        wake = () => { clearTimeout(timer); resolve() }
      })
      wake = undefined
    }
  })()
  return { async stop () { running = false; wake?.(); await done } }
}

const STORM_KEY = 'ser.prod_server_key_2'
const DRILL_KEY = 'dev_client_key'
const DRILL_TTL_MS = 5000
/** When the on-call drill's block of DRILL_KEY on identities may be in force (set by the operators). */
const drill = { from: Infinity, until: -Infinity }

function traffic (gws: SpawnedGateway[], env: ReturnType<typeof defaultEnvironments>): Loop[] {
  const pick = <T>(xs: T[]): T => xs[Math.floor(Math.random() * xs.length)]!
  const serverKeys = env.flatMap((e) => e.serverKeys)
  const clientKeys = env.map((e) => e.clientKey)
  const loops: Loop[] = []
  // server-side SDK fleet: one instance per address, an environment document every second, with
  // If-None-Match once it has one. Instances on the storm's key share its per-key bucket and may
  // share its automatic block (when the limit that refuses the storm counts the key alone).
  const sdk: Who = { name: 'sdk', ok: [200, 304], mayBeLimited: never, mayBeBlocked: never }
  const sdkOnStormKey: Who = { name: 'sdk on the storm key', ok: [200, 304], mayBeLimited: always, mayBeBlocked: always }
  for (let i = 0; i < 20; i++) {
    const etags = new Map<string, string>()
    loops.push(every(1000, async () => {
      const key = pick(serverKeys)
      const etag = etags.get(key)
      const a = await hit(key === STORM_KEY ? sdkOnStormKey : sdk, pick(gws).url, '/api/v1/environment-document/', { 'x-environment-key': key, 'x-forwarded-for': `10.1.0.${i}`, ...(etag !== undefined ? { 'if-none-match': etag } : {}) })
      if (a?.status === 200 && typeof a.headers.etag === 'string') etags.set(key, a.headers.etag)
    }))
  }
  // browsers and phones: flags and identities with client keys, each from its own address. The
  // on-call drill blocks DRILL_KEY on identities for a few seconds every 15 s.
  const flags: Who = { name: 'browser flags', ok: [200], mayBeLimited: never, mayBeBlocked: never }
  const identities: Who = { name: 'browser identities', ok: [200], mayBeLimited: never, mayBeBlocked: never }
  const drilled: Who = { name: 'browser identities (drill key)', ok: [200], mayBeLimited: never, mayBeBlocked: () => Date.now() >= drill.from && Date.now() <= drill.until }
  for (let i = 0; i < 20; i++) {
    const ip = `10.2.0.${i}`
    loops.push(every(200, async () => {
      const key = pick(clientKeys)
      const who = key === DRILL_KEY ? drilled : identities
      if (Math.random() < 0.7) await hit(flags, pick(gws).url, '/api/v1/flags/', { 'x-environment-key': key, 'x-forwarded-for': ip })
      else if (Math.random() < 0.8) await hit(who, pick(gws).url, `/api/v1/identities/?identifier=user-${Math.floor(Math.random() * 1000)}`, { 'x-environment-key': key, 'x-forwarded-for': ip })
      else await hit(who, pick(gws).url, '/api/v1/identities/', { 'x-environment-key': key, 'x-forwarded-for': ip, 'content-type': 'application/json' }, 'POST', JSON.stringify({ identifier: `user-${i}`, traits: [{ trait_key: 'plan', trait_value: 'pro' }] }))
    }))
  }
  // the 2022 storm: one server key from one address, environment documents with no pause
  // (limited, then blocked automatically)
  const storm: Who = { name: 'storm', ok: [200, 304], mayBeLimited: always, mayBeBlocked: always }
  for (let i = 0; i < 3; i++) loops.push(every(2, async () => { await hit(storm, gws[0]!.url, '/api/v1/environment-document/', { 'x-environment-key': STORM_KEY, 'x-forwarded-for': '10.9.9.9' }) }))
  // a scraper the static User-Agent block must always catch (any answer from Core is unexpected),
  // and random keys Core answers 403
  const scraper: Who = { name: 'scraper', ok: [], mayBeLimited: never, mayBeBlocked: always, staticBlock: true }
  loops.push(every(100, async () => { await hit(scraper, pick(gws).url, '/api/v1/flags/', { 'x-environment-key': DRILL_KEY, 'user-agent': 'ScraperBot/1.0', 'x-forwarded-for': '10.3.0.1' }) }))
  const stranger: Who = { name: 'random keys', ok: [403], mayBeLimited: never, mayBeBlocked: never }
  loops.push(every(250, async () => { await hit(stranger, pick(gws).url, '/api/v1/flags/', { 'x-environment-key': `random-${Math.random().toString(36).slice(2)}`, 'x-forwarded-for': '10.4.0.1' }) }))
  return loops
}

/** An operator's call to the admin API; an answer other than `expect` (or no answer) is an unexpected error. */
async function admin (gw: SpawnedGateway, method: 'GET' | 'POST' | 'DELETE', path: string, expect: number, body?: unknown): Promise<{ status: number; body: unknown }> {
  try {
    const r = await request(gw.adminUrl + path, {
      method,
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      body: body === undefined ? undefined : JSON.stringify(body),
      dispatcher: control,
      headersTimeout: 10_000,
      bodyTimeout: 10_000
    })
    const text = await r.body.text()
    if (r.statusCode !== expect) unexpected(`admin ${method} ${path}: ${r.statusCode} ${text.slice(0, 200)}`)
    let parsed: unknown
    try { parsed = text === '' ? undefined : JSON.parse(text) } catch {}
    return { status: r.statusCode, body: parsed }
  } catch (err) {
    unexpected(`admin ${method} ${path}: ${String(err)}`)
    return { status: 0, body: undefined }
  }
}

// ---------------------------------------------------------------------------------------------
// Faults, operators and samples
// ---------------------------------------------------------------------------------------------

interface Sample {
  t: number
  rssMb: number[]
  heapMb: number[]
  elP99Ms: number[]
  handles: number[]
  /** Core's breaker (closed, half-open, open) and concurrency limit on each gateway */
  breaker: string[]
  requests: number
  kinds: Map<Kind, number>
}
const BREAKER_STATES = ['closed', 'half-open', 'open']
/** Faults as they ran (seconds into the run), shaded in the plot; names in the order of `faults` */
const faultSpans: Array<{ from: number; to: number; name: string }> = []
const FAULT_NAMES = ['Redis stopped', 'Core slow', 'Redis restarted', 'Core down', 'Core errors']
const samples: Sample[] = []
const events: string[] = []

function rssMb (pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return m === null ? 0 : Number(m[1]) / 1024
}

async function scrape (gw: SpawnedGateway): Promise<Map<string, number>> {
  const r = await request(gw.adminUrl + '/metrics', { dispatcher: control })
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

interface LogTally { count: number; firstAt: string; example: string }
/** Warnings and errors the gateways logged, by gateway, level and message (access-log lines are only counted). */
const gatewayLogs = new Map<string, LogTally>()
const logLines = [0, 0]

/**
 * spawnGateway keeps every log line; at 1000+ requests a second that would grow without bound in
 * this process, so the lines are read and dropped at every sample.
 */
function drainLogs (gws: SpawnedGateway[]): void {
  gws.forEach((g, i) => {
    logLines[i]! += g.logs.length
    for (const line of g.logs) {
      const level = typeof line.level === 'number' ? line.level : 30
      if (level < 40) continue
      const err = (line.err as { message?: string } | undefined)?.message
      const key = `gateway ${i + 1} ${level >= 50 ? 'error' : 'warn'}: ${String(line.msg)}`
      const t = gatewayLogs.get(key)
      const when = typeof line.time === 'number' ? `${((line.time - started) / 1000).toFixed(1)} s` : at()
      if (t === undefined) gatewayLogs.set(key, { count: 1, firstAt: when, example: err ?? '' })
      else t.count++
    }
    g.logs.length = 0
  })
}

async function until (cond: () => Promise<boolean>, timeoutMs: number, pollMs = 100): Promise<boolean> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (await cond().catch(() => false)) return true
    await sleep(pollMs)
  }
  return false
}

interface PolicyState { version: string; lastError: unknown }
async function policyState (gw: SpawnedGateway): Promise<PolicyState> {
  const r = await request(gw.adminUrl + '/admin/status', { headers: { authorization: `Bearer ${ADMIN_TOKEN}` }, dispatcher: control })
  const body = await r.body.json() as { policy: PolicyState }
  return body.policy
}

/**
 * How long until a request of DRILL_KEY on identities is refused by `gw`. The contract: within one second
 * on every replica. Redis is the only way there, so a block made while Redis is away is in force on
 * the others once Redis answers again (docs/design.md, "Blocking"): allow its reconnect and heartbeat too. A
 * block whose ttl ends first may never travel, and need not.
 */
async function blockReaches (gw: SpawnedGateway, expiresAt: number): Promise<string> {
  const t = Date.now()
  // A blocked request is answered at once by the gateway; one that is not goes on to Core, which
  // may be slow on purpose (a latency fault): give up on it after 250 ms and ask again, so a slow
  // Core cannot hide a block that is already in force.
  const refused = async (): Promise<boolean> => {
    const r = await request(gw.url + '/api/v1/identities/?identifier=on-call', { headers: { 'x-environment-key': DRILL_KEY, 'x-forwarded-for': '10.5.0.1' }, dispatcher: control, signal: AbortSignal.timeout(250) })
    await r.body.text()
    return r.statusCode === 403
  }
  let faulted = redisFault
  while (true) {
    if (await refused().catch(() => false)) break
    faulted ||= redisFault
    const deadline = faulted ? (redisFault ? Infinity : redisBackAt + REDIS_BACK_MS) : t + 1000
    if (Date.now() > deadline || Date.now() >= expiresAt) {
      if (deadline >= expiresAt) return `never: its ttl ended ${Date.now() - t} ms after it was made, before Redis could carry it`
      unexpected(`block: not in force on the other replica after ${Date.now() - t} ms${faulted ? ` (${REDIS_BACK_MS} ms after Redis answered again)` : ''}`)
      return 'NEVER'
    }
    await sleep(50)
  }
  return `${Date.now() - t} ms${faulted ? ', Redis was away' : ''}`
}
/** Redis answering again → its clients reconnected (backoff ≤ 2 s), a heartbeat (1 s), a sync retry */
const REDIS_BACK_MS = 5000

/** Once traffic has stopped, both replicas hold the same runtime and automatic blocks. */
async function blocksAgree (gws: SpawnedGateway[]): Promise<string> {
  const lasting = async (g: SpawnedGateway): Promise<string> => {
    const r = await request(g.adminUrl + '/admin/blocks', { headers: { authorization: `Bearer ${ADMIN_TOKEN}` }, dispatcher: control })
    const list = await r.body.json() as Array<{ id: string; expiresAt?: string }>
    return list.filter((b) => b.expiresAt === undefined || Date.parse(b.expiresAt) > Date.now() + 3000).map((b) => b.id).sort().join(' ')
  }
  let seen: string[] = []
  const agree = await until(async () => { seen = await Promise.all(gws.map(lasting)); return seen.every((x) => x === seen[0]) }, 3000)
  if (!agree) unexpected(`blocks: the replicas disagree after traffic stopped: ${seen.map((x, i) => `gateway ${i + 1} [${x}]`).join(', ')}`)
  return agree ? `agree (${seen[0]!.split(' ').filter((x) => x !== '').length} lasting)` : 'DISAGREE'
}

async function main (): Promise<void> {
  started = Date.now()
  let redis: PrivateRedis = await startPrivateRedis()
  const core: FakeCore = await startFakeCore({ db: { queryLatencyMs: 2, poolSize: 10 } })
  const edge: FakeEdge = await startFakeEdge()
  const prefix = `soak-${process.pid}:`
  let variant = 0
  const gws = [
    await spawnGateway(policy(core.url, edge.url, redis.url, prefix, variant)),
    await spawnGateway(policy(core.url, edge.url, redis.url, prefix, variant))
  ]
  const say = (s: string): void => { const line = `${at()}  ${s}`; events.push(line); console.log(line) }
  say(`gateways ${gws.map((g) => g.url).join(' ')}; Redis ${redis.url}; Core ${core.url}; Edge ${edge.url}`)
  const handlesIdle = (await Promise.all(gws.map(scrape))).map((m) => m.get('flaggate_nodejs_active_handles_total') ?? 0)

  const loops = traffic(gws, defaultEnvironments())

  // operators, every 15 s: a reload on both replicas (every third turn preceded by an invalid file
  // on one of them, which must change nothing), a block through one replica, the previous turn's
  // block lifted through the other, and a purge of everything
  let invalidReloads = 0
  let validReloads = 0
  let liftable: string | undefined
  const operators = every(15_000, async () => {
    variant++
    const a = gws[variant % 2]!
    const b = gws[(variant + 1) % 2]!
    const ai = variant % 2 + 1
    if (variant % 3 === 0) {
      const before = await policyState(a)
      writeFileSync(a.file, 'routes: [ this is not valid')
      invalidReloads++
      const seen = await until(async () => (await policyState(a)).lastError !== null, 3000)
      const after = await policyState(a)
      if (!seen) unexpected(`reload: gateway ${ai} did not report the invalid policy within 3 s`)
      if (after.version !== before.version) unexpected(`reload: gateway ${ai} changed policy version on an invalid file (${before.version} → ${after.version})`)
      say(`reload: invalid policy written on gateway ${ai} → ${seen ? 'rejected, old policy kept' : 'NOT reported'}`)
    }
    const versions = await Promise.all(gws.map(async (g) => (await policyState(g)).version))
    for (const g of gws) writeFileSync(g.file, policy(core.url, edge.url, redis.url, prefix, variant))
    validReloads += gws.length
    const applied = await Promise.all(gws.map(async (g, i) => await until(async () => {
      const st = await policyState(g)
      return st.version !== versions[i] && st.lastError === null
    }, 3000)))
    applied.forEach((ok, i) => { if (!ok) unexpected(`reload: gateway ${i + 1} did not apply variant ${variant} within 3 s`) })
    drill.from = Date.now()
    drill.until = Infinity
    const blocked = await admin(a, 'POST', '/admin/blocks', 201, { key: DRILL_KEY, routes: ['identities'], ttl: `${DRILL_TTL_MS / 1000}s`, reason: 'soak: on-call drill' })
    // in force until its ttl is over; a replica learns the expiry with the block, but give it a second
    drill.until = Date.now() + DRILL_TTL_MS + 1000
    const expiresAt = Date.parse(String((blocked.body as { expiresAt?: string } | undefined)?.expiresAt))
    const reached = blocked.status === 201 ? await blockReaches(b, Number.isNaN(expiresAt) ? Infinity : expiresAt) : 'not made'
    let lifted = '-'
    if (liftable !== undefined) lifted = String((await admin(b, 'DELETE', `/admin/blocks/${liftable}`, 204)).status)
    liftable = ((await admin(a, 'POST', '/admin/blocks', 201, { ip: '198.51.100.0/24', reason: 'soak: block to lift next turn' })).body as { id?: string } | undefined)?.id
    const purged = await admin(b, 'POST', '/admin/cache/purge', 200, {})
    say(`operators: reload to variant ${variant} → ${applied.map((ok) => ok ? 'applied' : 'NOT applied').join('/')}, block on gateway ${ai} → ${blocked.status} (in force on the other after ${reached}), previous block lifted on the other → ${lifted}, purge → ${purged.status} ${JSON.stringify(purged.body)}`)
  })

  // faults, in turn: every 40 s, or closer together in a short run so that each runs at least once
  const faults = [
    async () => {
      say('fault: Redis SIGSTOP for 5 s')
      redisFault = true
      process.kill(redis.pid, 'SIGSTOP')
      await sleep(5000)
      process.kill(redis.pid, 'SIGCONT')
      redisFault = false
      redisBackAt = Date.now()
      say('fault over: Redis continued')
    },
    async () => {
      // 11 queries of 800 ms for a document: timeouts (504) and an open breaker are the expected answers
      say('fault: Core database latency 800 ms for 10 s')
      coreFault = true
      core.db.queryLatencyMs = 800
      await sleep(10_000)
      core.db.queryLatencyMs = 2
      await sleep(3000) // requests admitted during the fault finish within the 2 s upstream timeout
      coreFault = false
      say('fault over: Core fast again')
    },
    async () => {
      say('fault: Redis killed, restarted empty after 5 s')
      const port = redis.port
      redisFault = true
      await redis.stop()
      await sleep(5000)
      redis = await startPrivateRedis(port)
      redisFault = false
      redisBackAt = Date.now()
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
  const FIRST_FAULT_MS = 20_000
  const FAULT_EVERY_MS = Math.min(40_000, Math.max(15_000, (DURATION_MS - FIRST_FAULT_MS - 15_000) / faults.length))
  let f = 0
  const faulting = every(1000, async () => {
    if (Date.now() - started < FIRST_FAULT_MS + f * FAULT_EVERY_MS) return
    const from = (Date.now() - started) / 1000
    const name = FAULT_NAMES[f % faults.length]!
    await faults[f++ % faults.length]!()
    faultSpans.push({ from, to: (Date.now() - started) / 1000, name })
  })

  let previous = new Map<Kind, number>()
  const takeSample = async (): Promise<void> => {
    drainLogs(gws)
    let ms: Array<Map<string, number>>
    try { ms = await Promise.all(gws.map(scrape)) } catch (err) { unexpected(`GET /metrics: ${String(err)}`); return }
    const s: Sample = {
      t: (Date.now() - started) / 1000,
      rssMb: gws.map((g) => rssMb(g.process.pid!)),
      heapMb: ms.map((m) => (m.get('flaggate_nodejs_heap_size_used_bytes') ?? 0) / 1048576),
      elP99Ms: ms.map((m) => (m.get('flaggate_nodejs_eventloop_lag_p99_seconds') ?? 0) * 1000),
      handles: ms.map((m) => m.get('flaggate_nodejs_active_handles_total') ?? 0),
      breaker: ms.map((m) => `${BREAKER_STATES[m.get('flaggate_breaker_state{upstream="core"}') ?? -1] ?? '?'} ${m.get('flaggate_upstream_concurrency_limit{upstream="core"}') ?? '-'}`),
      requests: [...tally.byStatus.values()].reduce((a, b) => a + b, 0) + (tally.byKind.get('unexpected') ?? 0),
      kinds: new Map([...tally.byKind].map(([k, v]) => [k, v - (previous.get(k) ?? 0)]))
    }
    previous = new Map(tally.byKind)
    samples.push(s)
    console.log(`${at()}  rss ${s.rssMb.map((x) => x.toFixed(0)).join('/')} MB  heap ${s.heapMb.map((x) => x.toFixed(0)).join('/')} MB  loop p99 ${s.elP99Ms.map((x) => x.toFixed(1)).join('/')} ms  handles ${s.handles.join('/')}  core ${s.breaker.join('/')}  requests ${s.requests}  ${kindsText(s.kinds)}`)
  }
  const sampling = every(SAMPLE_MS, takeSample)

  await sleep(DURATION_MS)
  await sampling.stop()
  // the end of the run, with traffic still on (unless a sample was just taken)
  if (Date.now() - started - (samples.at(-1)?.t ?? 0) * 1000 > SAMPLE_MS / 2) await takeSample()
  await Promise.all([...loops, operators, faulting].map((l) => l.stop()))
  say('traffic stopped')
  // the load generator's keep-alive connections are handles in the gateways too: close them, then
  // give the gateways' upstream pools time to let their idle connections go
  await agent.close()
  const handlesAtEnd = await settleHandles(gws, handlesIdle)
  const blocks = await blocksAgree(gws)
  const finalMetrics = await Promise.all(gws.map(scrape))
  drainLogs(gws)
  const decisions = new Map<string, number>()
  const reloads = new Map<string, number>()
  for (const m of finalMetrics) {
    for (const [k, v] of m) {
      const d = /^flaggate_requests_total\{.*decision="([^"]+)"/.exec(k)?.[1]
      if (d !== undefined) decisions.set(d, (decisions.get(d) ?? 0) + v)
      const r = /^flaggate_policy_reloads_total\{.*result="([^"]+)"/.exec(k)?.[1]
      if (r !== undefined) reloads.set(r, (reloads.get(r) ?? 0) + v)
    }
  }
  const exits = await Promise.all(gws.map((g) => g.stop('SIGTERM')))
  await core.close(); await edge.close(); await redis.stop(); await control.close()

  const plateau = plateauOf(samples)
  // handles: once traffic has stopped, each gateway is back near what it held idle at the start
  const handlesOk = handlesAtEnd.every((h, i) => h <= handlesIdle[i]! + HANDLES_SLACK)
  const unexpectedCount = tally.byKind.get('unexpected') ?? 0

  const report = renderReport(gws, { durationMs: Date.now() - started, blocks, decisions, reloads, validReloads, invalidReloads, handlesIdle, handlesAtEnd, handlesOk, exits, plateau, unexpected: unexpectedCount, storeFallback: finalMetrics.map((m) => sumOf(m, 'flaggate_store_fallback_total')) })
  console.log('\n' + report)
  if (values.report !== undefined) {
    writeFileSync(values.report, report)
    writeFileSync(values.report.replace(/\.md$/, '') + '.svg', plot(samples))
    console.log(`report written to ${values.report} and its plot`)
  }
  process.exit(unexpectedCount === 0 && plateau.ok !== false && handlesOk && exits.every((e) => e === 0) ? 0 : 1)
}

/**
 * Plateau, per gateway, middle third of the run against the last third (each may grow by 10 % + 5 MB):
 * - heap: the floor (lowest sample). Heap used is a sawtooth whose teeth are V8's major collections,
 *   a minute or more apart under this load (85 → 34 MB in one interval has been seen), so a peak
 *   only says when the last collection ran; a leak is memory no collection gives back, and lifts
 *   the floor;
 * - RSS: the median. RSS follows the heap's teeth only partly and climbs for the first minute or
 *   two while pools, caches and JIT warm up; a floor would judge that warm-up, a peak the teeth.
 */
function plateauOf (ss: Sample[]): { ok: boolean | undefined; text: string } {
  if (ss.length < 6) return { ok: undefined, text: 'not judged (fewer than 6 samples)' }
  const third = Math.floor(ss.length / 3)
  const mid = ss.slice(third, 2 * third)
  const last = ss.slice(2 * third)
  const floor = (xs: number[]): number => Math.min(...xs)
  const median = (xs: number[]): number => { const s = [...xs].sort((a, b) => a - b); return s.length % 2 === 1 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2 }
  const peak = (xs: number[]): number => Math.max(...xs)
  let ok = true
  const parts: string[] = []
  for (let i = 0; i < (ss[0]?.rssMb.length ?? 0); i++) {
    const judged = [
      ['RSS median', median, (s: Sample) => s.rssMb[i]!],
      ['heap floor', floor, (s: Sample) => s.heapMb[i]!]
    ] as const
    for (const [what, stat, f] of judged) {
      const a = stat(mid.map(f)); const b = stat(last.map(f))
      const good = b <= a * 1.1 + 5
      ok &&= good
      parts.push(`gateway ${i + 1} ${what} ${a.toFixed(0)} → ${b.toFixed(0)} MB${good ? '' : ' (GREW)'} (peak ${peak(mid.map(f)).toFixed(0)} → ${peak(last.map(f)).toFixed(0)})`)
    }
  }
  return { ok, text: `${ok ? 'yes' : 'NO'}; middle third → last third: ${parts.join('; ')}` }
}

/** Handles a gateway may hold at the end beyond its idle count at the start (timers, a probe in flight). */
const HANDLES_SLACK = 10

async function settleHandles (gws: SpawnedGateway[], idle: number[]): Promise<number[]> {
  let last: number[] = []
  const deadline = Date.now() + 15_000
  do {
    await sleep(1000)
    last = (await Promise.all(gws.map(scrape))).map((m) => m.get('flaggate_nodejs_active_handles_total') ?? NaN)
  } while (Date.now() < deadline && !last.every((h, i) => h <= idle[i]!))
  return last
}

function kindsText (kinds: Map<Kind, number>): string {
  return [...kinds].filter(([, v]) => v > 0).map(([k, v]) => `${k} ${v}`).join(', ')
}

function renderReport (gws: SpawnedGateway[], r: { durationMs: number; blocks: string; decisions: Map<string, number>; reloads: Map<string, number>; validReloads: number; invalidReloads: number; handlesIdle: number[]; handlesAtEnd: number[]; handlesOk: boolean; exits: Array<number | null>; plateau: { text: string }; unexpected: number; storeFallback: number[] }): string {
  const rows = (m: Map<string, number>): string => [...m.entries()].sort((a, b) => b[1] - a[1]).map(([k, v]) => `| ${k} | ${v} |`).join('\n')
  const p99 = (xs: number[]): number => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length * 0.99)] ?? 0 }
  const svg = (values.report !== undefined ? values.report.split('/').pop()!.replace(/\.md$/, '') : 'SOAK') + '.svg'
  const rss = (s: Sample | undefined): string => s === undefined ? '-' : s.rssMb.map((x) => x.toFixed(0)).join(' / ')
  const logs = [...gatewayLogs].sort((a, b) => b[1].count - a[1].count)
  return `# Soak report

\`npm run soak -- --duration ${values.duration}${values.report !== undefined ? ` --report ${values.report}` : ''}\`, ${new Date().toISOString()}, ${(r.durationMs / 60000).toFixed(1)} minutes,
on ${process.platform} with ${cpus().length} cores, Node ${process.version}: two gateway processes sharing a private Redis, the fake Core and Edge, the load generator in this process.

- **Unexpected errors: ${r.unexpected}.**
- Memory plateau (median RSS and lowest heap of the last third at most 10 % + 5 MB over the middle third's): ${r.plateau.text}. RSS first / last sample: ${rss(samples[0])} MB → ${rss(samples.at(-1))} MB.
- Open handles per gateway: ${r.handlesIdle.join(', ')} idle at the start, ${r.handlesAtEnd.join(', ')} once traffic had stopped (${r.handlesOk ? 'ok' : `MORE than ${HANDLES_SLACK} over idle`}).
- Gateway exit codes after SIGTERM: ${r.exits.join(', ')}.
- Runtime and automatic blocks on the two replicas at the end: ${r.blocks}.
- Policy reloads (both replicas, flaggate_policy_reloads_total): ${[...r.reloads].map(([k, v]) => `${v} ${k}`).join(', ') || 'none'}; files written: ${r.validReloads} valid, ${r.invalidReloads} invalid on purpose.
- Decisions taken on local state while Redis was broken: ${r.storeFallback.join(', ')}.

## What the clients saw

| kind | requests |
|---|---|
${rows(tally.byKind as Map<string, number>)}

| status | requests |
|---|---|
${rows(tally.byStatus)}

${tally.unexpected.length > 0 ? `Unexpected answers (first ${tally.unexpected.length}):\n\n${tally.unexpected.map((u) => `- ${u}`).join('\n')}\n` : ''}
Shed with Core healthy (503 FLAGGATE_UPSTREAM_OVERLOADED outside a Core fault; expected only while the adaptive limit measures minRTT, at start and about once a minute), by second of the run: ${tally.shedHealthy.size === 0 ? 'none' : [...tally.shedHealthy].map(([t, n]) => `${t} s: ${n}`).join(', ')}.

| client | ${KINDS.join(' | ')} |
|---|${KINDS.map(() => '---|').join('')}
${[...tally.byWho].sort((a, b) => a[0].localeCompare(b[0])).map(([who, m]) => `| ${who} | ${KINDS.map((k) => m.get(k) ?? 0).join(' | ')} |`).join('\n')}

| client | answers |
|---|---|
${[...tally.statusByWho].sort((a, b) => a[0].localeCompare(b[0])).map(([who, m]) => `| ${who} | ${[...m].sort((a, b) => b[1] - a[1]).map(([st, n]) => `${st}: ${n}`).join(', ')} |`).join('\n')}

## What the gateways decided (flaggate_requests_total, both replicas)

| decision | requests |
|---|---|
${rows(r.decisions)}

## What the gateways logged

${logLines.join(' and ')} log lines; on stderr: ${gws.map((g, i) => `gateway ${i + 1}: ${g.stderr.length === 0 ? 'nothing' : '\n\n```\n' + g.stderr.join('').trim().slice(0, 2000) + '\n```\n'}`).join('; ')}

Warnings and errors in the log:

${logs.length === 0 ? 'none' : `| gateway, level, message | lines | first at | example error |\n|---|---|---|---|\n${logs.map(([k, t]) => `| ${k} | ${t.count} | ${t.firstAt.trim()} | ${t.example.replace(/\|/g, '\\|').slice(0, 120)} |`).join('\n')}`}

## Memory and event loop every ${SAMPLE_MS / 1000} s

![RSS and event-loop p99 over time](${svg})

| t (s) | RSS MB (gw1 / gw2) | heap MB | event-loop p99 ms | handles | Core breaker, limit | requests so far | answers in the interval |
|---|---|---|---|---|---|---|---|
${samples.map((s) => `| ${s.t.toFixed(0)} | ${s.rssMb.map((x) => x.toFixed(0)).join(' / ')} | ${s.heapMb.map((x) => x.toFixed(0)).join(' / ')} | ${s.elP99Ms.map((x) => x.toFixed(1)).join(' / ')} | ${s.handles.join(' / ')} | ${s.breaker.join(' / ')} | ${s.requests} | ${kindsText(s.kinds)} |`).join('\n')}

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
  const shaded = faultSpans.filter((f) => f.from <= tMax).map((f) => {
    const x0 = x(f.from); const x1 = x(Math.min(f.to, tMax))
    return `<rect x="${x0.toFixed(1)}" y="${T}" width="${Math.max(1, x1 - x0).toFixed(1)}" height="${H - T - B}" fill="#eeeeee"/>` +
      `<text transform="translate(${(x0 + 3).toFixed(1)},${T + 4}) rotate(90)" font-size="9" fill="#777">${f.name}</text>`
  }).join('\n')
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif">
<rect width="${W}" height="${H}" fill="white"/>
${shaded}
<line x1="${L}" y1="${H - B}" x2="${W - R}" y2="${H - B}" stroke="#444"/><line x1="${L}" y1="${T}" x2="${L}" y2="${H - B}" stroke="#444"/><line x1="${W - R}" y1="${T}" x2="${W - R}" y2="${H - B}" stroke="#444"/>
${ticks}
${series.join('\n')}
${loops.join('\n')}
<text x="${L}" y="14" font-size="11">RSS MB (left; blue: gateway 1, green: gateway 2), event-loop p99 ms (right; red, dashed: gateway 2), grey: faults</text>
</svg>
`
}

main().catch((err: unknown) => { console.error(err); process.exit(1) })
