/**
 * A model of the real Flagsmith Core as it is deployed: Django behind gunicorn with N **sync**
 * workers, on PostgreSQL. For tests and benchmarks (bench/model-core.ts runs it in its own process).
 *
 * What it models, and why each part matters to a gateway in front of it:
 * - **N sync workers.** A worker takes one connection, reads one request, works on it to the end,
 *   writes the answer with `Connection: close` and only then takes the next connection. At most N
 *   requests are ever being worked on; Core's capacity is N / service time.
 * - **The kernel's accept backlog.** Connections that no worker has taken yet wait in a bounded
 *   FIFO queue, unread (the request bytes stay in the socket buffer, as in the kernel's accept
 *   queue). Beyond `backlog` waiting connections a new one is reset at once, as a client sees a full
 *   listen queue (with `tcp_abort_on_overflow`; without it the SYN is dropped and the client waits).
 * - **Work for clients that left.** A sync worker does not watch its socket while Django runs: a
 *   request whose client gave up, in the backlog or in the worker, is still worked on to the end
 *   (every query of it), and only the final write fails. `stats().abandoned` counts them. This is
 *   the work that sinks an overloaded Core behind a proxy that forwards everything.
 * - **A per-query database latency that an experiment changes at run time** (`setDbLatency`), and
 *   per-endpoint costs in database round trips: the environment document needs many queries,
 *   `flags/` a few, `identities/` a few more (see {@link DEFAULT_ROUND_TRIPS}). A request's service
 *   time is `appMs + roundTrips × dbLatencyMs`: raising the latency is the brownout a slow
 *   PostgreSQL causes (bench/support/delay-proxy.ts does the same to the real Core).
 *
 * The answers themselves are not written again here: each worker forwards its request to a fake
 * Core (test/support/fake-flagsmith.ts, database latency 0), so shapes, keys, 304s, 403s, 404s and
 * APPEND_SLASH redirects are that fake's, and the model adds only the timing and the queueing.
 * `model.fake` is that fake: tests may change its environments or its failure knobs.
 *
 * Written by hand: no library models a pre-fork server's accept queue; Node cannot stop calling
 * accept(), so the backlog is the queue of paused sockets (`pauseOnConnect`) kept here.
 */
import http from 'node:http'
import net from 'node:net'
import type { AddressInfo } from 'node:net'
import { Pool } from 'undici'
import { startFakeCore, type FakeCore, type FakeCoreOptions } from './fake-flagsmith.js'

/** Endpoint classes the model prices. */
export type CoreEndpoint = 'environment-document' | 'environment-document-304' | 'flags' | 'identities' | 'traits' | 'analytics' | 'rejected' | 'other'

/**
 * Database round trips per request, by endpoint. The document is the fake's 11 queries (the real
 * Core's `map_environment_to_sdk_document` loads features, states, segments, rules, conditions,
 * overrides and options separately); `flags/` and `identities/` carry the authentication, the
 * environment and the feature-state queries, `identities/` also get_or_create and the traits.
 * A 403 for an unknown key still looks the key up once.
 */
export const DEFAULT_ROUND_TRIPS: Readonly<Record<CoreEndpoint, number>> = Object.freeze({
  'environment-document': 11,
  'environment-document-304': 1,
  flags: 3,
  identities: 6,
  traits: 4,
  analytics: 2,
  rejected: 1,
  other: 0
})

/**
 * Time a worker spends outside the database, by endpoint (Python, serialisation). Measured on the
 * real Core v2.259.0 with 2 sync workers on loopback PostgreSQL: flags/ ≈ 10 ms, the 2.6 KB
 * document ≈ 24 ms, identities/ ≈ 20 ms, a 304 or a 403 ≈ 2.5 ms (sequential p50s).
 */
export const DEFAULT_APP_MS: Readonly<Record<CoreEndpoint, number>> = Object.freeze({
  'environment-document': 22,
  'environment-document-304': 2,
  flags: 9,
  identities: 18,
  traits: 15,
  analytics: 3,
  rejected: 2,
  other: 1
})

export interface GunicornCoreOptions {
  /** Sync workers (gunicorn `--workers`, threads 1). Default 2. */
  workers?: number
  /** Connections that may wait for a worker (the listen backlog); beyond it, reset. Default 2048, gunicorn's `--backlog`. */
  backlog?: number
  /** Milliseconds per database round trip. Default 1 (loopback PostgreSQL). */
  dbLatencyMs?: number
  roundTrips?: Partial<Record<CoreEndpoint, number>>
  appMs?: Partial<Record<CoreEndpoint, number>>
  /** A worker that got a connection but no complete request within this gives up on it (gunicorn `--timeout`). Default 30 000. */
  readTimeoutMs?: number
  /** Options of the fake Core that writes the answers (its database latency is forced to 0). */
  fake?: Omit<FakeCoreOptions, 'port'>
  /** Default 0 (ephemeral). */
  port?: number
}

export interface GunicornCoreStats {
  workers: number
  backlog: number
  dbLatencyMs: number
  /** Requests a worker is working on now (≤ workers). */
  busy: number
  maxBusySeen: number
  /** Connections waiting for a worker now (≤ backlog). */
  queued: number
  maxQueuedSeen: number
  /** Connections accepted into the backlog since the last reset. */
  accepted: number
  /** Connections reset because the backlog was full. */
  refused: number
  /** Requests worked on to the end (answered or not). */
  completed: number
  /** Of those, requests whose client had gone when the answer was ready. */
  abandoned: number
  /** Connections a worker took that brought no request (client gone before sending, or read timeout). */
  empty: number
  /** Database round trips spent. */
  roundTrips: number
  /** Completed requests by endpoint class. */
  byEndpoint: Partial<Record<CoreEndpoint, number>>
}

export interface GunicornCore {
  /** `http://127.0.0.1:<port>`, no trailing slash. */
  readonly url: string
  readonly port: number
  /** The fake that writes the answers: its environments and failure knobs may be changed. */
  readonly fake: FakeCore
  setDbLatency: (ms: number) => void
  dbLatency: () => number
  /**
   * Holds every request at its first database round trip until `resumeDb()` — a stepped clock for
   * tests: workers stay busy, the backlog fills, nothing depends on how long anything takes.
   */
  pauseDb: () => void
  resumeDb: () => void
  stats: () => GunicornCoreStats
  /** Clears the counters and the high-water marks (not what is busy or queued now). */
  reset: () => void
  /** Stops listening, resets waiting connections, lets busy workers finish without answering. */
  close: () => Promise<void>
}

export async function startGunicornCore (opts: GunicornCoreOptions = {}): Promise<GunicornCore> {
  const fake = await startFakeCore({ ...opts.fake, db: { ...opts.fake?.db, queryLatencyMs: 0, poolSize: 1000 } })
  const model = new GunicornModel(fake, opts)
  try {
    await model.listen(opts.port ?? 0)
  } catch (err) {
    await fake.close()
    throw err
  }
  return model
}

/** Which priced class a request falls in, from what was asked and what the fake answered. */
export function endpointOf (method: string, path: string, status: number): CoreEndpoint {
  if (status === 403) return 'rejected'
  if (status === 301) return 'other'
  const p = path.split('?')[0] ?? ''
  if (p === '/api/v1/environment-document/') return status === 304 ? 'environment-document-304' : 'environment-document'
  if (p === '/api/v1/flags/') return 'flags'
  if (p === '/api/v1/identities/') return 'identities'
  if (p === '/api/v1/traits/') return method === 'POST' ? 'traits' : 'other'
  if (p === '/api/v1/analytics/flags/' || p === '/api/v2/analytics/flags/') return 'analytics'
  return 'other'
}

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'content-length', 'proxy-connection', 'upgrade', 'te', 'trailer'])

class GunicornModel implements GunicornCore {
  url = ''
  port = 0
  private readonly workers: number
  private readonly backlog: number
  private readonly roundTripsBy: Record<CoreEndpoint, number>
  private readonly appMsBy: Record<CoreEndpoint, number>
  private readonly readTimeoutMs: number
  private latencyMs: number
  private readonly listener: net.Server
  /** Parses requests on the sockets a worker has taken; never listens itself. */
  private readonly http: http.Server
  private readonly upstream: Pool
  private readonly waiting: net.Socket[] = []
  /** The worker holding each taken connection: how to free it, and whether its request has come. */
  private readonly connections = new WeakMap<net.Socket, { release: () => void; started: () => boolean }>()
  private readonly timers = new Set<NodeJS.Timeout>()
  private paused: Array<() => void> | undefined
  private busyNow = 0
  private closed = false
  private counters = GunicornModel.zero()

  constructor (readonly fake: FakeCore, opts: GunicornCoreOptions) {
    this.workers = Math.max(1, Math.floor(opts.workers ?? 2))
    this.backlog = Math.max(0, Math.floor(opts.backlog ?? 2048))
    this.roundTripsBy = { ...DEFAULT_ROUND_TRIPS, ...opts.roundTrips }
    this.appMsBy = { ...DEFAULT_APP_MS, ...opts.appMs }
    this.readTimeoutMs = opts.readTimeoutMs ?? 30_000
    this.latencyMs = opts.dbLatencyMs ?? 1
    this.upstream = new Pool(fake.url, { connections: this.workers * 2 })
    this.listener = net.createServer({ pauseOnConnect: true }, (socket) => this.onConnection(socket))
    this.http = http.createServer((req, res) => { void this.work(req, res) })
    // a request must arrive whole; the worker does not wait longer (gunicorn's --timeout)
    this.http.headersTimeout = this.readTimeoutMs
    this.http.requestTimeout = this.readTimeoutMs
    this.http.keepAliveTimeout = 1
  }

  private static zero (): Omit<GunicornCoreStats, 'workers' | 'backlog' | 'dbLatencyMs' | 'busy' | 'queued'> {
    return { maxBusySeen: 0, maxQueuedSeen: 0, accepted: 0, refused: 0, completed: 0, abandoned: 0, empty: 0, roundTrips: 0, byEndpoint: {} }
  }

  async listen (port: number): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.listener.once('error', reject)
      // the kernel's own queue stays large: the modelled backlog is the one kept here
      this.listener.listen({ port, host: '127.0.0.1', backlog: 4096 }, () => { this.listener.off('error', reject); resolve() })
    })
    this.port = (this.listener.address() as AddressInfo).port
    this.url = `http://127.0.0.1:${this.port}`
  }

  setDbLatency = (ms: number): void => {
    if (!Number.isFinite(ms) || ms < 0) throw new RangeError(`database latency must be a number ≥ 0, got ${ms}`)
    this.latencyMs = ms
  }

  dbLatency = (): number => this.latencyMs

  pauseDb = (): void => { this.paused ??= [] }

  resumeDb = (): void => {
    const held = this.paused ?? []
    this.paused = undefined
    for (const go of held) go()
  }

  stats = (): GunicornCoreStats => ({
    ...this.counters,
    byEndpoint: { ...this.counters.byEndpoint },
    workers: this.workers,
    backlog: this.backlog,
    dbLatencyMs: this.latencyMs,
    busy: this.busyNow,
    queued: this.waiting.length
  })

  reset = (): void => {
    this.counters = GunicornModel.zero()
    this.counters.maxBusySeen = this.busyNow
    this.counters.maxQueuedSeen = this.waiting.length
  }

  close = async (): Promise<void> => {
    if (this.closed) return
    this.closed = true
    for (const s of this.waiting.splice(0)) s.resetAndDestroy()
    for (const t of this.timers) clearTimeout(t)
    this.timers.clear()
    this.resumeDb()
    const stopped = new Promise<void>((resolve) => this.listener.close(() => resolve()))
    this.http.closeAllConnections()
    await stopped
    await this.upstream.destroy()
    await this.fake.close()
  }

  // ------------------------------------------------------------------------------- accept queue

  private onConnection (socket: net.Socket): void {
    socket.on('error', () => {})
    if (this.closed || this.waiting.length >= this.backlog) {
      // the listen queue is full: the client sees a reset, as with tcp_abort_on_overflow
      if (!this.closed) this.counters.refused++
      socket.resetAndDestroy()
      return
    }
    this.counters.accepted++
    this.waiting.push(socket)
    this.counters.maxQueuedSeen = Math.max(this.counters.maxQueuedSeen, this.waiting.length)
    this.assign()
  }

  /** Free workers take the oldest waiting connections. */
  private assign (): void {
    while (!this.closed && this.busyNow < this.workers && this.waiting.length > 0) {
      const socket = this.waiting.shift() as net.Socket
      this.busyNow++
      this.counters.maxBusySeen = Math.max(this.counters.maxBusySeen, this.busyNow)
      this.serve(socket)
    }
  }

  /**
   * A worker's connection: one request, then close. The worker is free again when that request is
   * finished, or when the connection ends without bringing one.
   */
  private serve (socket: net.Socket): void {
    let gotRequest = false
    socket.setTimeout(this.readTimeoutMs, () => { if (!gotRequest) socket.destroy() })
    let released = false
    const release = (): void => {
      if (released) return
      released = true
      this.busyNow--
      if (!socket.destroyed) socket.destroySoon()
      this.assign()
    }
    this.connections.set(socket, { release, started: () => { const first = !gotRequest; gotRequest = true; return first } })
    socket.once('close', () => {
      if (!gotRequest) { this.counters.empty++; release() }
    })
    this.http.emit('connection', socket)
    socket.resume()
  }

  // ------------------------------------------------------------------------------- the worker

  private async work (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const socket = req.socket
    const worker = this.connections.get(socket)
    req.on('error', () => {})
    res.on('error', () => {})
    // one request per connection: a pipelined second one is not read by a sync worker either
    if (worker === undefined || !worker.started()) { socket.destroy(); return }
    const release = worker.release
    try {
      const body = await readBody(req)
      // the answer first (instant: the fake's database costs nothing), then the time it costs here,
      // priced on what it turned out to be (a 304 or a 403 is cheap)
      const answer = await this.upstream.request({
        method: (req.method ?? 'GET') as 'GET',
        path: req.url ?? '/',
        headers: forwardHeaders(req.headers),
        body: body.length > 0 ? body : null
      })
      const payload = Buffer.from(await answer.body.arrayBuffer())
      const endpoint = endpointOf(req.method ?? 'GET', req.url ?? '/', answer.statusCode)
      await this.spend(endpoint)
      this.counters.completed++
      this.counters.byEndpoint[endpoint] = (this.counters.byEndpoint[endpoint] ?? 0) + 1
      // a sync worker learns that its client left only now, when its write fails
      if (res.destroyed || socket.destroyed || !socket.writable) {
        this.counters.abandoned++
        return
      }
      const headers: Record<string, string | string[]> = { Server: 'gunicorn', Connection: 'close' }
      for (const [k, v] of Object.entries(answer.headers)) if (v !== undefined && !HOP_BY_HOP.has(k)) headers[k] = v
      const bodyless = answer.statusCode === 304 || answer.statusCode === 204
      if (!bodyless) headers['Content-Length'] = String(payload.length)
      res.shouldKeepAlive = false
      await new Promise<void>((resolve) => {
        res.once('close', resolve)
        res.once('finish', resolve)
        res.writeHead(answer.statusCode, headers).end(bodyless ? undefined : payload)
      })
    } catch {
      // the fake went away (close) or the client sent garbage: the worker moves on
      if (!res.headersSent && !res.destroyed) res.writeHead(500, { Connection: 'close' }).end()
    } finally {
      release()
    }
  }

  /** The worker's time on this request: its own work, then each database round trip in turn. */
  private async spend (endpoint: CoreEndpoint): Promise<void> {
    await this.sleep(this.appMsBy[endpoint])
    const trips = this.roundTripsBy[endpoint]
    for (let i = 0; i < trips; i++) {
      if (this.paused !== undefined && !this.closed) await new Promise<void>((resolve) => this.paused?.push(resolve))
      this.counters.roundTrips++
      // read on every round trip, so a latency raised mid-request slows the rest of it
      await this.sleep(this.latencyMs)
    }
  }

  private async sleep (ms: number): Promise<void> {
    if (ms <= 0 || this.closed) return
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => { this.timers.delete(t); resolve() }, ms)
      this.timers.add(t)
    })
  }
}

async function readBody (req: http.IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const c of req) chunks.push(c as Buffer)
  return Buffer.concat(chunks)
}

function forwardHeaders (h: http.IncomingHttpHeaders): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {}
  for (const [k, v] of Object.entries(h)) if (v !== undefined && !HOP_BY_HOP.has(k) && k !== 'host') out[k] = v
  return out
}
