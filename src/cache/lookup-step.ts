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
import { BodyTooLarge, elapsedMs, fillRequestHeaders, responseHeaders, takeFallback, timeUpstream, type UpstreamClient } from '../upstream/index.js'
import type { Metrics } from '../metrics/registry.js'
import { GatewayError } from '../errors.js'
import { upstreamOf, upstreamUrlOf, type RequestGateway } from '../contracts/request.js'
import { CACHE_STATUS_HEADER, isCacheable, sendDocument, TRANSFER_HEADERS } from './respond.js'
import type { Representations } from './representations.js'
import { decodeBody, DecodedTooLarge, isEncoded, UndecodableBody } from '../compress/decode.js'
import { acceptsCoding, decodeStreaming } from '../compress/decode-stream.js'
import { codingLabel, countStreamed } from '../compress/count-stream.js'
import { HotChildTable } from '../metrics/hot-counter.js'

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
  /** compressed forms of entries, and the byte counters (representations.ts) */
  representations: Representations
}

/** What a fill asks the upstream for: the stored body is decoded, so any of these will do. */
export const FILL_ACCEPT_ENCODING = 'gzip, br'

async function cacheLookup (app: FastifyInstance, opts: CachePluginOptions): Promise<void> {
  const { cache, client, metrics, representations: reps } = opts
  // bytes out of the handed-over answers (they stream), by the coding sent
  const bytesOut = metrics === undefined ? undefined : new HotChildTable(metrics.hot.responseBytes, (route, encoding) => ({ route, encoding }))


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
      if (gw.edge?.fallback !== undefined && result.kind === 'response' && result.status === 'MISS' && result.response.statusCode >= 500) {
        result = await lookupOnFallback(request, gw, rule) ?? result
      }
    } catch (err) {
      let fallback: LookupResult | undefined
      if (gw.edge?.fallback !== undefined && err instanceof GatewayError && (err.code === 'FLAGGATE_UPSTREAM_TIMEOUT' || err.code === 'FLAGGATE_UPSTREAM_UNREACHABLE')) {
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
        const headers = responseHeaders(answer.headers, upstreamOf(gw))
        // the fill asked Core for `gzip, br`: a client that did not accept Core's coding gets the
        // answer decoded on the fly (compress/decode-stream.ts), or a 502 for a coding we cannot decode
        let sent = body
        if (!acceptsCoding(request.headers['accept-encoding'], headers['content-encoding'])) {
          const d = decodeStreaming(body, headers)
          if (d === undefined) {
            body.destroy()
            throw new GatewayError('FLAGGATE_UPSTREAM_UNREACHABLE', `The upstream's answer is in a content-coding the gateway cannot decode (${String(headers['content-encoding'])}).`)
          }
          sent = d
        }
        if (bytesOut !== undefined) countStreamed(sent, bytesOut.get(gw.route!.name, codingLabel(headers['content-encoding']), ''))
        void reply.code(answer.statusCode).headers(headers).header(CACHE_STATUS_HEADER, 'BYPASS').send(sent)
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
    const upstream = result.status === 'MISS' ? upstreamOf(gw) : 'none'

    if (result.kind === 'response') { sendAnswer(reply, result.response, result.status, upstream); return true }

    sendDocument(reps, request, reply, result.document, result.status, result.freshForMs, upstream)
    return true
  }

  async function lookup (request: FastifyRequest, gw: RequestGateway, rule: CacheRule, timeoutMs: number | undefined): Promise<LookupResult> {
    const upstream = upstreamOf(gw)
    // keyed and filled by the same URL: no page_id for an upstream that does not paginate (pages.ts)
    const url = cache.documentUrl(upstreamUrlOf(gw), upstream)
    return await cache.lookup({
      envKey: gw.envKey!,
      url,
      upstream,
      rule,
      breakerOpen: client.gate.isOpen(upstream),
      fill: fillFor(request, gw, url, timeoutMs)
    })
  }

  /**
   * Moves the request to the edge step's fallback (once, by the Edge fallback rule of
   * upstream/fallback.ts) and looks the document up there; undefined when no time is left.
   */
  async function lookupOnFallback (request: FastifyRequest, gw: RequestGateway, rule: CacheRule): Promise<LookupResult | undefined> {
    const plan = takeFallback(gw, elapsedMs(gw.upstreamStartedAt ?? gw.startedAt))
    if (plan === undefined) return undefined
    metrics?.upstreamFallbacks.labels(gw.route!.name, plan.from, plan.to).inc()
    return await lookup(request, gw, rule, plan.timeoutMs)
  }

  /** The upstream request of a fill, made on behalf of the request that started it. */
  function fillFor (request: FastifyRequest, gw: RequestGateway, url: string, timeoutMs: number | undefined): Fill {
    return async ({ ifModifiedSince }) => {
      const upstream = upstreamOf(gw)
      const target = gw.policy.targets[upstream]!
      const headers = fillRequestHeaders(request, target)
      // the stored bytes are decoded (below) and served to every client in the coding it accepts:
      // a Core with compression on sends fewer bytes, and we never store what we cannot decode
      headers['accept-encoding'] = FILL_ACCEPT_ENCODING
      if (ifModifiedSince !== undefined) headers['if-modified-since'] = ifModifiedSince
      const timer = timeUpstream(gw)
      try {
        const answer = await client.fetch({ upstream, route: gw.route!.name, path: url, method: 'GET', headers, timeoutMs: timeoutMs ?? target.timeoutMs, maxBodyBytes: gw.route!.cache!.maxEntrySize, handOverLargeBody: true, client: { key: gw.envKey, ip: gw.clientIp } })
        return await decoded(answer, gw.route!.cache!.maxEntrySize)
      } catch (err) {
        throw err instanceof BodyTooLarge ? new TooLargeToCache(handOver(request, err)) : err
      } finally {
        timer.stop()
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

/**
 * The answer with its body decoded (Content-Encoding gone), bounded by `maxEntrySize` decoded
 * bytes. A body that does not decode is the upstream's failure: 502, or the stale copy
 * (stale-if-error), never our 500. One that decodes past `maxEntrySize` is not cached: the
 * request goes to the proxy, as for any document too large.
 */
async function decoded (answer: UpstreamAnswer, maxEntrySize: number): Promise<UpstreamAnswer> {
  const ce = answer.headers['content-encoding']
  if (!isEncoded(ce) || answer.body.length === 0) return answer
  try {
    const body = await decodeBody(answer.body, ce, maxEntrySize)
    const headers = { ...answer.headers }
    delete headers['content-encoding']
    delete headers['content-length']
    return { statusCode: answer.statusCode, headers, body }
  } catch (err) {
    if (err instanceof DecodedTooLarge) throw new TooLargeToCache()
    if (err instanceof UndecodableBody) throw new GatewayError('FLAGGATE_UPSTREAM_UNREACHABLE', `The upstream's answer could not be decoded (${err.message}).`)
    throw err
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
