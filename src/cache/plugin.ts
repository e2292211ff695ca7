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
import { clientHasCurrent, TooLargeToCache, type CacheRule, type CachedDocument, type DocumentCache, type Fill, type LookupResult, type UpstreamAnswer } from './core.js'
import { BodyTooLarge, elapsedMs, fillRequestHeaders, responseHeaders, type UpstreamClient } from '../upstream/index.js'
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


function documentHeaders (doc: CachedDocument, status: string, freshForMs: number, upstream: string): Record<string, string> {
  const h = responseHeaders(doc.headers, upstream) as Record<string, string>
  h.etag = doc.etag
  h['last-modified'] = doc.lastModified
  // Core says no-store; on this route we say how long the copy is good for, and only for this
  // client: the document belongs to its key
  h['cache-control'] = `private, max-age=${Math.floor(freshForMs / 1000)}`
  h.vary = 'X-Environment-Key'
  h[CACHE_STATUS_HEADER] = status
  return h
}

function isCacheable (request: FastifyRequest): RequestGateway | undefined {
  const gw = request.gateway
  if (gw?.route?.cache === undefined) return undefined
  if (request.method !== 'GET' && request.method !== 'HEAD') return undefined
  return gw
}

async function cachePlugin (app: FastifyInstance, opts: CachePluginOptions): Promise<void> {
  const { cache, client, metrics } = opts

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
    void reply.code(304).headers(notModifiedHeaders(hit.document, 'HIT', hit.freshForMs, 'none')).send()
  })

  // Callback style, so routes without a cache rule pass with no promise at all.
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
      // larger than maxEntrySize: the proxy streams it, nothing is buffered here
      gw.cacheStatus = 'BYPASS'
      void reply.header(CACHE_STATUS_HEADER, 'BYPASS')
      metrics?.cacheEvents.inc({ event: 'bypass' })
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

    const doc = result.document
    if (clientHasCurrent(doc, singleHeader(request.headers['if-none-match']), request.headers['if-modified-since'])) {
      void reply.code(304).headers(notModifiedHeaders(doc, result.status, result.freshForMs, upstream)).send()
      return true
    }
    void reply.code(200).headers(documentHeaders(doc, result.status, result.freshForMs, upstream)).send(doc.body)
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
        return await client.fetch({ upstream: gw.upstream, route: gw.route!.name, path: gw.upstreamUrl, method: 'GET', headers, timeoutMs: timeoutMs ?? target.timeoutMs, maxBodyBytes: gw.route!.cache!.maxEntrySize })
      } catch (err) {
        throw err instanceof BodyTooLarge ? new TooLargeToCache() : err
      } finally {
        gw.upstreamMs = elapsedMs(started)
      }
    }
  }
}

function notModifiedHeaders (doc: CachedDocument, status: string, freshForMs: number, upstream: string): Record<string, string> {
  const h = documentHeaders(doc, status, Math.max(0, freshForMs), upstream)
  // a 304 carries the validators and caching headers, not the representation's own
  delete h['content-type']
  delete h.link
  return h
}

/** Replays an upstream answer that was not stored: status, headers and bytes as Core sent them. */
function sendAnswer (reply: FastifyReply, answer: UpstreamAnswer, status: 'HIT' | 'MISS', upstream: string): void {
  const headers = responseHeaders(answer.headers, upstream)
  for (const name of TRANSFER_HEADERS) delete headers[name]
  headers[CACHE_STATUS_HEADER] = status
  void reply.code(answer.statusCode).headers(headers).send(answer.body)
}

export default fp(cachePlugin, { name: 'gateway-cache', fastify: '5.x', dependencies: ['gateway-routing'] })
