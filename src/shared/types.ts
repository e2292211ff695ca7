/**
 * What rooms share about one request. Routing sets `request.gateway` once (onRequest, first
 * hook); later rooms read it and record their decisions on it; the access log reads it last.
 */
import type { CompiledRoute, Policy } from '../policy/compile.js'

export type Decision = 'allowed' | 'limited' | 'blocked' | 'shed' | 'cached' | 'stale'
export type CacheStatus = 'HIT' | 'MISS' | 'STALE' | 'UPDATING' | 'BYPASS'

export interface RequestGateway {
  /** the policy snapshot this request runs on, start to end, even if a reload happens meanwhile */
  policy: Policy
  /** undefined when no route matched (the request is answered 404) */
  route: CompiledRoute | undefined
  /** name of the upstream the request goes to; edge routing may change it */
  upstream: string
  /** the canonical request path (routing/path.ts) the route matched; undefined when refused (400) */
  path: string | undefined
  /** what goes upstream: base path + canonical path (slash added on SDK routes) + query (routing/match.ts) */
  upstreamUrl: string
  /** the X-Environment-Key header, or undefined; never log it unredacted */
  envKey: string | undefined
  /** client IP after trustedProxies: what blocks match by CIDR */
  clientIp: string
  /** the client address as counted (shared/ip-prefix.ts): IPv4, or the IPv6 network of server.ipv6Prefix */
  clientNet: string
  decision: Decision
  cacheStatus: CacheStatus | undefined
  /** ms spent waiting for the upstream (headers), when it was asked */
  upstreamMs: number | undefined
  /** the limit that refused this request, for the log */
  limitedBy: string | undefined
  /**
   * what the refusing limit counted as the client (the key, the key from one IP, or the IP),
   * so an automatic block targets exactly that; unset when it counted a header
   */
  limitedClient?: { key?: string; ip?: string }
  /** hrtime at onRequest */
  startedAt: bigint
  /** hrtime when the upstream request started */
  upstreamStartedAt?: bigint
  /** X-Forwarded-For as sent upstream when trusted proxies vouched for a chain (client first, peer last); unset means `clientIp` alone */
  forwardedFor?: string | undefined
  /** GET/HEAD only: where the upstream module retries once on a connection error, timeout or 5xx (set by edge routing) */
  fallbackUpstream?: string
}

declare module 'fastify' {
  interface FastifyRequest {
    gateway: RequestGateway
  }
}
