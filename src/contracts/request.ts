/**
 * The per-request record: what the steps of the pipeline (contracts/pipeline.ts) share about one
 * request. Routing creates `request.gateway` (onRequest, first step); later steps read it and
 * write only the fields whose writer names them below; the request metrics and the access log
 * (observe/) read it last. "Writer:" next to each field says which step writes it.
 */
import type { FastifyReply } from 'fastify'
import type { CompiledRoute, Policy } from '../policy/compile.js'

export type Decision = 'allowed' | 'limited' | 'blocked' | 'shed' | 'cached' | 'stale' | 'local'
export type CacheStatus = 'HIT' | 'MISS' | 'STALE' | 'UPDATING' | 'BYPASS'

export interface RequestGateway {
  /** the policy snapshot this request runs on, start to end, even if a reload happens meanwhile. Writer: routing */
  policy: Policy
  /** undefined when no route matched (the request is answered 404). Writer: routing */
  route: CompiledRoute | undefined
  /**
   * name of the upstream the request goes to. Writer: routing sets the route's upstream, the
   * `edge` step may replace it; the cache lookup's read fallback records the upstream that answered
   */
  upstream: string
  /** the canonical request path (shared/path.ts) the route matched; undefined when refused (400). Writer: routing */
  path: string | undefined
  /** what goes upstream: base path + canonical path (slash added on SDK routes) + query (policy/resolve.ts). Writer: as `upstream`, always together with it */
  upstreamUrl: string
  /** the X-Environment-Key header, or undefined; never log it unredacted. Writer: routing */
  envKey: string | undefined
  /** client IP after trustedProxies: what blocks match by CIDR. Writer: routing */
  clientIp: string
  /** the client address as counted (shared/ip-prefix.ts): IPv4, or the IPv6 network of server.ipv6Prefix; limits, automatic blocks, top, budgets. Writer: routing */
  clientNet: string
  /**
   * Writer: routing sets `allowed`; then only the step that answers, with a value its row of the
   * pipeline table lists (block → blocked, rate-limit → limited, conditional/fresh-hit/lookup →
   * cached or stale, the proxy's gate → shed, recorded by the app's error handler)
   */
  decision: Decision
  /** Writer: the cache steps (conditional, fresh-hit, lookup) */
  cacheStatus: CacheStatus | undefined
  /** ms spent waiting for the upstream (headers), when it was asked. Writer: whoever asked it (proxy, or the cache lookup's fill) */
  upstreamMs: number | undefined
  /** why the upstream attempt failed, when the answer is a 502/504 of ours. Writer: the app's error handler, from the upstream module's cause */
  upstreamError?: string
  /** the limit that refused this request, for the log. Writer: rate-limit */
  limitedBy: string | undefined
  /**
   * what the refusing limit counted as the client (the key, the key from one IP, or the IP),
   * so an automatic block targets exactly that; unset when it counted a header. Writer: rate-limit
   */
  limitedClient?: { key?: string; ip?: string }
  /** hrtime at onRequest. Writer: routing */
  startedAt: bigint
  /** hrtime when the upstream request started. Writer: the proxy */
  upstreamStartedAt?: bigint
  /** X-Forwarded-For as sent upstream when trusted proxies vouched for a chain (client first, peer last); unset means `clientIp` alone. Writer: routing */
  forwardedFor?: string | undefined
  /** GET/HEAD only: where the upstream module retries once on a connection error, timeout or 5xx. Writer: edge (the cache lookup clears it once it has used it) */
  fallbackUpstream?: string
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
   * unreachable upstream); undefined from it means no local answer (no document yet)
   */
  localFallback?: (reply: FastifyReply) => FastifyReply | undefined
}

declare module 'fastify' {
  interface FastifyRequest {
    gateway: RequestGateway
  }
}
