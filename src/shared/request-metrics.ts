/**
 * The request metrics of SPEC section 7, per response: `requests_total{route,decision,status}`
 * (`upstream_request_duration_seconds` is the upstream module's, once per attempt). Label values
 * come from the policy and the status code, never from client input.
 */
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { Metrics } from '../metrics/registry.js'

export function createRequestMetrics (metrics: Metrics) {
  // prom-client hashes a label object on every inc()/observe(); resolve each child once instead
  const requestCounters = new Map<string, { inc: () => void }>()
  const countRequest = (route: string, decision: string, status: number): void => {
    const k = `${route}\n${decision}\n${status}`
    let c = requestCounters.get(k)
    if (c === undefined) { c = metrics.requests.labels(route, decision, String(status)); requestCounters.set(k, c) }
    c.inc()
  }
  return function onResponse (request: FastifyRequest, reply: FastifyReply, done: () => void): void {
    const gw = request.gateway
    if (gw === null || gw === undefined) { done(); return }
    const routeName = gw.route?.name ?? 'none'
    countRequest(routeName, gw.decision, reply.statusCode)
    // upstream latency is observed by the upstream module, once per attempt (upstream/client.ts)
    done()
  }
}
