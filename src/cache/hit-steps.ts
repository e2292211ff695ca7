/**
 * The two cache steps that answer from memory in onRequest (contracts/pipeline.ts):
 *
 * - `conditional`, before the rate limit: a conditional request (If-None-Match /
 *   If-Modified-Since) that matches a fresh cached document gets 304 and costs no token;
 * - `fresh-hit`, after the rate limit: a fresh document is answered at once (a HIT costs a
 *   token). A hit needs the route, the key, the limit's decision and the entry, and nothing
 *   fastify does between onRequest and the handler (preParsing, body, preValidation,
 *   preHandler). Anything else goes on to the `lookup` step (lookup-step.ts).
 */
import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import type { DocumentCache } from './core.js'
import { isCacheable, singleHeader, TurnWriter } from './respond.js'
import { etagOfRepresentation, type Representations } from './representations.js'
import { upstreamOf, upstreamUrlOf } from '../contracts/request.js'

export interface HitStepOptions { cache: DocumentCache; representations: Representations }

async function cacheConditional (app: FastifyInstance, opts: HitStepOptions): Promise<void> {
  const { cache, representations: reps } = opts
  const writer = new TurnWriter(reps)
  app.addHook('onRequest', (request, reply, done) => {
    const gw = isCacheable(request)
    const ifNoneMatch = singleHeader(request.headers['if-none-match'])
    const ifModifiedSince = request.headers['if-modified-since']
    if (gw === undefined || gw.envKey === undefined || (ifNoneMatch === undefined && ifModifiedSince === undefined)) { done(); return }
    // matched against the representation this client would get: a br ETag is current for br only
    const hit = cache.notModified(gw.envKey, cache.documentUrl(upstreamUrlOf(gw), upstreamOf(gw)), gw.route!.cache!, ifNoneMatch, ifModifiedSince, upstreamOf(gw),
      (doc) => etagOfRepresentation(doc, reps.choose(request, doc)))
    if (hit === undefined) { done(); return }
    gw.cacheStatus = 'HIT'
    // replying from a callback-style hook: fastify skips the rest of the chain, done() is not called
    writer.hit(request, reply, hit.document, hit.freshForMs)
  })
}

export const cacheConditionalStep = fp(cacheConditional, { name: 'gateway-cache-conditional', fastify: '5.x', dependencies: ['gateway-routing'] })

async function cacheFreshHit (app: FastifyInstance, opts: HitStepOptions): Promise<void> {
  const { cache } = opts
  const writer = new TurnWriter(opts.representations)
  app.addHook('onRequest', (request, reply, done) => {
    const gw = isCacheable(request)
    if (gw === undefined || gw.envKey === undefined) { done(); return }
    const rule = gw.route!.cache!
    const doc = cache.fresh(gw.envKey, cache.documentUrl(upstreamUrlOf(gw), upstreamOf(gw)), rule, upstreamOf(gw))
    if (doc === undefined) { done(); return }
    gw.cacheStatus = 'HIT'
    // replying from a callback-style hook: fastify skips the rest of the chain, done() is not called
    writer.hit(request, reply, doc, cache.freshForMs(doc, rule))
  })
}

export const cacheFreshHitStep = fp(cacheFreshHit, { name: 'gateway-cache-fresh-hit', fastify: '5.x', dependencies: ['gateway-routing'] })
