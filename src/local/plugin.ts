/**
 * The "local answer" step of the request path, after blocks and limits (registered after the
 * rate limiter): for a listed environment's key (its server key, or the client key its
 * document names) on the SDK endpoints,
 *
 * - `mode: always`: `flags/` and `identities/` are answered here from the document, and Core
 *   never sees them; before the first document arrives a request waits for it, bounded by
 *   `firstDocumentTimeout`, then goes to Core. A non-transient `POST identities/` with traits is
 *   answered here and queued for Core behind the answer, in order (outbox.ts).
 * - `mode: fallback`: the request goes to Core; `request.gateway.localFallback` says what to
 *   answer instead when it fails for want of Core (the gate's 503, a 5xx, a timeout, an
 *   unreachable Core; upstream/client.ts and app.ts's error handler call it).
 * - In both modes, `analytics/flags/` (v1 and v2) that Core cannot take are summed in the outbox
 *   and answered as Core would (200, 204).
 *
 * Every local answer carries `X-Flaggate-Source: local`, `X-Flaggate-Upstream: none`, and the
 * decision `local` (access log, flaggate_requests_total).
 */
import fp from 'fastify-plugin'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { Policy } from '../policy/compile.js'
import type { LocalDocuments } from './documents.js'
import { flagsAnswer, identityGetAnswer, identityPostAnswer, type LocalAnswer } from './answers.js'
import type { Outbox } from './outbox.js'
import { analyticsCounts } from './outbox.js'
import { UPSTREAM_HEADER } from '../upstream/index.js'

export const SOURCE_HEADER = 'x-flaggate-source'

export interface LocalPluginOptions {
  docs: LocalDocuments
  outbox: Outbox
  /** local answers served, by kind (flags, identities, analytics) */
  onAnswer?: (kind: Kind) => void
}

export type Kind = 'flags' | 'identity-get' | 'identity-post' | 'analytics-v1' | 'analytics-v2'

const LOCAL_HEADERS = Object.freeze({ 'content-type': 'application/json', [UPSTREAM_HEADER]: 'none', [SOURCE_HEADER]: 'local' })
const EMPTY = Buffer.alloc(0)

function kindOf (method: string, path: string | undefined): Kind | undefined {
  if (path === undefined) return undefined
  const p = path.endsWith('/') ? path : `${path}/`
  if (p === '/api/v1/flags/') return method === 'GET' ? 'flags' : undefined
  if (p === '/api/v1/identities/') return method === 'GET' ? 'identity-get' : method === 'POST' ? 'identity-post' : undefined
  if (p === '/api/v1/analytics/flags/') return method === 'POST' ? 'analytics-v1' : undefined
  if (p === '/api/v2/analytics/flags/') return method === 'POST' ? 'analytics-v2' : undefined
  return undefined
}

function queryOf (request: FastifyRequest): URLSearchParams | undefined {
  const url = request.raw.url ?? ''
  const q = url.indexOf('?')
  return q === -1 ? undefined : new URLSearchParams(url.slice(q + 1))
}

/** Requests `always` mode answers in preHandler, once their body has been read. */
const answerInPreHandler = new WeakSet<FastifyRequest>()

async function localAnswer (app: FastifyInstance, opts: LocalPluginOptions): Promise<void> {
  const { docs, outbox } = opts

  /** The local answer for this request, or undefined when the environment has no document. */
  const answer = (request: FastifyRequest, reply: FastifyReply, kind: Kind): FastifyReply | undefined => {
    const gw = request.gateway
    const m = docs.match(gw.envKey)
    if (m === undefined) return undefined
    let a: LocalAnswer
    if (kind === 'flags') a = flagsAnswer(m.env, m.isServer, queryOf(request))
    else if (kind === 'identity-get') a = identityGetAnswer(m.env, m.isServer, queryOf(request) ?? new URLSearchParams())
    else if (kind === 'identity-post') {
      a = identityPostAnswer(m.env, m.isServer, Buffer.isBuffer(request.body) ? request.body : undefined)
      if (a.write !== undefined) outbox.addWrite(m.state.serverKey, a.write.body)
    } else {
      const counts = analyticsCounts(kind, Buffer.isBuffer(request.body) ? request.body : EMPTY)
      outbox.addAnalytics(m.state.serverKey, counts)
      a = { status: kind === 'analytics-v1' ? 200 : 204, body: EMPTY }
    }
    m.state.served++
    opts.onAnswer?.(kind)
    gw.answeredLocally = true
    return reply.code(a.status).headers(LOCAL_HEADERS).send(a.status === 204 ? undefined : a.body)
  }

  app.addHook('onRequest', async (request, reply) => {
    const gw = request.gateway
    if (gw?.route === undefined) return
    const cfg: Policy['data']['localEvaluation'] = gw.policy.data.localEvaluation
    if (cfg === undefined) return
    const kind = kindOf(request.method, gw.path)
    if (kind === undefined) return
    let listed = docs.stateOf(gw.envKey)
    if (listed === undefined && cfg.mode === 'always' && gw.envKey !== undefined && kind !== 'analytics-v1' && kind !== 'analytics-v2') {
      // at start, a client key is only known once its server key's document has arrived: an
      // unknown key waits for the documents still pending (bounded), then is looked up again
      const pending = docs.pending()
      if (pending.length > 0) await Promise.all(pending.map(async (s) => await docs.waitFor(s, cfg.firstDocumentTimeout)))
      listed = docs.stateOf(gw.envKey)
    }
    if (listed === undefined) return
    // analytics go to Core in both modes; kept and summed only when Core cannot take them
    if (cfg.mode === 'fallback' || kind === 'analytics-v1' || kind === 'analytics-v2') {
      gw.localFallback = (r) => answer(request, r, kind)
      return
    }
    if (listed.state.env === undefined && !await docs.waitFor(listed.state, cfg.firstDocumentTimeout)) {
      // no document in time: Core is the only source left, and answers if it can
      gw.localFallback = (r) => answer(request, r, kind)
      return
    }
    if (kind === 'identity-post') { answerInPreHandler.add(request); return }
    return answer(request, reply, kind)
  })

  app.addHook('preHandler', async (request, reply) => {
    if (!answerInPreHandler.has(request)) return
    return answer(request, reply, 'identity-post')
  })
}

export default fp(localAnswer, { name: 'flaggate-local-answer', fastify: '5.x' })
