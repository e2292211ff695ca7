/**
 * One access-log line and the request metrics per response (SPEC section 7). The key is
 * redacted through a small memo so the hash is computed once per key, not once per request.
 */
import type { FastifyReply, FastifyRequest } from 'fastify'
import { LRUCache } from 'lru-cache'
import type { Logger } from 'pino'
import type { Metrics } from '../metrics/registry.js'
import { redactKey } from './redact.js'

// Core's dashboard API names environments by their key: /api/v1/environments/<api_key>/...
const ENV_IN_PATH = /(\/environments\/)([^/?#]+)/

export function createAccessLog (logger: Logger, metrics: Metrics) {
  const redacted = new LRUCache<string, string>({ max: 10_000 })
  const redactMemo = (key: string): string => {
    let r = redacted.get(key)
    if (r === undefined) { r = redactKey(key)!; redacted.set(key, r) }
    return r
  }
  // prom-client hashes a label object on every inc()/observe(); resolve each child once instead
  const requestCounters = new Map<string, { inc: () => void }>()
  const countRequest = (route: string, decision: string, status: number): void => {
    const k = `${route}\n${decision}\n${status}`
    let c = requestCounters.get(k)
    if (c === undefined) { c = metrics.requests.labels(route, decision, String(status)); requestCounters.set(k, c) }
    c.inc()
  }
  const loggableUrl = (url: string): string =>
    url.includes('/environments/') ? url.replace(ENV_IN_PATH, (_m, prefix: string, key: string) => prefix + redactMemo(key)) : url
  return function onResponse (request: FastifyRequest, reply: FastifyReply, done: () => void): void {
    const gw = request.gateway
    if (gw === null || gw === undefined) { done(); return }
    const routeName = gw.route?.name ?? 'none'
    const status = reply.statusCode
    const upstream = reply.getHeader('x-flaggate-upstream') ?? 'none'
    const totalMs = Number(process.hrtime.bigint() - gw.startedAt) / 1e6
    countRequest(routeName, gw.decision, status)
    // the upstream latency is observed by the upstream module, once per attempt
    logger.info({
      reqId: request.id,
      route: routeName,
      method: request.method,
      url: loggableUrl(request.url),
      status,
      upstream,
      decision: gw.decision,
      cache: gw.cacheStatus,
      limitedBy: gw.limitedBy,
      upstreamMs: gw.upstreamMs === undefined ? undefined : Math.round(gw.upstreamMs * 10) / 10,
      totalMs: Math.round(totalMs * 10) / 10,
      ip: gw.clientIp,
      key: gw.envKey === undefined ? undefined : redactMemo(gw.envKey)
    }, 'request')
    done()
  }
}
