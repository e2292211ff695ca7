/**
 * Fake Flagsmith upstreams on real sockets: a Core API (Django/DRF) and an Edge API.
 *
 * Every gateway test and the demo put these behind the gateway, so they follow Flagsmith's documented behaviour
 * (§0, §1, §3, §4.1, §6) closely enough that the real `flagsmith-nodejs` SDK works against them, in
 * remote and in local-evaluation mode (test/support/fake-flagsmith.test.ts proves it).
 *
 * They use `node:http` rather than fastify so that what reaches the wire is exactly what we wrote
 * (status, header spelling, empty bodies, a 301 with no body) and so a test can start many of them cheaply.
 *
 * What they model beyond plain answers:
 * - a database with a fixed-size connection pool and a FIFO queue, so a saturated "PostgreSQL" makes
 *   latency climb for everyone, and each endpoint costs a realistic number of queries (env-doc: 11);
 * - failure modes that a gateway must survive: 500s from the DB, sockets destroyed, requests that hang;
 * - Django's APPEND_SLASH 301, `If-Modified-Since` → 304 on the env doc, and Edge's `Link` pagination.
 *
 * All knobs (`envs`, `db`, Edge `pageSize`) are read on every request, so a test can change them while
 * load is running.
 */
import http from 'node:http'
import { createHash, createHmac } from 'node:crypto'
import type { AddressInfo } from 'node:net'

// ---------------------------------------------------------------------------------------------------
// Public types
// ---------------------------------------------------------------------------------------------------

export type FlagValue = string | number | boolean | null
export type TraitValue = string | number | boolean | null

export interface FakeDatabaseOptions {
  /** Time each query holds its pool connection. 0 answers without a timer. */
  queryLatencyMs: number
  /** Queries that may run at once; the rest wait in a FIFO queue, as with a PostgreSQL pool. */
  poolSize: number
  /** 0..1: share of DB-backed requests that fail (after their first query) with 500 `{"detail":"database error"}`. */
  failRate: number
  /** The whole upstream is down: every socket is destroyed without an answer (the client sees a reset). */
  down: boolean
  /** The whole upstream hangs: requests are read and never answered; `close()` still finishes. */
  hang: boolean
  /**
   * Slow-body knob (not a DB setting, but it lives with the other failure knobs): when > 0, headers are
   * sent at once and the body follows in 16 KiB chunks with this delay before each chunk.
   */
  bodyChunkDelayMs?: number
}

export interface FakeFeature {
  id: number
  name: string
  enabled: boolean
  value: FlagValue
  /** Core's `is_server_key_only`: hidden from client keys on flags/ and identities/. */
  serverKeyOnly?: boolean
}

/**
 * A segment override reduced to one `EQUAL` condition on one trait, which is enough to make identity
 * responses depend on traits. It is written into the env doc as a real segment, so local evaluation
 * in the SDK gives the same answer as the fake's remote evaluation.
 */
export interface FakeSegmentOverride {
  id: number
  name: string
  trait: string
  equals: string
  featureName: string
  enabled: boolean
  value: FlagValue
}

export interface FakeEnvironment {
  id: number
  name: string
  clientKey: string
  serverKeys: string[]
  updatedAt: Date
  features: FakeFeature[]
  segments?: FakeSegmentOverride[]
  /**
   * How many identity overrides to put in the env doc (to make it big: each is ~0.6 KB). Override `n`
   * (1-based) is for identifier {@link identityOverrideIdentifier}(n) and sets the environment's first
   * feature to enabled with value {@link IDENTITY_OVERRIDE_VALUE}, in remote and local evaluation alike.
   */
  identityOverrides?: number
}

export interface RecordedRequest {
  method: string
  /** The raw path as received, without the query string. */
  path: string
  /** The raw query string, without `?` (percent-encoding untouched). */
  query: string
  headers: http.IncomingHttpHeaders
  body: Buffer
  /** `Date.now()` when the request arrived. */
  at: number
  /** Status sent back; `null` while pending, or for ever when the fake was `down` or `hang`ing. */
  status: number | null
}

export interface FakeDatabaseStats {
  /** Queries started since the last `reset()`. */
  queries: number
  active: number
  queued: number
  maxActiveSeen: number
  maxQueuedSeen: number
}

export interface FakeUpstream {
  readonly kind: 'core' | 'edge'
  /** `http://127.0.0.1:<port>`, no trailing slash. */
  readonly url: string
  readonly port: number
  /** Mutable: edit features, then `touch()` the environment, as a flag change in the dashboard would. */
  envs: FakeEnvironment[]
  /** Mutable at runtime; read on every request. */
  db: FakeDatabaseOptions
  /**
   * Requests received since the last `reset()`, optionally for one path and/or one `X-Environment-Key`
   * (`''` counts requests without the header). Paths are normalised on both sides: the query string is
   * dropped and a trailing slash added, so `counts('/api/v1/flags')` also counts `/api/v1/flags/?x=1`.
   * Use `requests` (which records the raw path and the status sent) to tell slashed from unslashed.
   */
  counts: (path?: string, key?: string) => number
  /** The last {@link REQUEST_LOG_SIZE} requests, oldest first. Cleared in place by `reset()`. */
  readonly requests: RecordedRequest[]
  /** Clears counters, the request log, DB statistics and the in-flight high-water mark. */
  reset: () => void
  /** Bumps `updatedAt` to a strictly later whole second, so `Last-Modified` always changes. */
  touch: (envId: number) => void
  /** Requests received and not yet answered (hanging ones included until their socket closes). */
  inFlight: () => number
  maxInFlightSeen: () => number
  /**
   * Requests Core is still working on, including those whose client has gone: like a Django
   * worker, the fake does not notice a closed socket and runs every query of a request it started
   * (the work a timed-out client leaves behind is what sinks a saturated database).
   */
  busy: () => number
  maxBusySeen: () => number
  dbStats: () => FakeDatabaseStats
  /** Traits remembered for an identity (what Core would have persisted), or undefined if never seen. */
  traits: (envId: number, identifier: string) => Record<string, TraitValue> | undefined
  /** Stops listening and destroys every socket, hanging ones included. Idempotent. */
  close: () => Promise<void>
}

export interface FakeCore extends FakeUpstream { readonly kind: 'core' }

export interface FakeEdge extends FakeUpstream {
  readonly kind: 'edge'
  /** Identity overrides per env-doc page; mutable at runtime. */
  pageSize: number
}

export interface FakeCoreOptions {
  envs?: FakeEnvironment[]
  db?: Partial<FakeDatabaseOptions>
  /** Default 0 (ephemeral). */
  port?: number
}

export interface FakeEdgeOptions extends FakeCoreOptions {
  /** Default {@link DEFAULT_EDGE_PAGE_SIZE}. */
  pageSize?: number
}

// ---------------------------------------------------------------------------------------------------
// Constants shared with tests
// ---------------------------------------------------------------------------------------------------

export const REQUEST_LOG_SIZE = 10_000
export const DEFAULT_EDGE_PAGE_SIZE = 2
export const FAKE_FLAGSMITH_VERSION = '2.200.0'
export const CORE_NEVER_CACHE = 'max-age=0, no-cache, no-store, must-revalidate, private'
export const INVALID_KEY_DETAIL = 'Invalid or missing Environment key'
export const DATABASE_ERROR_DETAIL = 'database error'
export const IDENTITY_OVERRIDE_VALUE = 'overridden'
export const ENV_DOC_QUERIES = 11
export const ENV_DOC_NOT_MODIFIED_QUERIES = 1

export const DEFAULT_DATABASE_OPTIONS: Readonly<FakeDatabaseOptions> = Object.freeze({
  queryLatencyMs: 0,
  poolSize: 10,
  failRate: 0,
  down: false,
  hang: false,
  bodyChunkDelayMs: 0
})

const BODY_CHUNK_BYTES = 16 * 1024
const FEATURE_CREATED_DATE = '2024-01-01T00:00:00.000000Z'
const PROJECT = { id: 1, name: 'Fake project' }
const ORGANISATION = { id: 1, name: 'Fake organisation' }

export function identityOverrideIdentifier (n: number): string {
  return `identity-override-${n}`
}

/**
 * Two environments of one project (so features share ids and names, as in Flagsmith), each with a client
 * key and `ser.` server keys. A fresh copy on every call, because fakes mutate their environments.
 */
export function defaultEnvironments (): FakeEnvironment[] {
  return [
    {
      id: 1,
      name: 'Development',
      clientKey: 'dev_client_key',
      serverKeys: ['ser.dev_server_key'],
      updatedAt: new Date('2025-01-01T00:00:00.250Z'),
      features: [
        { id: 1, name: 'banner', enabled: true, value: 'hello' },
        { id: 2, name: 'max_items', enabled: true, value: 10 },
        { id: 3, name: 'dark_mode', enabled: false, value: null },
        { id: 4, name: 'secret_algo', enabled: true, value: 'v2', serverKeyOnly: true }
      ],
      segments: [
        { id: 1, name: 'pro_users', trait: 'plan', equals: 'pro', featureName: 'banner', enabled: true, value: 'pro banner' }
      ],
      identityOverrides: 3
    },
    {
      id: 2,
      name: 'Production',
      clientKey: 'prod_client_key',
      serverKeys: ['ser.prod_server_key', 'ser.prod_server_key_2'],
      updatedAt: new Date('2025-01-01T00:00:00.750Z'),
      features: [
        { id: 1, name: 'banner', enabled: true, value: 'welcome' },
        { id: 2, name: 'max_items', enabled: true, value: 25 },
        { id: 3, name: 'dark_mode', enabled: true, value: true },
        { id: 4, name: 'secret_algo', enabled: false, value: 'v1', serverKeyOnly: true }
      ],
      segments: [],
      identityOverrides: 0
    }
  ]
}

export async function startFakeCore (opts: FakeCoreOptions = {}): Promise<FakeCore> {
  const fake = new FakeUpstreamServer('core', routeCore, opts)
  await fake.listen(opts.port ?? 0)
  return fake as FakeCore
}

export async function startFakeEdge (opts: FakeEdgeOptions = {}): Promise<FakeEdge> {
  const fake = new FakeUpstreamServer('edge', routeEdge, opts)
  fake.pageSize = opts.pageSize ?? DEFAULT_EDGE_PAGE_SIZE
  await fake.listen(opts.port ?? 0)
  return fake as FakeEdge
}

// ---------------------------------------------------------------------------------------------------
// Webhooks
// ---------------------------------------------------------------------------------------------------

/** `X-Flagsmith-Signature`: hex HMAC-SHA256 of the raw body, keyed with the secret's UTF-8 bytes. */
export function signWebhook (secret: string, rawBody: string): string {
  return createHmac('sha256', Buffer.from(secret, 'utf8')).update(rawBody, 'utf8').digest('hex')
}

export interface WebhookBodyOptions {
  /** Where the feature is looked up; default {@link defaultEnvironments}(). Unknown ids still give a body. */
  envs?: FakeEnvironment[]
  changedBy?: string
  timestamp?: Date
  eventType?: 'FLAG_UPDATED' | 'FLAG_DELETED'
}

/**
 * An environment webhook body exactly as Core serialises it: `json.dumps(sort_keys=True)` with Python's
 * default `", "` / `": "` separators and ASCII escapes. Note it carries the environment id, never a key.
 */
export function webhookBody (envId: number, featureName: string, opts: WebhookBodyOptions = {}): string {
  const env = (opts.envs ?? defaultEnvironments()).find((e) => e.id === envId)
  const feature = env?.features.find((f) => f.name === featureName) ??
    { id: 0, name: featureName, enabled: true, value: null }
  const state = (enabled: boolean): Record<string, unknown> => ({
    feature: {
      id: feature.id,
      name: feature.name,
      type: 'STANDARD',
      created_date: FEATURE_CREATED_DATE,
      default_enabled: feature.enabled,
      description: null,
      initial_value: initialValue(feature.value),
      project: PROJECT
    },
    environment: { id: envId, name: env?.name ?? `Environment ${envId}` },
    identity: null,
    identity_identifier: null,
    feature_segment: null,
    enabled,
    feature_state_value: feature.value,
    multivariate_feature_state_values: []
  })
  const eventType = opts.eventType ?? 'FLAG_UPDATED'
  return pythonJsonDumps({
    event_type: eventType,
    data: {
      changed_by: opts.changedBy ?? 'admin@example.com',
      timestamp: pythonTimestamp(opts.timestamp ?? new Date()),
      new_state: eventType === 'FLAG_DELETED' ? null : state(feature.enabled),
      previous_state: state(!feature.enabled)
    }
  })
}

/**
 * Python's `json.dumps(value, sort_keys=True)` with default separators and `ensure_ascii=True`.
 * Keys are sorted by UTF-16 code unit, which matches Python's code-point order except for astral
 * characters; non-integral numbers use JS formatting (Python would print `1.0` where JS prints `1`).
 */
export function pythonJsonDumps (value: unknown): string {
  if (value === null || value === undefined) return 'null'
  if (typeof value === 'boolean') return value ? 'true' : 'false'
  if (typeof value === 'number') {
    if (Number.isNaN(value)) return 'NaN'
    if (!Number.isFinite(value)) return value > 0 ? 'Infinity' : '-Infinity'
    return String(value)
  }
  if (typeof value === 'string') return pythonJsonString(value)
  if (Array.isArray(value)) return `[${value.map(pythonJsonDumps).join(', ')}]`
  if (typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    return `{${entries.map(([k, v]) => `${pythonJsonString(k)}: ${pythonJsonDumps(v)}`).join(', ')}}`
  }
  throw new TypeError(`pythonJsonDumps: cannot serialise ${typeof value}`)
}

const PY_SHORT_ESCAPES: Record<string, string> = { '"': '\\"', '\\': '\\\\', '\n': '\\n', '\r': '\\r', '\t': '\\t', '\b': '\\b', '\f': '\\f' }

function pythonJsonString (s: string): string {
  let out = '"'
  for (let i = 0; i < s.length; i++) {
    const ch = s[i] as string
    const code = s.charCodeAt(i)
    const short = PY_SHORT_ESCAPES[ch]
    if (short !== undefined) out += short
    // ensure_ascii escapes everything outside printable ASCII, one UTF-16 unit at a time (surrogate pairs included)
    else if (code < 0x20 || code > 0x7e) out += `\\u${code.toString(16).padStart(4, '0')}`
    else out += ch
  }
  return out + '"'
}

/** `%Y-%m-%dT%H:%M:%S.%fZ`: microseconds, which JS dates can only fill with zeros. */
function pythonTimestamp (d: Date): string {
  return d.toISOString().replace(/\.(\d{3})Z$/, '.$1000Z')
}

// ---------------------------------------------------------------------------------------------------
// The server
// ---------------------------------------------------------------------------------------------------

interface Exchange {
  method: string
  /** Raw path + query, as in the request line. */
  url: string
  path: string
  rawQuery: string
  query: URLSearchParams
  headers: http.IncomingHttpHeaders
  body: Buffer
  key: string | undefined
}

interface Reply {
  status: number
  headers?: Record<string, string>
  /** undefined → no body; a Buffer is sent as is (JSON); anything else is rendered as DRF would. */
  body?: unknown
}

type Router = (ex: Exchange, fake: FakeUpstreamServer) => Reply | Promise<Reply>

/** Thrown by handlers to answer early (auth failure, bad method, bad body). */
class Rejection extends Error {
  constructor (readonly reply: Reply) { super(`rejected with ${reply.status}`) }
}

class DatabaseError extends Error {}

class FakeUpstreamServer implements FakeUpstream {
  url = ''
  port = 0
  envs: FakeEnvironment[]
  db: FakeDatabaseOptions
  pageSize = DEFAULT_EDGE_PAGE_SIZE
  readonly requests: RecordedRequest[] = []
  readonly database: FakeDatabase

  private readonly server: http.Server
  private readonly counters = new Map<string, Map<string, number>>()
  private readonly timers = new Set<NodeJS.Timeout>()
  private readonly identityTraits = new Map<string, Map<string, TraitValue>>()
  private readonly documents = new Map<number, { fingerprint: string; doc: EnvironmentDocument; json?: Buffer }>()
  private inFlightNow = 0
  private inFlightMax = 0
  private busyNow = 0
  private busyMax = 0
  private closed = false

  constructor (readonly kind: 'core' | 'edge', private readonly router: Router, opts: FakeCoreOptions) {
    this.envs = opts.envs ?? defaultEnvironments()
    this.db = { ...DEFAULT_DATABASE_OPTIONS, ...opts.db }
    this.database = new FakeDatabase(() => this.db, this.sleep)
    this.server = http.createServer((req, res) => this.onRequest(req, res))
  }

  async listen (port: number): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject)
      this.server.listen(port, '127.0.0.1', () => {
        this.server.off('error', reject)
        resolve()
      })
    })
    this.port = (this.server.address() as AddressInfo).port
    this.url = `http://127.0.0.1:${this.port}`
  }

  // Public API: arrow properties, so `afterAll(core.close)` and destructuring work.

  counts = (path?: string, key?: string): number => {
    const tables = path === undefined ? [...this.counters.values()] : [this.counters.get(normalisePath(path))]
    let total = 0
    for (const byKey of tables) {
      if (byKey === undefined) continue
      if (key !== undefined) total += byKey.get(key) ?? 0
      else for (const n of byKey.values()) total += n
    }
    return total
  }

  reset = (): void => {
    this.counters.clear()
    this.requests.length = 0
    this.inFlightMax = this.inFlightNow
    this.busyMax = this.busyNow
    this.database.resetStats()
  }

  touch = (envId: number): void => {
    const env = this.envs.find((e) => e.id === envId)
    if (env === undefined) throw new Error(`fake ${this.kind}: no environment with id ${envId}`)
    // Last-Modified has 1 s resolution and Core answers 304 when If-Modified-Since >= it, so a touch
    // within the same second would be invisible; a real flag change can be too, tests want it not to be.
    const nextSecondMs = (Math.floor(env.updatedAt.getTime() / 1000) + 1) * 1000
    env.updatedAt = new Date(Math.max(Date.now(), nextSecondMs))
  }

  inFlight = (): number => this.inFlightNow
  maxInFlightSeen = (): number => this.inFlightMax
  busy = (): number => this.busyNow
  maxBusySeen = (): number => this.busyMax
  dbStats = (): FakeDatabaseStats => this.database.stats()

  traits = (envId: number, identifier: string): Record<string, TraitValue> | undefined => {
    const stored = this.identityTraits.get(identityKey(envId, identifier))
    return stored === undefined ? undefined : Object.fromEntries(stored)
  }

  close = async (): Promise<void> => {
    if (this.closed) return
    this.closed = true
    for (const t of this.timers) clearTimeout(t)
    this.timers.clear()
    this.database.abandon()
    const stopped = new Promise<void>((resolve) => this.server.close(() => resolve()))
    // close() alone waits for busy keep-alive and hanging sockets; those must go too.
    this.server.closeAllConnections()
    await stopped
  }

  // Internals used by the routers.

  findEnv (key: string): FakeEnvironment | undefined {
    return this.envs.find((e) => e.clientKey === key || e.serverKeys.includes(key))
  }

  /** The traits an identity ends up with; `persist: false` evaluates without writing (transient). */
  updateTraits (env: FakeEnvironment, identifier: string, input: InputTrait[], persist: boolean): Map<string, TraitValue> {
    const key = identityKey(env.id, identifier)
    const stored = this.identityTraits.get(key) ?? new Map<string, TraitValue>()
    const result = new Map(stored)
    for (const t of input) {
      if (t.trait_value === null) result.delete(t.trait_key)
      else result.set(t.trait_key, t.trait_value)
      if (!persist || t.transient === true) continue
      if (t.trait_value === null) stored.delete(t.trait_key)
      else stored.set(t.trait_key, t.trait_value)
    }
    // GET identities/ runs get_or_create: even without traits, a non-transient call creates the identity.
    if (persist) this.identityTraits.set(key, stored)
    return result
  }

  /** The env doc object, rebuilt only when the environment changed (it can be megabytes). */
  document (env: FakeEnvironment): EnvironmentDocument {
    return this.cachedDocument(env).doc
  }

  documentJson (env: FakeEnvironment): Buffer {
    const entry = this.cachedDocument(env)
    entry.json ??= Buffer.from(drfJson(entry.doc))
    return entry.json
  }

  private cachedDocument (env: FakeEnvironment): { fingerprint: string; doc: EnvironmentDocument; json?: Buffer } {
    const fingerprint = JSON.stringify(env)
    let entry = this.documents.get(env.id)
    if (entry?.fingerprint !== fingerprint) {
      entry = { fingerprint, doc: buildEnvironmentDocument(env) }
      this.documents.set(env.id, entry)
    }
    return entry
  }

  readonly sleep = async (ms: number): Promise<void> => {
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        this.timers.delete(t)
        resolve()
      }, ms)
      this.timers.add(t)
    })
  }

  private onRequest (req: http.IncomingMessage, res: http.ServerResponse): void {
    const at = Date.now()
    this.inFlightNow++
    this.inFlightMax = Math.max(this.inFlightMax, this.inFlightNow)
    res.once('close', () => { this.inFlightNow-- })
    // A client that resets mid-request makes these emit 'error'; unhandled, that would crash the test run.
    req.on('error', () => {})
    res.on('error', () => {})
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => { void this.dispatch(req, res, Buffer.concat(chunks), at) })
  }

  private async dispatch (req: http.IncomingMessage, res: http.ServerResponse, body: Buffer, at: number): Promise<void> {
    const url = req.url ?? '/'
    const q = url.indexOf('?')
    const path = q === -1 ? url : url.slice(0, q)
    const rawQuery = q === -1 ? '' : url.slice(q + 1)
    const method = req.method ?? 'GET'
    const keyHeader = req.headers['x-environment-key']
    const key = Array.isArray(keyHeader) ? keyHeader[0] : keyHeader
    const entry: RecordedRequest = { method, path, query: rawQuery, headers: req.headers, body, at, status: null }
    this.record(entry, key)

    if (this.db.down) {
      req.socket.destroy()
      return
    }
    if (this.db.hang) return

    const ex: Exchange = { method, url, path, rawQuery, query: new URLSearchParams(rawQuery), headers: req.headers, body, key }
    let reply: Reply
    this.busyMax = Math.max(this.busyMax, ++this.busyNow)
    try {
      reply = isEchoPath(path) ? echo(ex) : await this.router(ex, this)
    } catch (err) {
      if (err instanceof Rejection) reply = err.reply
      else if (err instanceof DatabaseError) reply = { status: 500, body: { detail: DATABASE_ERROR_DETAIL } }
      else reply = { status: 500, body: { detail: `fake ${this.kind} bug: ${String(err)}` } }
    } finally {
      this.busyNow--
    }
    if (this.closed || res.destroyed) return
    entry.status = reply.status
    await this.send(res, reply)
  }

  private record (entry: RecordedRequest, key: string | undefined): void {
    this.requests.push(entry)
    if (this.requests.length > REQUEST_LOG_SIZE) this.requests.shift()
    const path = normalisePath(entry.path)
    let byKey = this.counters.get(path)
    if (byKey === undefined) this.counters.set(path, byKey = new Map())
    byKey.set(key ?? '', (byKey.get(key ?? '') ?? 0) + 1)
  }

  private async send (res: http.ServerResponse, reply: Reply): Promise<void> {
    const headers: Record<string, string> = { ...(this.kind === 'core' ? coreMiddlewareHeaders() : {}), ...reply.headers }
    const bodyless = reply.status === 204 || reply.status === 304 || reply.status < 200
    let payload: Buffer | undefined
    if (!bodyless && reply.body !== undefined) {
      payload = Buffer.isBuffer(reply.body) ? reply.body : Buffer.from(drfJson(reply.body))
      headers['Content-Type'] ??= 'application/json'
    }
    if (!bodyless) headers['Content-Length'] = String(payload?.length ?? 0)

    const delayMs = this.db.bodyChunkDelayMs ?? 0
    if (payload === undefined || delayMs <= 0) {
      res.writeHead(reply.status, headers).end(payload)
      return
    }
    res.writeHead(reply.status, headers)
    res.flushHeaders()
    for (let offset = 0; offset < payload.length; offset += BODY_CHUNK_BYTES) {
      await this.sleep(delayMs)
      if (this.closed || res.destroyed) return
      res.write(payload.subarray(offset, offset + BODY_CHUNK_BYTES))
    }
    res.end()
  }
}

/**
 * A connection pool in front of a pretend PostgreSQL. Queries take a slot each; the rest queue FIFO.
 * Slots are taken per query, not per request, so under saturation every request slows down together.
 */
class FakeDatabase {
  private active = 0
  private queue: Array<() => void> = []
  private queries = 0
  private maxActive = 0
  private maxQueued = 0

  constructor (private readonly options: () => FakeDatabaseOptions, private readonly sleep: (ms: number) => Promise<void>) {}

  /** Runs `count` sequential queries. `failRate` is rolled once per request, after its first query. */
  async run (count: number): Promise<void> {
    for (let i = 0; i < count; i++) {
      await this.query()
      if (i === 0 && Math.random() < this.options().failRate) throw new DatabaseError(DATABASE_ERROR_DETAIL)
    }
  }

  stats (): FakeDatabaseStats {
    return { queries: this.queries, active: this.active, queued: this.queue.length, maxActiveSeen: this.maxActive, maxQueuedSeen: this.maxQueued }
  }

  resetStats (): void {
    this.queries = 0
    this.maxActive = this.active
    this.maxQueued = this.queue.length
  }

  /** On close: queued requests are dropped; their handlers simply never resume. */
  abandon (): void {
    this.queue = []
  }

  private async query (): Promise<void> {
    await this.acquire()
    this.queries++
    try {
      const ms = this.options().queryLatencyMs
      if (ms > 0) await this.sleep(ms)
    } finally {
      this.active--
      this.drain()
    }
  }

  private async acquire (): Promise<void> {
    await new Promise<void>((resolve) => {
      this.queue.push(resolve)
      // Draining here too means a poolSize raised at runtime takes effect on the next query.
      this.drain()
      this.maxQueued = Math.max(this.maxQueued, this.queue.length)
    })
  }

  private drain (): void {
    while (this.queue.length > 0 && this.active < this.options().poolSize) {
      this.active++
      this.maxActive = Math.max(this.maxActive, this.active)
      const next = this.queue.shift() as () => void
      next()
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// Routing shared by both fakes
// ---------------------------------------------------------------------------------------------------

interface InputTrait { trait_key: string; trait_value: TraitValue; transient?: boolean }
interface Auth { env: FakeEnvironment; isServer: boolean }

const INVALID_KEY: Reply = { status: 403, body: { detail: INVALID_KEY_DETAIL } }
const NOT_FOUND: Reply = { status: 404, body: { detail: 'Not found.' } }
const ECHO_REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308])

function isEchoPath (path: string): boolean {
  return path === '/echo' || path.startsWith('/echo/')
}

/** For passthrough tests: reflects the request; `x-echo-status` picks the status, `x-echo-location` the redirect target. */
function echo (ex: Exchange): Reply {
  const requested = Number(header(ex, 'x-echo-status'))
  const status = Number.isInteger(requested) && requested >= 200 && requested <= 599 ? requested : 200
  const headers: Record<string, string> = { Link: '</echo/next?page=2>; rel="next"', 'X-Upstream-Test': '1' }
  if (ECHO_REDIRECT_STATUSES.has(status)) headers.Location = header(ex, 'x-echo-location') ?? '/echo/redirected'
  return { status, headers, body: { method: ex.method, url: ex.url, headers: ex.headers, bodyBase64: ex.body.toString('base64') } }
}

function header (ex: Exchange, name: string): string | undefined {
  const v = ex.headers[name]
  return Array.isArray(v) ? v[0] : v
}

/**
 * Core resolves keys through a 60 s locmem cache, so a known key costs no query; an unknown one
 * costs one every time (the bad-key negative cache is off by default).
 */
async function authenticate (ex: Exchange, fake: FakeUpstreamServer, serverOnly = false): Promise<Auth> {
  const env = ex.key === undefined || ex.key === '' ? undefined : fake.findEnv(ex.key)
  if (env === undefined) {
    if (ex.key !== undefined && ex.key !== '') await fake.database.run(1)
    throw new Rejection(INVALID_KEY)
  }
  const isServer = env.serverKeys.includes(ex.key as string)
  if (serverOnly && !isServer) throw new Rejection(INVALID_KEY)
  return { env, isServer }
}

/** DRF authenticates before it checks the method, so a bad key gets 403 even on a wrong method. */
function requireMethod (ex: Exchange, allowed: string[]): void {
  const method = ex.method === 'HEAD' ? 'GET' : ex.method
  if (allowed.includes(method)) return
  throw new Rejection({ status: 405, headers: { Allow: [...allowed, 'OPTIONS'].join(', ') }, body: { detail: `Method "${ex.method}" not allowed.` } })
}

function parseJsonBody (ex: Exchange): unknown {
  if (ex.body.length === 0) return {}
  try {
    return JSON.parse(ex.body.toString('utf8'))
  } catch (err) {
    throw new Rejection({ status: 400, body: { detail: `JSON parse error - ${(err as Error).message}` } })
  }
}

function isRecord (v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

function isTraitValue (v: unknown): v is TraitValue {
  return v === null || typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean'
}

function parseInputTraits (raw: unknown): InputTrait[] {
  if (raw === undefined || raw === null) return []
  if (!Array.isArray(raw)) throw new Rejection({ status: 400, body: { traits: ['Expected a list of items but got type "dict".'] } })
  return raw.map((t): InputTrait => {
    if (!isRecord(t) || typeof t.trait_key !== 'string' || !isTraitValue(t.trait_value)) {
      throw new Rejection({ status: 400, body: { traits: [{ trait_key: ['This field is required.'] }] } })
    }
    return { trait_key: t.trait_key, trait_value: t.trait_value, transient: t.transient === true }
  })
}

interface IdentityRequest { identifier: string; traits: InputTrait[]; transient: boolean }

/** GET identities/?identifier= or POST identities/ {identifier, traits, transient}; undefined = missing identifier. */
function readIdentityRequest (ex: Exchange): IdentityRequest | undefined {
  if (ex.method === 'POST') {
    const body = parseJsonBody(ex)
    if (!isRecord(body) || typeof body.identifier !== 'string' || body.identifier === '') {
      throw new Rejection({ status: 400, body: { identifier: ['This field is required.'] } })
    }
    return { identifier: body.identifier, traits: parseInputTraits(body.traits), transient: body.transient === true }
  }
  const identifier = ex.query.get('identifier')
  if (identifier === null || identifier === '') return undefined
  return { identifier, traits: [], transient: ex.query.get('transient') === 'true' }
}

function readTraitRequest (ex: Exchange): { identifier: string; trait: InputTrait } {
  const body = parseJsonBody(ex)
  if (!isRecord(body) || !isRecord(body.identity) || typeof body.identity.identifier !== 'string' ||
      typeof body.trait_key !== 'string' || !isTraitValue(body.trait_value)) {
    throw new Rejection({ status: 400, body: { detail: 'identity.identifier, trait_key and trait_value are required.' } })
  }
  return { identifier: body.identity.identifier, trait: { trait_key: body.trait_key, trait_value: body.trait_value } }
}

function traitList (traits: Map<string, TraitValue>): Array<{ trait_key: string; trait_value: TraitValue }> {
  return [...traits].map(([k, v]) => ({ trait_key: k, trait_value: v }))
}

// ---------------------------------------------------------------------------------------------------
// Core
// ---------------------------------------------------------------------------------------------------

const CORE_ROUTES = new Set([
  '/api/v1/flags/',
  '/api/v1/identities/',
  '/api/v1/traits/',
  '/api/v1/environment-document/',
  '/api/v1/analytics/flags/',
  '/api/v2/analytics/flags/',
  '/health/liveness/',
  '/health/readiness/'
])
const VARY_ON_KEY = { Vary: 'X_ENVIRONMENT_KEY' }

/** Added by Core's middleware to every response, errors and redirects included. */
function coreMiddlewareHeaders (): Record<string, string> {
  return {
    'Cache-Control': CORE_NEVER_CACHE,
    Pragma: 'no-cache',
    Expires: new Date().toUTCString(),
    'Flagsmith-Version': FAKE_FLAGSMITH_VERSION
  }
}

/** Python's `str(datetime.timestamp())`: always has a fractional part. */
function updatedAtHeader (env: FakeEnvironment): Record<string, string> {
  const seconds = env.updatedAt.getTime() / 1000
  return { 'X-Flagsmith-Document-Updated-At': Number.isInteger(seconds) ? `${seconds}.0` : String(seconds) }
}

async function routeCore (ex: Exchange, fake: FakeUpstreamServer): Promise<Reply> {
  // Django's CommonMiddleware (APPEND_SLASH) answers before any view, auth or DB work.
  if (!ex.path.endsWith('/') && CORE_ROUTES.has(`${ex.path}/`)) {
    return {
      status: 301,
      headers: { 'Content-Type': 'text/html; charset=utf-8', Location: `${ex.path}/${ex.rawQuery === '' ? '' : `?${ex.rawQuery}`}` },
      body: Buffer.alloc(0)
    }
  }
  switch (ex.path) {
    case '/health/liveness/':
      return { status: 200, body: { status: 'ok' } }
    case '/health/readiness/':
      // django-health-check's db plugin writes a row: one query that can fail like any other.
      await fake.database.run(1)
      return { status: 200, body: { DatabaseBackend: 'working', MigrationsHealthCheck: 'working' } }
    case '/api/v1/flags/':
      return await coreFlags(ex, fake)
    case '/api/v1/identities/':
      return await coreIdentities(ex, fake)
    case '/api/v1/traits/':
      return await postTrait(ex, fake, 2)
    case '/api/v1/analytics/flags/':
      // DRF drops Content-Type when the rendered body is empty.
      return await postAnalytics(ex, fake, 200)
    case '/api/v2/analytics/flags/':
      return await postAnalytics(ex, fake, 204)
    case '/api/v1/environment-document/':
      return await coreEnvironmentDocument(ex, fake)
    default:
      return NOT_FOUND
  }
}

/** POST traits/ (Core only; the fake Edge has no traits/, issue 9). */
async function postTrait (ex: Exchange, fake: FakeUpstreamServer, queries: number): Promise<Reply> {
  const { env } = await authenticate(ex, fake)
  requireMethod(ex, ['POST'])
  const { identifier, trait } = readTraitRequest(ex)
  await fake.database.run(queries)
  fake.updateTraits(env, identifier, [trait], true)
  return { status: 200, body: { identity: { identifier }, trait_key: trait.trait_key, trait_value: trait.trait_value } }
}

/** POST analytics/flags/ (v1: 200, v2: 204), both with an empty body. */
async function postAnalytics (ex: Exchange, fake: FakeUpstreamServer, status: 200 | 204): Promise<Reply> {
  await authenticate(ex, fake)
  requireMethod(ex, ['POST'])
  parseJsonBody(ex)
  await fake.database.run(1)
  return { status }
}

async function coreFlags (ex: Exchange, fake: FakeUpstreamServer): Promise<Reply> {
  const { env, isServer } = await authenticate(ex, fake)
  requireMethod(ex, ['GET'])
  await fake.database.run(1)
  const flags = evaluate(env, isServer)
  const feature = ex.query.get('feature')
  if (feature !== null) {
    const flag = flags.find((f) => f.feature.name === feature)
    if (flag === undefined) return { status: 404, headers: VARY_ON_KEY, body: { detail: 'Given feature not found' } }
    return { status: 200, headers: VARY_ON_KEY, body: coreFlag(env, flag) }
  }
  return { status: 200, headers: { ...VARY_ON_KEY, ...updatedAtHeader(env) }, body: flags.map((f) => coreFlag(env, f)) }
}

async function coreIdentities (ex: Exchange, fake: FakeUpstreamServer): Promise<Reply> {
  const { env, isServer } = await authenticate(ex, fake)
  requireMethod(ex, ['GET', 'POST'])
  const vary = ex.method === 'POST' ? {} : VARY_ON_KEY
  const request = readIdentityRequest(ex)
  if (request === undefined) return { status: 200, headers: vary, body: { detail: 'Missing identifier' } }
  // get_or_create on the primary plus the trait writes: identities/ is a write path even for GET.
  await fake.database.run(2)
  const traits = fake.updateTraits(env, request.identifier, request.traits, !request.transient)
  const flags = evaluate(env, isServer, { identifier: request.identifier, traits })
  return {
    status: 200,
    headers: { ...vary, ...updatedAtHeader(env) },
    body: { identifier: request.identifier, flags: flags.map((f) => coreFlag(env, f)), traits: traitList(traits) }
  }
}

/**
 * Server keys only. `Last-Modified` = updatedAt at 1 s resolution; Django's `condition()` answers 304
 * (empty, no X-Flagsmith-Document-Updated-At: the view never runs) when If-Modified-Since >= it.
 * The 304 still costs the environment lookup; the full document costs 11 queries.
 */
async function coreEnvironmentDocument (ex: Exchange, fake: FakeUpstreamServer): Promise<Reply> {
  const { env } = await authenticate(ex, fake, true)
  requireMethod(ex, ['GET'])
  await fake.database.run(ENV_DOC_NOT_MODIFIED_QUERIES)
  const lastModifiedSeconds = Math.floor(env.updatedAt.getTime() / 1000)
  const lastModified = { 'Last-Modified': new Date(lastModifiedSeconds * 1000).toUTCString() }
  const ims = header(ex, 'if-modified-since')
  const imsMs = ims === undefined ? NaN : Date.parse(ims)
  if (!Number.isNaN(imsMs) && Math.floor(imsMs / 1000) >= lastModifiedSeconds) {
    return { status: 304, headers: lastModified }
  }
  await fake.database.run(ENV_DOC_QUERIES - ENV_DOC_NOT_MODIFIED_QUERIES)
  return { status: 200, headers: { ...lastModified, ...updatedAtHeader(env) }, body: fake.documentJson(env) }
}

/** Core's SDK flag shape (`SDKFeatureStateSerializer`). */
function coreFlag (env: FakeEnvironment, state: FlagState): Record<string, unknown> {
  const f = state.feature
  return {
    id: featureStateId(env, f),
    feature: {
      id: f.id,
      name: f.name,
      created_date: FEATURE_CREATED_DATE,
      description: null,
      initial_value: initialValue(f.value),
      default_enabled: f.enabled,
      type: 'STANDARD'
    },
    feature_state_value: state.value,
    environment: env.id,
    identity: null,
    feature_segment: null,
    enabled: state.enabled
  }
}

// ---------------------------------------------------------------------------------------------------
// Edge API
// ---------------------------------------------------------------------------------------------------

/**
 * The Edge API's source is not public, so beyond what Flagsmith documents this is a guess, kept plain:
 * no Core middleware headers, no Last-Modified or 304, paths accepted with or without the trailing slash,
 * 403 with Core's body for bad keys, one "DynamoDB" query per request (or per env-doc page).
 * Only the endpoints of Flagsmith's SDK OpenAPI (server edge.api.flagsmith.com: flags/, identities/ GET
 * and POST, environment-document/) plus analytics/flags/; everything else is 404. Identities written
 * here live in this fake's own store, as DynamoDB is apart from Core's PostgreSQL.
 */
async function routeEdge (ex: Exchange, fake: FakeUpstreamServer): Promise<Reply> {
  const path = ex.path.endsWith('/') ? ex.path : `${ex.path}/`
  switch (path) {
    case '/health/liveness/':
      return { status: 200, body: { status: 'ok' } }
    case '/api/v1/flags/': {
      const { env, isServer } = await authenticate(ex, fake)
      requireMethod(ex, ['GET'])
      await fake.database.run(1)
      const flags = evaluate(env, isServer)
      const feature = ex.query.get('feature')
      if (feature === null) return { status: 200, body: flags.map(edgeFlag) }
      const flag = flags.find((f) => f.feature.name === feature)
      return flag === undefined ? { status: 404, body: { detail: 'Given feature not found' } } : { status: 200, body: edgeFlag(flag) }
    }
    case '/api/v1/identities/': {
      const { env, isServer } = await authenticate(ex, fake)
      requireMethod(ex, ['GET', 'POST'])
      const request = readIdentityRequest(ex)
      if (request === undefined) return { status: 200, body: { detail: 'Missing identifier' } }
      await fake.database.run(1)
      const traits = fake.updateTraits(env, request.identifier, request.traits, !request.transient)
      const flags = evaluate(env, isServer, { identifier: request.identifier, traits })
      return { status: 200, body: { identifier: request.identifier, flags: flags.map(edgeFlag), traits: traitList(traits) } }
    }
    case '/api/v1/analytics/flags/':
      return await postAnalytics(ex, fake, 200)
    case '/api/v1/environment-document/':
      return await edgeEnvironmentDocument(ex, fake)
    default:
      // Core-only routes (traits/, flags/<id>/multivariate-options/, the dashboard API) do not
      // exist here: a gateway that sent them to Edge would see this 404 (issue 9)
      return NOT_FOUND
  }
}

/**
 * Paginates identity overrides: each page is a whole document carrying the next `pageSize` overrides,
 * and `Link: <…?page_id=identity_override%3A<env_id>%3A<uuid>>; rel="next"` names the last override
 * sent. The Node SDK decodes that and comes back with raw colons; both spellings are accepted.
 */
async function edgeEnvironmentDocument (ex: Exchange, fake: FakeUpstreamServer): Promise<Reply> {
  const { env } = await authenticate(ex, fake, true)
  requireMethod(ex, ['GET'])
  await fake.database.run(1)
  const doc = fake.document(env)
  const overrides = doc.identity_overrides
  let start = 0
  const pageId = ex.query.get('page_id')
  if (pageId !== null) {
    const [kind, envId, uuid] = pageId.split(':')
    const index = overrides.findIndex((o) => o.identity_uuid === uuid)
    if (kind !== 'identity_override' || envId !== String(env.id) || index === -1) {
      return { status: 400, body: { detail: 'Invalid page_id' } }
    }
    start = index + 1
  }
  const size = Math.max(1, Math.floor(fake.pageSize))
  const page = overrides.slice(start, start + size)
  const headers: Record<string, string> = {}
  const last = page[page.length - 1]
  if (start + size < overrides.length && last !== undefined) {
    const next = encodeURIComponent(`identity_override:${env.id}:${last.identity_uuid}`)
    headers.Link = `</api/v1/environment-document/?page_id=${next}>; rel="next"`
  }
  return { status: 200, headers, body: { ...doc, identity_overrides: page } }
}

/** Edge's slim flag: `{feature:{id,name,type}, enabled, feature_state_value}`. */
function edgeFlag (state: FlagState): Record<string, unknown> {
  return {
    feature: { id: state.feature.id, name: state.feature.name, type: 'STANDARD' },
    enabled: state.enabled,
    feature_state_value: state.value
  }
}

// ---------------------------------------------------------------------------------------------------
// Evaluation and the environment document
// ---------------------------------------------------------------------------------------------------

interface FlagState { feature: FakeFeature; enabled: boolean; value: FlagValue }

/**
 * The engine's precedence, reduced to what the fake can express: identity override, then the first
 * matching segment override, then the environment default. Server-key-only features are hidden from
 * client keys, as Core does.
 */
function evaluate (env: FakeEnvironment, isServer: boolean, identity?: { identifier: string; traits: Map<string, TraitValue> }): FlagState[] {
  const overridden = identity !== undefined && hasIdentityOverride(env, identity.identifier)
  return env.features
    .filter((f) => isServer || f.serverKeyOnly !== true)
    .map((f): FlagState => {
      if (identity !== undefined) {
        if (overridden && f === env.features[0]) return { feature: f, enabled: true, value: IDENTITY_OVERRIDE_VALUE }
        const segment = (env.segments ?? []).find((s) => s.featureName === f.name && traitEquals(identity.traits.get(s.trait), s.equals))
        if (segment !== undefined) return { feature: f, enabled: segment.enabled, value: segment.value }
      }
      return { feature: f, enabled: f.enabled, value: f.value }
    })
}

function traitEquals (value: TraitValue | undefined, expected: string): boolean {
  return value !== undefined && value !== null && String(value) === expected
}

function hasIdentityOverride (env: FakeEnvironment, identifier: string): boolean {
  const match = /^identity-override-(\d+)$/.exec(identifier)
  const n = match === null ? 0 : Number(match[1])
  return n >= 1 && n <= (env.identityOverrides ?? 0)
}

interface FeatureStateDocument {
  feature: { id: number; name: string; type: string }
  enabled: boolean
  django_id: number
  featurestate_uuid: string
  feature_state_value: FlagValue
  feature_segment: { priority: number } | null
  multivariate_feature_state_values: unknown[]
}

interface IdentityOverrideDocument {
  identifier: string
  environment_api_key: string
  created_date: string
  identity_uuid: string
  django_id: number
  dashboard_alias: null
  composite_key: string
  identity_features: FeatureStateDocument[]
  identity_traits: unknown[]
}

interface EnvironmentDocument {
  [field: string]: unknown
  identity_overrides: IdentityOverrideDocument[]
}

/** Core's SDK document (`map_environment_to_sdk_document`), which flagsmith-nodejs 8.1.2 can load. */
function buildEnvironmentDocument (env: FakeEnvironment): EnvironmentDocument {
  const featureState = (f: FakeFeature, enabled: boolean, value: FlagValue, djangoId: number, uuidSeed: string, priority?: number): FeatureStateDocument => ({
    feature: { id: f.id, name: f.name, type: 'STANDARD' },
    enabled,
    django_id: djangoId,
    featurestate_uuid: seededUuid(uuidSeed),
    feature_state_value: value,
    feature_segment: priority === undefined ? null : { priority },
    multivariate_feature_state_values: []
  })
  const segments = (env.segments ?? []).map((s, i) => {
    const feature = env.features.find((f) => f.name === s.featureName)
    return {
      id: s.id,
      name: s.name,
      rules: [{ type: 'ALL', conditions: [], rules: [{ type: 'ANY', conditions: [{ operator: 'EQUAL', property_: s.trait, value: s.equals }], rules: [] }] }],
      feature_states: feature === undefined ? [] : [featureState(feature, s.enabled, s.value, env.id * 100_000 + s.id, `segment:${env.id}:${s.id}`, i)]
    }
  })
  const overridden = env.features[0]
  const overrides: IdentityOverrideDocument[] = []
  for (let n = 1; n <= (env.identityOverrides ?? 0); n++) {
    const identifier = identityOverrideIdentifier(n)
    overrides.push({
      identifier,
      environment_api_key: env.clientKey,
      created_date: FEATURE_CREATED_DATE,
      identity_uuid: seededUuid(`identity:${env.id}:${n}`),
      django_id: n,
      dashboard_alias: null,
      composite_key: `${env.clientKey}_${identifier}`,
      identity_features: overridden === undefined
        ? []
        : [featureState(overridden, true, IDENTITY_OVERRIDE_VALUE, env.id * 10_000_000 + n, `override:${env.id}:${n}`)],
      identity_traits: []
    })
  }
  return {
    id: env.id,
    api_key: env.clientKey,
    name: env.name,
    allow_client_traits: true,
    updated_at: pythonIsoformat(env.updatedAt),
    hide_sensitive_data: false,
    hide_disabled_flags: null,
    use_identity_composite_key_for_hashing: true,
    use_identity_overrides_in_local_eval: true,
    project: {
      id: PROJECT.id,
      name: PROJECT.name,
      hide_disabled_flags: false,
      enable_realtime_updates: false,
      server_key_only_feature_ids: env.features.filter((f) => f.serverKeyOnly === true).map((f) => f.id),
      organisation: { id: ORGANISATION.id, name: ORGANISATION.name, feature_analytics: false, stop_serving_flags: false, persist_trait_data: true },
      segments
    },
    feature_states: env.features.map((f) => featureState(f, f.enabled, f.value, featureStateId(env, f), `env:${env.id}:${f.id}`)),
    identity_overrides: overrides
  }
}

function featureStateId (env: FakeEnvironment, f: FakeFeature): number {
  return env.id * 1000 + f.id
}

function initialValue (v: FlagValue): string | null {
  return v === null ? null : String(v)
}

/** Deterministic UUID-shaped ids, so documents are byte-identical across runs. */
function seededUuid (seed: string): string {
  const h = createHash('sha1').update(seed).digest('hex')
  const variant = ((parseInt(h.slice(16, 17), 16) & 0x3) | 0x8).toString(16)
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-5${h.slice(13, 16)}-${variant}${h.slice(17, 20)}-${h.slice(20, 32)}`
}

/** `datetime.isoformat()` of an aware UTC datetime: microseconds and `+00:00`. */
function pythonIsoformat (d: Date): string {
  return d.toISOString().replace(/\.(\d{3})Z$/, '.$1000+00:00')
}

/** DRF's JSONRenderer: compact, non-ASCII kept, but U+2028/U+2029 escaped. */
function drfJson (value: unknown): string {
  return JSON.stringify(value).replace(/\u2028/g, '\\u2028').replace(/\u2029/g, '\\u2029')
}

function normalisePath (path: string): string {
  const q = path.indexOf('?')
  const bare = q === -1 ? path : path.slice(0, q)
  return bare.endsWith('/') ? bare : `${bare}/`
}

function identityKey (envId: number, identifier: string): string {
  return `${envId}\u0000${identifier}`
}
