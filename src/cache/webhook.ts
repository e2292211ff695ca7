/**
 * Flagsmith's webhooks as a purge signal (Flagsmith's environment webhooks, signed with HMAC-SHA256 of the body), on the public listener at
 * `webhooks.flagsmith.path`.
 *
 * `X-Flagsmith-Signature` is hex HMAC-SHA256 of the raw body keyed with the secret, so this route
 * keeps the body as the bytes that arrived (its own content-type parser, in this encapsulated
 * plugin only): re-serialised JSON would not match Python's `json.dumps` spacing. A missing or
 * wrong signature is a 401 and purges nothing.
 *
 * Payloads carry an environment id, never a key; cached documents remember their `id` (and
 * `project.id`), which is how an id finds the keys to drop.
 *
 * The route is public, so it is guarded like the proxied ones, in this order (cheapest first):
 * blocks and its own per-address limit (`admit`, wired by the composition: a blocked address gets
 * its 403, a flood its 429, before any byte is hashed), the signature, then the body's digest: a
 * body already applied within `replayWindow` purges nothing (webhook-replay.ts). Distinct changes
 * are gathered for `coalesce` and purged once (webhook-coalesce.ts).
 */
import { createHmac, timingSafeEqual } from 'node:crypto'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { GatewayError } from '../errors.js'
import type { Policy } from '../policy/compile.js'
import type { PurgeTarget } from './document.js'
import { ReplayFilter } from './webhook-replay.js'
import { PurgeCoalescer } from './webhook-coalesce.js'

export interface WebhookPluginOptions {
  /** the policy in force: the secret is read per request, so rotating it is a reload */
  policy: () => Policy
  /** purges here and on the other replicas (PurgeBus.purge); returns what this replica dropped */
  purge: (target: PurgeTarget) => number
  /** blocks and the route's own limit for this request: the error to answer with, or undefined to go on */
  admit?: (request: FastifyRequest) => GatewayError | undefined
  /** remembers the bodies already applied (default: a filter of its own, on the system clock) */
  replays?: ReplayFilter
  logger: { info (obj: object, msg: string): void; warn (obj: object, msg: string): void }
}

/** Flagsmith's payloads are a few KB; anything near this is not a webhook. */
const WEBHOOK_BODY_LIMIT = 1024 * 1024
const SIGNATURE = /^[0-9a-fA-F]{64}$/

export function signatureMatches (secret: string, body: Buffer, given: string | string[] | undefined): boolean {
  if (typeof given !== 'string' || !SIGNATURE.test(given.trim())) return false
  const expected = createHmac('sha256', Buffer.from(secret, 'utf8')).update(body).digest()
  return timingSafeEqual(Buffer.from(given.trim(), 'hex'), expected)
}

function intId (v: unknown): number | undefined {
  return typeof v === 'number' && Number.isInteger(v) ? v : undefined
}

function field (o: unknown, name: string): unknown {
  return typeof o === 'object' && o !== null ? (o as Record<string, unknown>)[name] : undefined
}

/**
 * What a webhook asks us to drop. Environment webhooks (FLAG_UPDATED, FLAG_DELETED) name the
 * environment in `new_state` / `previous_state`; organisation webhooks (AUDIT_LOG_CREATED) name
 * an environment, or only a project for project-wide changes (which change every environment's
 * document). NEW_VERSION_PUBLISHED names neither, and needs nothing: Flagsmith sends a
 * FLAG_UPDATED for each feature state of the version as well. Anything else that names nothing we
 * can map drops the whole cache: a stale document is the worse outcome.
 */
export function purgeTargetsOf (payload: unknown): PurgeTarget[] {
  const event = field(payload, 'event_type')
  const data = field(payload, 'data')
  if (event === 'NEW_VERSION_PUBLISHED') return []
  const envIds = new Set<number>()
  for (const state of [field(data, 'new_state'), field(data, 'previous_state')]) {
    const id = intId(field(field(state, 'environment'), 'id'))
    if (id !== undefined) envIds.add(id)
  }
  const auditEnv = intId(field(field(data, 'environment'), 'id'))
  if (auditEnv !== undefined) envIds.add(auditEnv)
  if (envIds.size > 0) return [...envIds].map((envId) => ({ envId }))
  const projectId = intId(field(field(data, 'project'), 'id'))
  if (projectId !== undefined) return [{ projectId }]
  return [{ all: true }]
}

async function webhooks (app: FastifyInstance, opts: WebhookPluginOptions): Promise<void> {
  const path = opts.policy().data.webhooks.flagsmith?.path
  if (path === undefined) return

  app.removeAllContentTypeParsers()
  app.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: WEBHOOK_BODY_LIMIT }, (_req, body, done) => { done(null, body) })

  const replays = opts.replays ?? new ReplayFilter()
  const coalescer = new PurgeCoalescer((targets) => {
    let purged = 0
    for (const t of targets) purged += opts.purge(t)
    return purged
  }, opts.policy().data.webhooks.flagsmith?.coalesce ?? 0)

  // before the body is read: a blocked or flooding address costs no buffering and no hashing
  app.addHook('onRequest', (request, _reply, done) => {
    const refused = opts.admit?.(request)
    if (refused !== undefined) {
      opts.logger.warn({ ip: request.ip, code: refused.code }, 'flagsmith webhook refused before its body was read')
      done(refused)
      return
    }
    done()
  })

  app.post(path, { bodyLimit: WEBHOOK_BODY_LIMIT }, async (request: FastifyRequest, reply) => {
    const config = opts.policy().data.webhooks.flagsmith
    if (config === undefined) throw new GatewayError('FLAGGATE_NOT_FOUND', 'The Flagsmith webhook is not configured (webhooks.flagsmith).')
    const answer = async (body: Record<string, unknown>): Promise<unknown> =>
      await reply.header('content-type', 'application/json; charset=utf-8').header('x-flaggate-upstream', 'none').send(JSON.stringify(body))
    const body = Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0)
    if (!signatureMatches(config.secret, body, request.headers['x-flagsmith-signature'])) {
      opts.logger.warn({ ip: request.ip, signed: request.headers['x-flagsmith-signature'] !== undefined }, 'flagsmith webhook refused: bad or missing X-Flagsmith-Signature')
      throw new GatewayError('FLAGGATE_UNAUTHORIZED', 'X-Flagsmith-Signature is missing or does not match: it must be the hex HMAC-SHA256 of the body with the webhook secret (webhooks.flagsmith.secret).')
    }
    const digest = ReplayFilter.digest(body)
    // 200, not an error: Flagsmith's own retry of a body we applied is answered as it expects
    if (!replays.first(digest, config.replayWindow)) {
      opts.logger.info({ who: 'flagsmith-webhook', ip: request.ip, digest: digest.slice(0, 16) }, 'flagsmith webhook ignored: the same signed body was applied already (a replay or a retry)')
      return await answer({ purged: 0, replayed: true })
    }
    let payload: unknown
    try { payload = JSON.parse(body.toString('utf8')) } catch {
      throw new GatewayError('FLAGGATE_BAD_REQUEST', 'The webhook body is not JSON.')
    }
    const targets = purgeTargetsOf(payload)
    coalescer.windowMs = config.coalesce
    let purged: number
    try {
      purged = await coalescer.add(targets)
    } catch (err) {
      // not applied: the same body must be able to try again
      replays.forget(digest)
      throw err
    }
    opts.logger.info({ who: 'flagsmith-webhook', action: 'cache.purge', event: field(payload, 'event_type'), targets, purged, digest: digest.slice(0, 16) }, 'cache purged by Flagsmith webhook')
    return await answer({ purged })
  })
}

export default webhooks
