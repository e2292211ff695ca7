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
import type { Policy } from '../policy/compile.js'

/**
 * The answers the gateway itself gives when Core fails or is shed: 502 unreachable, 504 timeout
 * (decision `allowed`: the request was let through) and 503 from the breaker or maxInFlight
 * (`shed`). An upstream's own 5xx passes through with whatever code it chose and cannot be listed.
 */
const GATEWAY_FAILURES = [['allowed', '502'], ['allowed', '504'], ['shed', '503']] as const

/**
 * Creates `requests_total{route,decision,status}` at 0 for each route's gateway failures, at start
 * and for the routes a reload adds. A series that first appears at 1 gives rate() and increase()
 * nothing to compare it with, so a replica's first burst of 5xx would be invisible to the
 * FlaggateHigh5xxRatio alert (deploy/prometheus/alerts.yml) until its second scrape.
 */
export function zeroGatewayFailures (metrics: Pick<Metrics, 'requests'>, policy: Policy): void {
  for (const r of policy.data.routes) for (const [decision, status] of GATEWAY_FAILURES) metrics.requests.labels(r.name, decision, status).inc(0)
}

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
