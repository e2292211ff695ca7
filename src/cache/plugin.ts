/**
 * The cache on the request path (SPEC section 3), for routes with a `cache` rule, GET and HEAD:
 *
 * - onRequest (before the rate limiter, so a 304 costs no token): a conditional request that
 *   matches a fresh cached document gets 304 from memory;
 * - preHandler (after the limiter): HIT / UPDATING / STALE from memory, or MISS after the one
 *   shared upstream request for this key. Requests without X-Environment-Key are BYPASS: they go
 *   to the proxy untouched (Core answers them 403).
 *
 * The cache fetches documents itself (the upstream module's buffered `fetch`, through its gate)
 * rather than streaming, so that one upstream answer can be given to every request waiting for it.
 * The fill's headers come from an allow-list and the request's resolved state (upstream/headers.ts),
 * never from the first client's raw header set. Bodies are sent as the stored Buffer: nothing is
 * parsed or serialised on the hot path.
 *
 * `X-Flaggate-Upstream` is the upstream's name when this request waited on an upstream answer
 * (MISS), and `none` when the gateway answered from memory (HIT, STALE, UPDATING, 304).
 */
import fp from 'fastify-plugin'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { Readable } from 'node:stream'
import { clientHasCurrent, TooLargeToCache, type CacheRule, type CachedDocument, type DocumentCache, type Fill, type LookupResult, type OversizeAnswer, type UpstreamAnswer } from './core.js'
import { BodyTooLarge, elapsedMs, fillRequestHeaders, responseHeaders, UPSTREAM_HEADER, type UpstreamClient } from '../upstream/index.js'
import type { Metrics } from '../metrics/registry.js'
import { GatewayError } from '../errors.js'
import type { RequestGateway } from '../shared/types.js'

export const CACHE_STATUS_HEADER = 'x-cache-status'

export interface CachePluginOptions {
  cache: DocumentCache
  /**
   * Fills go through `client.fetch`, so the gate (breaker, `maxInFlight`) counts their outcome and
   * may shed them (FLAGGATE_UPSTREAM_OVERLOADED, which counts as an upstream failure for
   * staleIfError); while `client.gate.isOpen(upstream)`, stale is served within staleIfError and
   * the upstream is not called.
   */
  client: Pick<UpstreamClient, 'fetch' | 'gate'>
  metrics?: Metrics
}
/** Headers of a passed-through upstream answer that describe that one transfer, not the resource. */
const TRANSFER_HEADERS = ['content-length', 'date'] as const

function singleHeader (v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v.join(', ') : v
}


// ---------------------------------------------------------------------------------------------
// HIT side: a stored document → its response. Entries are immutable, so what a response needs
// from an entry is computed once per entry (on its first answer) and reused; per request only
// Cache-Control's max-age, X-Cache-Status and X-Flaggate-Upstream change.
// ---------------------------------------------------------------------------------------------

interface EntryHeaders {
  /** the representation's headers (content-type, X-Flagsmith-Document-Updated-At, Link) and validators */
  readonly ok: Readonly<Record<string, string>>
  /** a 304 carries the validators and caching headers, not the representation's own */
  readonly notModified: Readonly<Record<string, string>>
  /** `ok` and the body's Content-Length as [name, value, ...], for writeHead */
  readonly okFlat: readonly string[]
  /** `notModified` as [name, value, ...] */
  readonly notModifiedFlat: readonly string[]
}

const entryHeaders = new WeakMap<CachedDocument, EntryHeaders>()

function flat (headers: Readonly<Record<string, string>>): string[] {
  const out: string[] = []
  for (const k in headers) out.push(k, headers[k]!)
  return out
}

function headersOf (doc: CachedDocument): EntryHeaders {
  let h = entryHeaders.get(doc)
  if (h === undefined) {
    // the one response-header policy (upstream/headers.ts); X-Flaggate-Upstream is per request
    const base = responseHeaders(doc.headers, 'none') as Record<string, string>
    delete base[UPSTREAM_HEADER]
    const validators = { etag: doc.etag, 'last-modified': doc.lastModified, vary: 'X-Environment-Key' }
    const notModified: Record<string, string> = { ...base, ...validators }
    delete notModified['content-type']
    delete notModified.link
    const ok = { ...base, ...validators }
    h = Object.freeze({
      ok: Object.freeze(ok),
      notModified: Object.freeze(notModified),
      okFlat: Object.freeze([...flat(ok), 'content-length', String(doc.body.length)]),
      notModifiedFlat: Object.freeze(flat(notModified))
    })
    entryHeaders.set(doc, h)
  }
  return h
}

// Core says no-store; on this route we say how long the copy is good for, and only for this
// client: the document belongs to its key. One string per whole second of freshness.
const cacheControls: string[] = []
function cacheControl (freshForMs: number): string {
  const s = freshForMs > 0 ? Math.floor(freshForMs / 1000) : 0
  if (s >= 86_400) return `private, max-age=${s}`
  return cacheControls[s] ??= `private, max-age=${s}`
}

/**
 * 200 with the stored bytes, or 304 when the client's validators say it has them: one writeHead
 * with the headers other hooks set (RateLimit), the entry's precomputed ones and the three that
 * change per request, then the stored Buffer. Written on the Node response, not through
 * reply.send: fastify would copy the entry's headers into the reply one by one (lower-casing
 * each name), then walk them again for writeHead, on every hit. onResponse hooks run as for any
 * answer (fastify listens for the response's end).
 */
function sendDocument (request: FastifyRequest, reply: FastifyReply, doc: CachedDocument, status: string, freshForMs: number, upstream: string): void {
  const h = headersOf(doc)
  const inm = request.headers['if-none-match']
  const ims = request.headers['if-modified-since']
  const current = (inm !== undefined || ims !== undefined) && clientHasCurrent(doc, singleHeader(inm), ims)
  // The access log reads X-Flaggate-Upstream from the reply, and logs `none` when it finds none:
  // only an answer fetched for this request (MISS) needs it set there.
  if (upstream !== 'none') void reply.header(UPSTREAM_HEADER, upstream)
  const out: string[] = []
  const set = reply.getHeaders()
  for (const k in set) {
    const v = set[k]
    if (Array.isArray(v)) { for (const x of v) out.push(k, x) } else if (v !== undefined) out.push(k, String(v))
  }
  const entry = current ? h.notModifiedFlat : h.okFlat
  for (let i = 0; i < entry.length; i++) out.push(entry[i]!)
  out.push('cache-control', cacheControl(freshForMs), CACHE_STATUS_HEADER, status)
  if (upstream === 'none') out.push(UPSTREAM_HEADER, upstream)
  const res = reply.raw
  // writeHead first: should it refuse a header, nothing is sent and fastify answers the error
  res.writeHead(current ? 304 : 200, out)
  reply.hijack()
  if (current) res.end(); else res.end(doc.body)
}

/**
 * Answers from memory are written in the check phase of the event-loop turn that read their
 * requests (one setImmediate per turn, not per answer): the turn's requests are parsed first and
 * their answers written after, as a Redis-backed limiter's round trip already arranges for every
 * request. Written from inside the parser's callback instead, each answer also pays for Node
 * finishing the request stream around it (`_dump`, `endReadable`, `resume` on the next tick).
 * Measured on a HIT at 50 connections: 0.76× the CPU per request, and no later answer at one
 * connection (p50 70–95 µs before, 81–88 µs after; bench/results.md, "Fourth round"). The deferral
 * stays within the turn: nothing waits on a timer, or on other clients' work beyond that turn's.
 */
class TurnWriter {
  #requests: FastifyRequest[] = []
  #replies: FastifyReply[] = []
  #docs: CachedDocument[] = []
  #fresh: number[] = []
  readonly #flush = (): void => {
    const requests = this.#requests
    const replies = this.#replies
    const docs = this.#docs
    const fresh = this.#fresh
    this.#requests = []
    this.#replies = []
    this.#docs = []
    this.#fresh = []
    for (let i = 0; i < requests.length; i++) {
      try {
        sendDocument(requests[i]!, replies[i]!, docs[i]!, 'HIT', fresh[i]!, 'none')
      } catch (err) {
        // what fastify does with an error thrown in a hook; without this a throw here would end the process
        if (!replies[i]!.sent) void replies[i]!.send(err)
      }
    }
  }

  hit (request: FastifyRequest, reply: FastifyReply, doc: CachedDocument, freshForMs: number): void {
    if (this.#requests.push(request) === 1) setImmediate(this.#flush)
    this.#replies.push(reply)
    this.#docs.push(doc)
    this.#fresh.push(freshForMs)
  }
}

function isCacheable (request: FastifyRequest): RequestGateway | undefined {
  const gw = request.gateway
  if (gw?.route?.cache === undefined) return undefined
  if (request.method !== 'GET' && request.method !== 'HEAD') return undefined
  return gw
}

async function cachePlugin (app: FastifyInstance, opts: CachePluginOptions): Promise<void> {
  const { cache, client, metrics } = opts
  const writer = new TurnWriter()

  app.addHook('onRequest', (request, reply, done) => {
    const gw = isCacheable(request)
    const ifNoneMatch = singleHeader(request.headers['if-none-match'])
    const ifModifiedSince = request.headers['if-modified-since']
    if (gw === undefined || gw.envKey === undefined || (ifNoneMatch === undefined && ifModifiedSince === undefined)) { done(); return }
    const hit = cache.notModified(gw.envKey, gw.upstreamUrl, gw.route!.cache!, ifNoneMatch, ifModifiedSince, gw.upstream)
    if (hit === undefined) { done(); return }
    gw.cacheStatus = 'HIT'
    gw.decision = 'cached'
    // replying from a callback-style hook: fastify skips the rest of the chain, done() is not called
    writer.hit(request, reply, hit.document, hit.freshForMs)
  })

  // Callback style, so routes without a cache rule pass with no promise at all. Fresh HITs were
  // answered in onRequest (the hits plugin, below); this is for the rest.
  app.addHook('preHandler', (request, reply, done) => {
    const gw = isCacheable(request)
    if (gw === undefined) { done(); return }
    serve(request, reply, gw).then((sent) => { if (!sent) done() }, (err: Error) => { done(err) })
  })

  /** true when this hook answered the request, false to let it go on to the proxy */
  async function serve (request: FastifyRequest, reply: FastifyReply, gw: RequestGateway): Promise<boolean> {
    const rule = gw.route!.cache!
    if (gw.envKey === undefined) {
      gw.cacheStatus = 'BYPASS'
      void reply.header(CACHE_STATUS_HEADER, 'BYPASS')
      metrics?.cacheEvents.inc({ event: 'bypass' })
      return false
    }

    let result: LookupResult
    try {
      result = await lookup(request, gw, rule, undefined)
      // edge routing: a read whose document Edge failed to give is asked of the fallback once,
      // as the proxy does, under the fallback's own key (the documents never mix)
      if (gw.fallbackUpstream !== undefined && result.kind === 'response' && result.status === 'MISS' && result.response.statusCode >= 500) {
        result = await lookupOnFallback(request, gw, rule) ?? result
      }
    } catch (err) {
      let fallback: LookupResult | undefined
      if (gw.fallbackUpstream !== undefined && err instanceof GatewayError && (err.code === 'FLAGGATE_UPSTREAM_TIMEOUT' || err.code === 'FLAGGATE_UPSTREAM_UNREACHABLE')) {
        fallback = await lookupOnFallback(request, gw, rule).catch((e: unknown) => { err = e; return undefined })
      }
      if (fallback === undefined) {
        gw.cacheStatus = 'MISS'
        void reply.header(CACHE_STATUS_HEADER, 'MISS')
        throw err
      }
      result = fallback
    }

    if (result.kind === 'pass') {
      // larger than maxEntrySize: nothing is buffered here. The request that started the fill
      // sends on the fill's answer; any other goes to the proxy (its own upstream request)
      gw.cacheStatus = 'BYPASS'
      metrics?.cacheEvents.inc({ event: 'bypass' })
      const answer = result.answer as Handover | undefined
      const body = answer?.take(request)
      if (answer !== undefined && body !== undefined) {
        void reply.code(answer.statusCode).headers(responseHeaders(answer.headers, gw.upstream)).header(CACHE_STATUS_HEADER, 'BYPASS').send(body)
        return true
      }
      void reply.header(CACHE_STATUS_HEADER, 'BYPASS')
      return false
    }
    if (result.kind === 'unavailable') {
      // nothing servable and the breaker is open: the breaker room answers 503
      gw.cacheStatus = 'MISS'
      void reply.header(CACHE_STATUS_HEADER, 'MISS')
      return false
    }
    gw.cacheStatus = result.status
    if (result.status === 'HIT') gw.decision = 'cached'
    else if (result.status === 'STALE' || result.status === 'UPDATING') gw.decision = 'stale'
    const upstream = result.status === 'MISS' ? gw.upstream : 'none'

    if (result.kind === 'response') { sendAnswer(reply, result.response, result.status, upstream); return true }

    sendDocument(request, reply, result.document, result.status, result.freshForMs, upstream)
    return true
  }

  async function lookup (request: FastifyRequest, gw: RequestGateway, rule: CacheRule, timeoutMs: number | undefined): Promise<LookupResult> {
    return await cache.lookup({
      envKey: gw.envKey!,
      url: gw.upstreamUrl,
      upstream: gw.upstream,
      rule,
      breakerOpen: client.gate.isOpen(gw.upstream),
      fill: fillFor(request, gw, timeoutMs)
    })
  }

  /**
   * Moves the request to `gw.fallbackUpstream` (once) and looks the document up there, within what
   * is left of the route's upstream timeout since the first fill started; undefined when no time
   * is left.
   */
  async function lookupOnFallback (request: FastifyRequest, gw: RequestGateway, rule: CacheRule): Promise<LookupResult | undefined> {
    const from = gw.upstream
    const to = gw.fallbackUpstream!
    gw.fallbackUpstream = undefined
    const fromTarget = gw.policy.targets[from]!
    const toTarget = gw.policy.targets[to]
    const budgetMs = gw.policy.targets[gw.route!.upstream]?.timeoutMs ?? fromTarget.timeoutMs
    const remainingMs = Math.floor(budgetMs - elapsedMs(gw.upstreamStartedAt ?? gw.startedAt))
    if (toTarget === undefined || remainingMs < 1) return undefined
    gw.upstreamUrl = toTarget.basePath + gw.upstreamUrl.slice(fromTarget.basePath.length)
    gw.upstream = to
    metrics?.upstreamFallbacks.labels(gw.route!.name, from, to).inc()
    return await lookup(request, gw, rule, Math.min(toTarget.timeoutMs, remainingMs))
  }

  /** The upstream request of a fill, made on behalf of the request that started it. */
  function fillFor (request: FastifyRequest, gw: RequestGateway, timeoutMs: number | undefined): Fill {
    return async ({ ifModifiedSince }) => {
      const target = gw.policy.targets[gw.upstream]!
      const headers = fillRequestHeaders(request, target)
      // the stored bytes are served to every client, whatever encodings each accepts
      headers['accept-encoding'] = 'identity'
      if (ifModifiedSince !== undefined) headers['if-modified-since'] = ifModifiedSince
      const started = process.hrtime.bigint()
      gw.upstreamStartedAt ??= started
      try {
        return await client.fetch({ upstream: gw.upstream, route: gw.route!.name, path: gw.upstreamUrl, method: 'GET', headers, timeoutMs: timeoutMs ?? target.timeoutMs, maxBodyBytes: gw.route!.cache!.maxEntrySize, handOverLargeBody: true, client: { key: gw.envKey, ip: gw.clientIp } })
      } catch (err) {
        throw err instanceof BodyTooLarge ? new TooLargeToCache(handOver(request, err)) : err
      } finally {
        gw.upstreamMs = elapsedMs(started)
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Oversize documents: the fill's answer, still streaming, goes to the request that started it
// ---------------------------------------------------------------------------------------------

class Handover implements OversizeAnswer {
  #body: Readable | undefined
  constructor (readonly owner: FastifyRequest, readonly statusCode: number, readonly headers: UpstreamAnswer['headers'], body: Readable) {
    this.#body = body
    // The fill's waiters all run in the microtasks that follow its rejection. If the one that
    // started it is not among them (a background refresh), nobody takes the answer: release
    // the upstream connection.
    setImmediate(() => { this.#body?.destroy(); this.#body = undefined })
  }

  take (owner: unknown): Readable | undefined {
    if (owner !== this.owner) return undefined
    const b = this.#body
    this.#body = undefined
    return b
  }
}

function handOver (request: FastifyRequest, err: BodyTooLarge): Handover | undefined {
  const a = err.answer
  return a === undefined ? undefined : new Handover(request, a.statusCode, a.headers, a.body)
}

/** Replays an upstream answer that was not stored: status, headers and bytes as Core sent them. */
function sendAnswer (reply: FastifyReply, answer: UpstreamAnswer, status: 'HIT' | 'MISS', upstream: string): void {
  const headers = responseHeaders(answer.headers, upstream)
  for (const name of TRANSFER_HEADERS) delete headers[name]
  headers[CACHE_STATUS_HEADER] = status
  void reply.code(answer.statusCode).headers(headers).send(answer.body)
}

export default fp(cachePlugin, { name: 'gateway-cache', fastify: '5.x', dependencies: ['gateway-routing'] })

/**
 * Fresh HITs answered in onRequest, registered after the rate limiter: a hit needs the route,
 * the key, the limit's decision and the entry, and nothing fastify does between onRequest and
 * the handler (preParsing, body, preValidation, preHandler). Anything else goes on to the cache
 * plugin's preHandler.
 */
async function cacheHits (app: FastifyInstance, opts: Pick<CachePluginOptions, 'cache'>): Promise<void> {
  const { cache } = opts
  const writer = new TurnWriter()
  app.addHook('onRequest', (request, reply, done) => {
    const gw = isCacheable(request)
    if (gw === undefined || gw.envKey === undefined) { done(); return }
    const rule = gw.route!.cache!
    const doc = cache.fresh(gw.envKey, gw.upstreamUrl, rule, gw.upstream)
    if (doc === undefined) { done(); return }
    gw.cacheStatus = 'HIT'
    gw.decision = 'cached'
    // replying from a callback-style hook: fastify skips the rest of the chain, done() is not called
    writer.hit(request, reply, doc, cache.freshForMs(doc, rule))
  })
}

export const cacheHitsPlugin = fp(cacheHits, { name: 'gateway-cache-hits', fastify: '5.x', dependencies: ['gateway-routing', 'gateway-cache'] })
