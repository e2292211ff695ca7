/**
 * The operators' listener, its own Fastify instance on its own port: no proxy
 * hook reaches it. Everything under /admin needs `Authorization: Bearer <admin.token>`, compared
 * in constant time; the token is read from the policy in force, so rotating it is a reload.
 */
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify'
import { createHash, timingSafeEqual } from 'node:crypto'
import type { Logger } from 'pino'
import { errorBody } from '../errors.js'
import type { PolicyStore } from '../policy/store.js'
import { formatPolicyError } from '../policy/load.js'
import type { Metrics } from '../metrics/registry.js'
import { registerHealth } from '../contracts/health.js'
import type { AdminExtension, Lifecycle } from '../contracts/capability.js'
import { adminRefusal, bearerToken, reasonOf } from './guard.js'

export interface AdminDeps {
  store: PolicyStore
  metrics: Metrics
  logger: Logger
  lifecycle: Lifecycle
  version: string
  extensions?: AdminExtension[]
  reload: () => ReturnType<PolicyStore['reload']>
}

const digest = (s: string): Buffer => createHash('sha256').update(s).digest()

/** Constant time whatever the lengths: compare fixed-size digests. */
export function tokenMatches (given: string, expected: string): boolean {
  return timingSafeEqual(digest(given), digest(expected))
}

export async function buildAdminApp (deps: AdminDeps): Promise<FastifyInstance> {
  const app = Fastify({ loggerInstance: deps.logger.child({ listener: 'admin' }) as FastifyBaseLogger, logController: new LogController({ disableRequestLogging: true }), forceCloseConnections: true })
  registerHealth(app, deps.lifecycle)
  app.get('/metrics', async (_req, reply) => {
    reply.header('content-type', deps.metrics.registry.contentType)
    return await deps.metrics.registry.metrics()
  })

  app.setErrorHandler((err: Error & { statusCode?: number }, request, reply) => {
    const status = err.statusCode ?? 500
    if (status >= 500) request.log.error({ err }, 'admin request failed')
    return reply.code(status).header('content-type', 'application/json')
      .send(errorBody(status === 401 ? 'FLAGGATE_UNAUTHORIZED' : status === 403 ? 'FLAGGATE_FORBIDDEN' : status === 404 ? 'FLAGGATE_NOT_FOUND' : status === 503 ? 'FLAGGATE_STATE_UNAVAILABLE' : status < 500 ? 'FLAGGATE_BAD_REQUEST' : 'FLAGGATE_INTERNAL_ERROR', status < 500 || status === 503 ? err.message : undefined))
  })
  app.setNotFoundHandler((_req, reply) => reply.code(404).header('content-type', 'application/json').send(errorBody('FLAGGATE_NOT_FOUND', 'No such admin endpoint.')))

  await app.register(async (admin) => {
    admin.addHook('onRequest', async (request: FastifyRequest, reply: FastifyReply) => {
      const token = deps.store.current.data.admin.token
      // CSRF and DNS rebinding (admin/guard.ts): checked before the token, in both modes
      const refusal = adminRefusal(request.method, request.headers, token === undefined)
      if (refusal !== undefined) {
        deps.logger.warn({ ip: request.ip, method: request.method, url: request.url, host: request.headers.host, origin: request.headers.origin }, 'admin request refused: not from this machine\'s operators')
        return await reply.code(403).header('content-type', 'application/json').send(errorBody('FLAGGATE_FORBIDDEN', refusal))
      }
      // why an operator made a change, for the audit line every change writes
      const why = reasonOf(request.headers)
      if (why !== undefined) (request as FastifyRequest & { why?: string }).why = why
      if (token === undefined) { (request as FastifyRequest & { who?: string }).who = 'loopback'; return }
      const given = bearerToken(request.headers.authorization)
      if (given !== undefined && tokenMatches(given, token)) {
        (request as FastifyRequest & { who?: string }).who = 'admin-token'
        return
      }
      deps.logger.warn({ ip: request.ip, url: request.url }, 'admin request refused: bad or missing bearer token')
      return await reply.code(401).header('content-type', 'application/json').header('www-authenticate', 'Bearer')
        .send(errorBody('FLAGGATE_UNAUTHORIZED', 'Send Authorization: Bearer <token> (admin.token in the policy; the flaggate CLI reads it from FLAGGATE_ADMIN_TOKEN).'))
    })

    admin.get('/admin/status', async () => {
      const p = deps.store.current
      const last = deps.store.lastError
      const body: Record<string, unknown> = {
        version: deps.version,
        policy: {
          version: p.version,
          loadedAt: p.loadedAt,
          lastError: last === null ? null : { at: last.at, errors: last.errors.map(formatPolicyError) },
          restartRequired: deps.store.restartRequired
        }
      }
      // Every other section comes from a part that exists (store, cache, ...): no placeholders,
      // so a status never shows a breaker or a block count that nothing computes.
      for (const ext of deps.extensions ?? []) if (ext.status !== undefined) Object.assign(body, await ext.status())
      return body
    })

    admin.post('/admin/reload', async (request, reply) => {
      const outcome = deps.reload()
      const { who, why } = request as FastifyRequest & { who?: string; why?: string }
      if (!outcome.ok) {
        deps.logger.warn({ who, why, action: 'reload', errors: outcome.errors.map(formatPolicyError) }, 'admin: policy reload refused, previous policy kept')
        return await reply.code(422).send({ errors: outcome.errors.map(formatPolicyError) })
      }
      deps.logger.info({ who, why, action: 'reload', version: outcome.version }, 'admin: policy reloaded')
      return { version: outcome.version, restartRequired: outcome.restartRequired }
    })

    for (const ext of deps.extensions ?? []) if (ext.routes !== undefined) await ext.routes(admin)
  })
  return app
}
