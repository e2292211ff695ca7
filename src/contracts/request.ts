/**
 * The per-request record: what the steps of the pipeline (contracts/pipeline.ts) share about one
 * request. Routing creates `request.gateway` (onRequest, first step) with every field at its
 * initial value; after that, each field has exactly one writer, named by "Writer:" next to it
 * with the file(s) it writes from (test/request-record.test.ts holds the code to that). What
 * several steps contribute to is derived, not shared: where the request goes now
 * (`upstreamOf`, `upstreamUrlOf`: the route's upstream, moved by the edge step, moved once more
 * by the Edge fallback) and the decision the metrics and the access log report (`decisionOf`).
 * The request metrics and the access log (observe/) read the record last and write nothing.
 */
import type { FastifyReply } from 'fastify'
import type { CompiledRoute, Policy } from '../policy/compile.js'

export type Decision = 'allowed' | 'limited' | 'blocked' | 'shed' | 'cached' | 'stale' | 'local'
export type CacheStatus = 'HIT' | 'MISS' | 'STALE' | 'UPDATING' | 'BYPASS'

export interface RequestGateway {
  /** the policy snapshot this request runs on, start to end, even if a reload happens meanwhile. Writer: routing (routing/plugin.ts) */
  policy: Policy
  /** undefined when no route matched (the request is answered 404). Writer: routing (routing/plugin.ts) */
  route: CompiledRoute | undefined
  /** the canonical request path (shared/path.ts) the route matched; undefined when refused (400). Writer: routing (routing/plugin.ts) */
  path: string | undefined
  /** what goes to the route's upstream: base path + canonical path (slash added on SDK routes) + query (policy/resolve.ts). Writer: routing (routing/plugin.ts) */
  routeUrl: string
  /** where the edge step moved this request, when it moved it off the route's upstream (undefined: it stays there). Writer: edge (edge/plugin.ts) */
  edge?: EdgeChoice
  /** the Edge fallback taken, at most once per request, by the proxy or the cache's fill. Writer: the Edge fallback rule (upstream/fallback.ts) */
  fallback?: FallbackTaken
  /** the X-Environment-Key header, or undefined; never log it unredacted. Writer: routing (routing/plugin.ts) */
  envKey: string | undefined
  /** client IP after trustedProxies: what blocks match by CIDR. Writer: routing (routing/plugin.ts) */
  clientIp: string
  /** the client address as counted (shared/ip-prefix.ts): IPv4, or the IPv6 network of server.ipv6Prefix; limits, automatic blocks, top, budgets. Writer: routing (routing/plugin.ts) */
  clientNet: string
  /** a block refused this request (403). Writer: block (blocking/plugin.ts) */
  blocked?: true
  /** local evaluation answered this request from its document. Writer: local (local/plugin.ts) */
  answeredLocally?: true
  /**
   * the gateway shed this request: the upstream's gate refused it (breaker open, maxInFlight) or
   * too many request bodies were held at once. Writer: the app's error handler (app.ts), from the
   * error's code
   */
  shed?: true
  /** Writer: the cache steps: conditional and fresh-hit (cache/hit-steps.ts), lookup (cache/lookup-step.ts) */
  cacheStatus: CacheStatus | undefined
  /** ms spent waiting for the upstream (headers), when it was asked (by the proxy or the cache's fill). Writer: the upstream timer (upstream/timing.ts) */
  upstreamMs: number | undefined
  /** why the upstream attempt failed, when the answer is a 502/504 of ours. Writer: the app's error handler (app.ts), from the upstream module's cause */
  upstreamError?: string
  /** the limit that refused this request, for the log. Writer: rate-limit (rate-limit/plugin.ts; rate-limit/unknown-keys-step.ts, a later step of the same component that runs only when the first admitted) */
  limitedBy: string | undefined
  /**
   * what the refusing limit counted as the client (the key, the key from one IP, or the IP),
   * so an automatic block targets exactly that; unset when it counted a header. Writer: rate-limit
   * (rate-limit/plugin.ts; rate-limit/unknown-keys-step.ts, the address)
   */
  limitedClient?: { key?: string; ip?: string }
  /** hrtime at onRequest. Writer: routing (routing/plugin.ts) */
  startedAt: bigint
  /** hrtime when the first upstream request of this request started. Writer: the upstream timer (upstream/timing.ts) */
  upstreamStartedAt?: bigint
  /** X-Forwarded-For as sent upstream when trusted proxies vouched for a chain (client first, peer last); unset means `clientIp` alone. Writer: routing (routing/plugin.ts) */
  forwardedFor?: string | undefined
  /**
   * With `tracing` in the policy: the W3C trace headers (`traceparent`, and `tracestate` when the
   * client sent one) naming the gateway's span, which every upstream request made for this one
   * (proxy, cache fill) carries in place of the client's. Unset without tracing: the client's
   * headers pass as they came. Writer: tracing (observe/tracing.ts), right after routing
   */
  traceHeaders?: Readonly<Record<string, string>>
  /**
   * Set by local evaluation (src/local/plugin.ts) for a listed environment: the answer to give
   * when this request fails for want of the upstream (the gate's 503, a 5xx, a timeout, an
   * unreachable upstream); undefined from it means no local answer (no document yet). Writer:
   * local (local/plugin.ts)
   */
  localFallback?: (reply: FastifyReply) => FastifyReply | undefined
}

/** The edge step's choice for a request it moved off the route's upstream. */
export interface EdgeChoice {
  /** the upstream the request goes to first */
  upstream: string
  /** `routeUrl` rebased onto that upstream's base path */
  url: string
  /** GET/HEAD only: where the upstream module retries once on a connection error, timeout or 5xx */
  fallback: string | undefined
}

/** The Edge fallback, once taken: the upstream asked the second time, and the path it was asked. */
export interface FallbackTaken {
  from: string
  upstream: string
  url: string
}

/** The upstream this request goes to now: the route's, or where Edge or its fallback moved it; `none` before a route matched. */
export function upstreamOf (gw: RequestGateway): string {
  return gw.fallback?.upstream ?? gw.edge?.upstream ?? gw.route?.upstream ?? 'none'
}

/** The path and query that go to `upstreamOf(gw)`. */
export function upstreamUrlOf (gw: RequestGateway): string {
  return gw.fallback?.url ?? gw.edge?.url ?? gw.routeUrl
}

/**
 * What the request metrics and the access log report as the request's decision: the step that
 * answered, from what each step recorded. The steps run in the pipeline's order and the first
 * that answers ends the request, so at most one of these is set, except that a request the cache
 * looked up (MISS) can still be shed or answered locally afterwards: those come first.
 */
export function decisionOf (gw: RequestGateway): Decision {
  if (gw.answeredLocally === true) return 'local'
  if (gw.shed === true) return 'shed'
  const c = gw.cacheStatus
  if (c === 'HIT') return 'cached'
  if (c === 'STALE' || c === 'UPDATING') return 'stale'
  if (gw.limitedBy !== undefined) return 'limited'
  if (gw.blocked === true) return 'blocked'
  return 'allowed'
}

declare module 'fastify' {
  interface FastifyRequest {
    gateway: RequestGateway
  }
}
