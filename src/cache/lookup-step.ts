/**
 * The cache's `lookup` step (preHandler, after the rate limit; contracts/pipeline.ts), for routes
 * with a `cache` rule, GET and HEAD: HIT / UPDATING / STALE from memory, or MISS after the one
 * shared upstream request for this key. Requests without X-Environment-Key are BYPASS: they go
 * to the proxy untouched (Core answers them 403).
 *
 * The cache fetches documents itself (the upstream module's buffered `fetch`, through its gate)
 * rather than streaming, so that one upstream answer can be given to every request waiting for it.
 * The fill's headers come from an allow-list and the request's resolved state (upstream/headers.ts),
 * never from the first client's raw header set. Bodies are sent as the stored Buffer: nothing is
 * parsed or serialised on the hot path.
 */
import fp from 'fastify-plugin'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { Readable } from 'node:stream'
import type { DocumentCache } from './core.js'
import { TooLargeToCache, type CacheRule, type Fill, type LookupResult, type OversizeAnswer, type UpstreamAnswer } from './document.js'
import { BodyTooLarge, elapsedMs, fillRequestHeaders, responseHeaders, type UpstreamClient } from '../upstream/index.js'
import type { Metrics } from '../metrics/registry.js'
import { GatewayError } from '../errors.js'
import type { RequestGateway } from '../contracts/request.js'
import { CACHE_STATUS_HEADER, isCacheable, sendDocument, TRANSFER_HEADERS } from './respond.js'

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

async function cacheLookup (app: FastifyInstance, opts: CachePluginOptions): Promise<void> {
  const { cache, client, metrics } = opts


  // Callback style, so routes without a cache rule pass with no promise at all. Fresh HITs were
  // answered in onRequest (hit-steps.ts); this is for the rest.
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
      // nothing servable and the breaker is open: the breakers' gate answers 503
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

export default fp(cacheLookup, { name: 'gateway-cache-lookup', fastify: '5.x', dependencies: ['gateway-routing'] })
