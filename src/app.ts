/**
 * The public listener: health routes at the root, and one encapsulated scope for proxied traffic
 * whose hooks run in this order (STYLE.md 4.3): routing → cache conditional (304) → rate limit →
 * cache lookup → proxy. Health routes sit outside that scope, so no limit or upstream ever
 * touches /healthz.
 */
import Fastify, { LogController, type FastifyReply, type FastifyRequest, type FastifyBaseLogger, type FastifyError, type FastifyInstance, type FastifyPluginAsync } from 'fastify'
import type { Socket } from 'node:net'
import type { Logger } from 'pino'
import { ERRORS, GatewayError, errorBody } from './errors.js'
import routing from './routing/plugin.js'
import { UPSTREAM_HEADER, type UpstreamClient } from './upstream/index.js'
import type { PolicyStore } from './policy/store.js'
import type { Metrics } from './metrics/registry.js'
import { createAccessLog } from './shared/access-log.js'

export interface Lifecycle { draining: boolean }

export interface RoomPlugin { plugin: FastifyPluginAsync<never>; opts: unknown }

export interface PublicAppDeps {
  store: PolicyStore
  /** the upstream module: the proxy handler is its `forward` */
  client: UpstreamClient
  metrics: Metrics
  logger: Logger
  lifecycle: Lifecycle
  /** capability plugins for the proxied scope, in hook order (after routing, before the proxy) */
  rooms?: RoomPlugin[]
  /** routes outside the proxied scope (e.g. the Flagsmith webhook) */
  extraRoutes?: RoomPlugin[]
}

const ALL_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'] as const

/** Malformed HTTP never reaches fastify's router: answer it here, in our JSON shape. */
function clientErrorHandler (err: Error & { code?: string }, socket: Socket): void {
  if (!socket.writable || (err.code === 'ECONNRESET')) { socket.destroy(); return }
  const body = errorBody('FLAGGATE_BAD_REQUEST', `Malformed HTTP request (${err.code ?? 'parse error'}).`)
  socket.end(`HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n${UPSTREAM_HEADER}: none\r\nConnection: close\r\n\r\n${body}`)
}

export function renderError (err: FastifyError | GatewayError | Error): GatewayError {
  if (err instanceof GatewayError) return err
  const e = err as FastifyError
  if (e.code === 'FST_ERR_CTP_BODY_TOO_LARGE') return new GatewayError('FLAGGATE_BODY_TOO_LARGE')
  if (typeof e.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500) {
    return new GatewayError(e.statusCode === 404 ? 'FLAGGATE_NOT_FOUND' : 'FLAGGATE_BAD_REQUEST', e.message)
  }
  return new GatewayError('FLAGGATE_INTERNAL_ERROR', undefined, undefined, { cause: err })
}

/** The wire answer of SPEC section 3; a bug's own message never reaches the client. */
function sendGatewayError (reply: FastifyReply, ge: GatewayError): FastifyReply {
  reply.code(ge.statusCode).header('content-type', 'application/json; charset=utf-8').header(UPSTREAM_HEADER, 'none')
  if (ge.headers !== undefined) reply.headers(ge.headers)
  return reply.send(errorBody(ge.code, ge.code === 'FLAGGATE_INTERNAL_ERROR' ? ERRORS.FLAGGATE_INTERNAL_ERROR.message : ge.message))
}

export async function buildPublicApp (deps: PublicAppDeps): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: deps.logger as FastifyBaseLogger,
    logController: new LogController({ disableRequestLogging: true }),
    requestIdHeader: 'x-request-id',
    exposeHeadRoutes: false,
    forceCloseConnections: 'idle',
    return503OnClosing: true,
    bodyLimit: 1024 * 1024 * 1024, // the real limit is server.bodyLimit, applied live by the routing parser
    clientErrorHandler,
    // the router rejects undecodable URLs before any hook runs; answer them in our shape too
    frameworkErrors: (err, _request, reply: FastifyReply) => { void sendGatewayError(reply, renderError(err)) },
    routerOptions: { ignoreDuplicateSlashes: false, ignoreTrailingSlash: false, maxParamLength: 2048 }
  })

  app.setErrorHandler((err: FastifyError | GatewayError, request, reply) => {
    const ge = renderError(err)
    if (ge.code === 'FLAGGATE_INTERNAL_ERROR') request.log.error({ err }, 'unexpected error')
    // the gate shed it (breaker open, maxInFlight reached): requests_total{decision="shed"}
    if (ge.code === 'FLAGGATE_UPSTREAM_OVERLOADED' && request.gateway !== undefined) request.gateway.decision = 'shed'
    return sendGatewayError(reply, ge)
  })

  registerHealth(app, deps.lifecycle)

  for (const r of deps.extraRoutes ?? []) await app.register(r.plugin, r.opts as never)

  await app.register(async (scope) => {
    await scope.register(routing, { store: deps.store })
    for (const r of deps.rooms ?? []) await scope.register(r.plugin, r.opts as never)
    scope.addHook('onResponse', createAccessLog(deps.logger, deps.metrics))
    const client = deps.client
    const proxyHandler = async (request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> => await client.forward(request, reply)
    scope.route({ method: [...ALL_METHODS], url: '/*', handler: proxyHandler })
    scope.route({ method: [...ALL_METHODS], url: '/', handler: proxyHandler })
  })
  return app
}

/** `/healthz` never depends on an upstream or Redis; `/readyz` turns 503 while draining. */
export function registerHealth (app: FastifyInstance, lifecycle: Lifecycle): void {
  const ok = '{"status":"ok"}'
  app.get('/healthz', (_req, reply) => { void reply.header('content-type', 'application/json').header(UPSTREAM_HEADER, 'none').send(ok) })
  app.get('/readyz', (_req, reply) => {
    void reply.header('content-type', 'application/json').header(UPSTREAM_HEADER, 'none')
    if (lifecycle.draining) return reply.code(503).send('{"status":"draining"}')
    return reply.send('{"status":"ready"}')
  })
}
