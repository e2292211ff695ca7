/**
 * The request metrics of SPEC section 7, per response: `requests_total{route,decision,status}`
 * and, for proxied requests, `upstream_request_duration_seconds{upstream,route}`. Label values
 * come from the policy and the status code, never from client input.
 */
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { Metrics } from '../metrics/registry.js'

export function createRequestMetrics (metrics: Metrics) {
  // prom-client hashes a label object on every inc()/observe(); resolve each child once instead
  const requestCounters = new Map<string, { inc: () => void }>()
  const durationHistograms = new Map<string, { observe: (v: number) => void }>()
  const countRequest = (route: string, decision: string, status: number): void => {
    const k = `${route}\n${decision}\n${status}`
    let c = requestCounters.get(k)
    if (c === undefined) { c = metrics.requests.labels(route, decision, String(status)); requestCounters.set(k, c) }
    c.inc()
  }
  const observeUpstream = (upstream: string, route: string, seconds: number): void => {
    const k = `${upstream}\n${route}`
    let h = durationHistograms.get(k)
    if (h === undefined) { h = metrics.upstreamDuration.labels(upstream, route); durationHistograms.set(k, h) }
    h.observe(seconds)
  }
  return function onResponse (request: FastifyRequest, reply: FastifyReply, done: () => void): void {
    const gw = request.gateway
    if (gw === null || gw === undefined) { done(); return }
    const routeName = gw.route?.name ?? 'none'
    countRequest(routeName, gw.decision, reply.statusCode)
    // cache fills observe their own latency (a background refresh has no response of its own)
    const upstream = reply.getHeader('x-flaggate-upstream') ?? 'none'
    if (gw.upstreamMs !== undefined && upstream !== 'none' && gw.cacheStatus === undefined) {
      observeUpstream(String(upstream), routeName, gw.upstreamMs / 1000)
    }
    done()
  }
}
