/**
 * The cache on the request path (SPEC section 3), for routes with a `cache` rule, GET and HEAD:
 *
 * - onRequest (before the rate limiter, so a 304 costs no token): a conditional request that
 *   matches a fresh cached document gets 304 from memory;
 * - preHandler (after the limiter): HIT / UPDATING / STALE from memory, or MISS after the one
 *   shared upstream request for this key. Requests without X-Environment-Key are BYPASS: they go
 *   to the proxy untouched (Core answers them 403).
 *
 * The cache fetches documents itself (undici through {@link Upstreams.request}) rather than through
 * reply-from, so that one upstream answer can be given to every request waiting for it. Bodies are
 * sent as the stored Buffer: nothing is parsed or serialised on the hot path.
 *
 * `X-Flaggate-Upstream` is the upstream's name when this request waited on an upstream answer
 * (MISS), and `none` when the gateway answered from memory (HIT, STALE, UPDATING, 304).
 */
import fp from 'fastify-plugin'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { clientHasCurrent, TooLargeToCache, type CachedDocument, type DocumentCache, type Fill, type LookupResult, type UpstreamAnswer } from './core.js'
import { removeHopByHop, upstreamRequestHeaders } from '../routing/headers.js'
import { elapsedMs, UPSTREAM_HEADER } from '../routing/proxy.js'
import { BodyTooLarge, type UpstreamResponse, type Upstreams } from '../routing/upstreams.js'
import type { Metrics } from '../metrics/registry.js'
import type { RequestGateway } from '../shared/types.js'

export const CACHE_STATUS_HEADER = 'x-cache-status'

export interface CachePluginOptions {
  cache: DocumentCache
  upstreams: Pick<Upstreams, 'request'>
  metrics?: Metrics
  /** the upstream's breaker is open: serve stale within staleIfError and do not call it */
  breakerOpen?: (upstream: string) => boolean
  /**
   * Wraps each cache fill, so that the breaker counts its outcome and latency and `maxInFlight`
   * applies to it; may throw (e.g. FLAGGATE_UPSTREAM_OVERLOADED), which counts as an upstream
   * failure for staleIfError.
   */
  guard?: (upstream: string, routeName: string, run: () => Promise<UpstreamResponse>) => Promise<UpstreamResponse>
}

/**
 * Client headers that must not reach Core on a fill: the fill is shared by every waiter, so one
 * client's conditionals or ranges must not shape the answer the others get.
 */
const PER_CLIENT_HEADERS = ['if-none-match', 'if-modified-since', 'if-match', 'if-unmodified-since', 'if-range', 'range', 'cache-control', 'pragma'] as const
/** Headers of a passed-through upstream answer that describe that one transfer, not the resource. */
const TRANSFER_HEADERS = ['content-length', 'date'] as const

function singleHeader (v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v.join(', ') : v
}


function documentHeaders (doc: CachedDocument, status: string, freshForMs: number, upstream: string): Record<string, string> {
  return {
    ...doc.headers,
    etag: doc.etag,
    'last-modified': doc.lastModified,
    // Core says no-store; on this route we say how long the copy is good for, and only for this
    // client: the document belongs to its key
    'cache-control': `private, max-age=${Math.floor(freshForMs / 1000)}`,
    vary: 'X-Environment-Key',
    [CACHE_STATUS_HEADER]: status,
    [UPSTREAM_HEADER]: upstream
  }
}

function isCacheable (request: FastifyRequest): RequestGateway | undefined {
  const gw = request.gateway
  if (gw?.route?.cache === undefined) return undefined
  if (request.method !== 'GET' && request.method !== 'HEAD') return undefined
  return gw
}

async function cachePlugin (app: FastifyInstance, opts: CachePluginOptions): Promise<void> {
  const { cache, upstreams, metrics, breakerOpen, guard } = opts

  app.addHook('onRequest', (request, reply, done) => {
    const gw = isCacheable(request)
    const ifNoneMatch = singleHeader(request.headers['if-none-match'])
    const ifModifiedSince = request.headers['if-modified-since']
    if (gw === undefined || gw.envKey === undefined || (ifNoneMatch === undefined && ifModifiedSince === undefined)) { done(); return }
    const hit = cache.notModified(gw.envKey, gw.upstreamUrl, gw.route!.cache!, ifNoneMatch, ifModifiedSince)
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
      result = await cache.lookup({
        envKey: gw.envKey,
        url: gw.upstreamUrl,
        rule,
        breakerOpen: breakerOpen?.(gw.upstream) ?? false,
        fill: fillFor(request, gw)
      })
    } catch (err) {
      gw.cacheStatus = 'MISS'
      void reply.header(CACHE_STATUS_HEADER, 'MISS')
      throw err
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

  /** The upstream request of a fill, made on behalf of the request that started it. */
  function fillFor (request: FastifyRequest, gw: RequestGateway): Fill {
    return async ({ ifModifiedSince }) => {
      const target = gw.policy.targets[gw.upstream]!
      const headers = upstreamRequestHeaders(request, target.host)
      for (const name of PER_CLIENT_HEADERS) delete headers[name]
      // the stored bytes are served to every client, whatever encodings each accepts
      headers['accept-encoding'] = 'identity'
      if (ifModifiedSince !== undefined) headers['if-modified-since'] = ifModifiedSince
      const run = async (): Promise<UpstreamResponse> => {
        try {
          return await upstreams.request({ origin: target.origin, path: gw.upstreamUrl, method: 'GET', headers, timeoutMs: target.timeoutMs, maxBodyBytes: gw.route!.cache!.maxEntrySize })
        } catch (err) {
          throw err instanceof BodyTooLarge ? new TooLargeToCache() : err
        }
      }
      const started = gw.upstreamStartedAt = process.hrtime.bigint()
      try {
        return guard === undefined ? await run() : await guard(gw.upstream, gw.route!.name, run)
      } finally {
        gw.upstreamMs = elapsedMs(started)
        metrics?.upstreamDuration.observe({ upstream: gw.upstream, route: gw.route!.name }, gw.upstreamMs / 1000)
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
  const headers: Record<string, string | string[] | undefined> = { ...answer.headers }
  removeHopByHop(headers)
  for (const name of TRANSFER_HEADERS) delete headers[name]
  headers[CACHE_STATUS_HEADER] = status
  headers[UPSTREAM_HEADER] = upstream
  for (const name in headers) if (headers[name] === undefined) delete headers[name]
  void reply.code(answer.statusCode).headers(headers).send(answer.body)
}

export default fp(cachePlugin, { name: 'gateway-cache', fastify: '5.x', dependencies: ['gateway-routing'] })
