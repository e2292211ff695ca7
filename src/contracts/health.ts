/**
 * Health routes, registered on both listeners. `/healthz` never depends on an upstream or Redis
 * (a liveness probe must not restart a gateway because Core is slow); `/readyz` turns 503 while
 * draining, so a load balancer stops sending before the listener closes; its body lists
 * `warnings` (lines a capability reports) while it stays 200.
 */
import type { FastifyInstance } from 'fastify'
import type { Lifecycle } from './capability.js'
import { UPSTREAM_HEADER } from './wire.js'

export function registerHealth (app: FastifyInstance, lifecycle: Lifecycle): void {
  const ok = '{"status":"ok"}'
  app.get('/healthz', (_req, reply) => { void reply.header('content-type', 'application/json').header(UPSTREAM_HEADER, 'none').send(ok) })
  app.get('/readyz', (_req, reply) => {
    void reply.header('content-type', 'application/json').header(UPSTREAM_HEADER, 'none')
    if (lifecycle.draining) return reply.code(503).send('{"status":"draining"}')
    // warnings inform, never fail readiness: a stale document still answers during an outage
    const warnings = lifecycle.warnings?.() ?? []
    return reply.send(warnings.length === 0 ? '{"status":"ready"}' : JSON.stringify({ status: 'ready', warnings }))
  })
}
