/**
 * The public listener: health routes at the root, and one encapsulated scope for proxied traffic
 * whose steps are registered from the pipeline table (contracts/pipeline.ts), in its order. Health
 * routes sit outside that scope, so no limit or upstream ever touches /healthz.
 */
import Fastify, { LogController, type FastifyReply, type FastifyRequest, type FastifyBaseLogger, type FastifyError, type FastifyInstance } from 'fastify'
import type { Socket } from 'node:net'
import type { Server } from 'node:http'
import type { Logger } from 'pino'
import { ERRORS, GatewayError, errorBody, type ErrorCode } from './errors.js'
import routing from './routing/plugin.js'
import type { UpstreamClient } from './upstream/index.js'
import { UPSTREAM_HEADER } from './contracts/wire.js'
import { PIPELINE } from './contracts/pipeline.js'
import type { Lifecycle, PluginEntry, Steps } from './contracts/capability.js'
import { registerHealth } from './contracts/health.js'
import type { PolicyStore } from './policy/store.js'
import type { Policy } from './policy/compile.js'
import type { Metrics } from './metrics/registry.js'
import { createAccessLog } from './observe/access-log.js'
import { createRequestMetrics, zeroGatewayFailures } from './observe/request-metrics.js'
import type { DecisionRates } from './observe/decision-rates.js'
import type { RequestTracing } from './observe/tracing.js'
import { causeOf } from './upstream/failures.js'
import { lazyChildLogger } from './shared/logger.js'
import { installConnectionCap } from './routing/connection-cap.js'

export interface PublicAppDeps {
  store: PolicyStore
  /** the upstream module: the proxy handler is its `forward` */
  client: UpstreamClient
  metrics: Metrics
  logger: Logger
  lifecycle: Lifecycle
  /** the capabilities' plugins for the steps of the pipeline; registered in the table's order */
  steps?: Steps
  /** routes outside the proxied scope (e.g. the Flagsmith webhook) */
  routes?: PluginEntry[]
  /** requests per second by decision, for the admin status */
  rates?: DecisionRates
  /** OpenTelemetry spans, only when the policy has a `tracing` section (otherwise no hook at all) */
  tracing?: RequestTracing
}

const UPSTREAM_FAILURES: ReadonlySet<ErrorCode> = new Set(['FLAGGATE_UPSTREAM_OVERLOADED', 'FLAGGATE_UPSTREAM_UNREACHABLE', 'FLAGGATE_UPSTREAM_TIMEOUT'])

/** the codes of a request the gateway shed rather than served (decision `shed`) */
const SHED: ReadonlySet<ErrorCode> = new Set(['FLAGGATE_UPSTREAM_OVERLOADED', 'FLAGGATE_OVERLOADED'])

const ALL_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'] as const

/**
 * What Node's HTTP layer refuses never reaches fastify's router: answer it here, in our JSON
 * shape, then close the connection (the server is half-open: `end()` alone would let a client
 * that keeps sending hold the socket).
 */
function clientErrorHandler (err: Error & { code?: string }, socket: Socket): void {
  // a response already under way on this socket: writing another would corrupt it
  const inFlight = (socket as Socket & { _httpMessage?: { headersSent?: boolean } })._httpMessage
  if (!socket.writable || err.code === 'ECONNRESET' || inFlight?.headersSent === true) { socket.destroy(); return }
  const code: ErrorCode = err.code === 'HPE_HEADER_OVERFLOW'
    ? 'FLAGGATE_HEADERS_TOO_LARGE'
    : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 'FLAGGATE_REQUEST_TIMEOUT' : 'FLAGGATE_BAD_REQUEST'
  answerOnSocket(socket, code, code === 'FLAGGATE_BAD_REQUEST' ? `Malformed HTTP request (${err.code ?? 'parse error'}).` : undefined)
}

function answerOnSocket (socket: Socket, code: ErrorCode, message?: string): void {
  const body = errorBody(code, message)
  const e = ERRORS[code]
  socket.end(`HTTP/1.1 ${e.status} ${e.error}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n${UPSTREAM_HEADER}: none\r\nConnection: close\r\n\r\n${body}`, () => socket.destroy())
}

/** The listener's bounds from the policy; Node reads all four live, so a reload applies them at once. */
export function applyListenerBounds (server: Server, s: Policy['data']['server']): void {
  server.requestTimeout = s.requestTimeout
  server.headersTimeout = s.headersTimeout
  server.keepAliveTimeout = s.keepAliveTimeout
  server.maxConnections = s.maxConnections
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

/** The JSON error answer (`{error, code, message}`); a bug's own message never reaches the client. */
function sendGatewayError (reply: FastifyReply, ge: GatewayError): FastifyReply {
  reply.code(ge.statusCode).header('content-type', 'application/json; charset=utf-8').header(UPSTREAM_HEADER, 'none')
  if (ge.headers !== undefined) reply.headers(ge.headers)
  return reply.send(errorBody(ge.code, ge.code === 'FLAGGATE_INTERNAL_ERROR' ? ERRORS.FLAGGATE_INTERNAL_ERROR.message : ge.message))
}

export async function buildPublicApp (deps: PublicAppDeps): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: deps.logger as FastifyBaseLogger,
    logController: new LogController({ disableRequestLogging: true }),
    childLoggerFactory: lazyChildLogger as never,
    requestIdHeader: 'x-request-id',
    exposeHeadRoutes: false,
    forceCloseConnections: 'idle',
    return503OnClosing: true,
    bodyLimit: 1024 * 1024 * 1024, // the real limit is server.bodyLimit, applied live by the routing parser
    clientErrorHandler,
    // how often Node looks for requests past server.requestTimeout / headersTimeout (its default,
    // 30 s, would let a 10 s headersTimeout run to 40 s); fixed when the server is created
    http: { connectionsCheckingInterval: 1000 },
    // the router rejects undecodable URLs before any hook runs; answer them in our shape too
    frameworkErrors: (err, _request, reply: FastifyReply) => { void sendGatewayError(reply, renderError(err)) },
    routerOptions: { ignoreDuplicateSlashes: false, ignoreTrailingSlash: false, maxParamLength: 2048 }
  })

  app.setErrorHandler((err: FastifyError | GatewayError, request, reply) => {
    const ge = renderError(err)
    // a listed environment's request that failed for want of the upstream: answered locally (src/local)
    if (UPSTREAM_FAILURES.has(ge.code) && request.gateway?.localFallback !== undefined) {
      const local = request.gateway.localFallback(reply)
      if (local !== undefined) return local
    }
    if (ge.code === 'FLAGGATE_INTERNAL_ERROR') request.log.error({ err }, 'unexpected error')
    // shed: the gate refused it (breaker open, maxInFlight reached), or routing's body budget
    // (server.bufferedBodies) did: requests_total{decision="shed"}
    if (SHED.has(ge.code) && request.gateway !== undefined) request.gateway.shed = true
    // why the upstream failed (DNS, refused, reset, TLS, timeout; which upstream and host), for the access log
    const cause = causeOf(ge)
    if (cause !== undefined && request.gateway !== undefined) request.gateway.upstreamError = cause.text
    return sendGatewayError(reply, ge)
  })

  applyListenerBounds(app.server, deps.store.current.data.server)
  installConnectionCap(app.server, deps.store)
  zeroGatewayFailures(deps.metrics, deps.store.current)
  const onReload = (policy: Policy): void => { applyListenerBounds(app.server, policy.data.server); zeroGatewayFailures(deps.metrics, policy) }
  deps.store.on('reload', onReload)
  app.addHook('onClose', (_app, done) => { deps.store.off('reload', onReload); done() })

  // Methods the router has no route for (TRACE, PROPFIND, ...): no policy route takes them either
  app.setNotFoundHandler((request, reply) => sendGatewayError(reply, new GatewayError('FLAGGATE_NOT_FOUND', `No route of the policy takes the method ${request.method}.`)))
  // CONNECT carries an authority, not a path: we are not a forward proxy. Node hands it to the
  // 'connect' event, and without a listener would drop the connection without an answer.
  app.server.on('connect', (_req: unknown, socket: Socket) => {
    answerOnSocket(socket, 'FLAGGATE_BAD_REQUEST', 'CONNECT is not supported: the gateway is not a forward proxy.')
  })

  registerHealth(app, deps.lifecycle)

  for (const r of deps.routes ?? []) await app.register(r.plugin, r.opts as never)

  const client = deps.client
  const proxyHandler = async (request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> => await client.forward(request, reply)
  await app.register(async (scope) => {
    for (const { step } of PIPELINE) {
      if (step === 'routing') {
        await scope.register(routing, { store: deps.store })
        // the span starts once the record exists and before any step may answer, so every
        // upstream request made for this one carries it; an observer, it decides nothing
        if (deps.tracing !== undefined) {
          scope.addHook('onRequest', deps.tracing.onRequest)
          scope.addHook('onRequestAbort', deps.tracing.onRequestAbort)
        }
      }
      else if (step === 'proxy') {
        scope.route({ method: [...ALL_METHODS], url: '/*', handler: proxyHandler })
        scope.route({ method: [...ALL_METHODS], url: '/', handler: proxyHandler })
      } else {
        const entry = deps.steps?.[step]
        if (entry !== undefined) await scope.register(entry.plugin, entry.opts as never)
      }
    }
    // observers, after the answer: they read the per-request record and write nothing on it
    scope.addHook('onResponse', createRequestMetrics(deps.metrics, deps.rates))
    scope.addHook('onResponse', createAccessLog(deps.logger))
    if (deps.tracing !== undefined) scope.addHook('onResponse', deps.tracing.onResponse)
  })
  return app
}
