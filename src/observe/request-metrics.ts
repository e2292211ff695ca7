/**
 * The request metrics, per response: `requests_total{route,decision,status}`
 * (`upstream_request_duration_seconds` is the upstream module's, once per attempt). Label values
 * come from the policy and the status code, never from client input.
 */
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { Metrics } from '../metrics/registry.js'
import { HotChildTable } from '../metrics/hot-counter.js'
import type { DecisionRates } from './decision-rates.js'
import { decisionOf } from '../contracts/request.js'

export function createRequestMetrics (metrics: Pick<Metrics, 'hot'>, rates?: DecisionRates) {
  const requests = new HotChildTable(metrics.hot.requests, (route, decision, status) => ({ route, decision, status: String(status) }))
  return function onResponse (request: FastifyRequest, reply: FastifyReply, done: () => void): void {
    const gw = request.gateway
    if (gw === null || gw === undefined) { done(); return }
    const routeName = gw.route?.name ?? 'none'
    const decision = decisionOf(gw)
    requests.get(routeName, decision, reply.statusCode).inc()
    rates?.record(decision)
    // upstream latency is observed by the upstream module, once per attempt (upstream/client.ts)
    done()
  }
}
