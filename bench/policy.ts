/**
 * The policy every flaggate of the benchmarks runs: every capability that exists, with limits that
 * decide every request and refuse none. One entry of CAPABILITIES per capability, so a capability
 * that lands is one more line here.
 */
import type { PrivateRedis } from '../test/support/redis-server.js'

export const ENV_DOC = '/api/v1/environment-document/'
export const FLAGS = '/api/v1/flags/'

export interface RouteSpec { name: string; path: string; upstream: string; cached: boolean }
export type Capability = { name: string; route?: (r: RouteSpec) => string; top?: () => string }
const NEVER = '1000000/s, burst: 1000000' // limits that decide every request and refuse none

export const CAPABILITIES: Capability[] = [
  { name: 'rate limits (per key, per key + IP)', route: () => `limit: [{ by: environmentKey, rate: ${NEVER} }, { by: [environmentKey, ip], rate: ${NEVER} }]` },
  { name: 'document cache', route: (r) => r.cached ? 'cache: { ttl: 30s, staleWhileRevalidate: 60s, staleIfError: 10m, maxEntrySize: 10mb }' : '', top: () => 'cache: { maxSize: 256mb }' },
  // blocks that match no benchmark client: the index is consulted on every request
  {
    name: 'blocking (static key, CIDR and User-Agent blocks; automatic blocks)',
    top: () => 'blocklist:\n  - { key: ser.never-sent-key, reason: bench }\n  - { ip: 203.0.113.0/24, reason: bench }\n  - { userAgent: "^BadBot/", reason: bench }\nabuse: { rejections: 300 per 1m, blockFor: 15m }'
  },
  // every request asks the gate; limits no benchmark reaches
  {
    name: 'circuit breaker and maxInFlight per upstream',
    top: () => ['core', 'fast'].map((u) => `  ${u}:\n    latency: { percentile: 95, above: 5s, window: 10s, minRequests: 20 }\n    errorRate: { above: 50%, window: 10s, minRequests: 20 }\n    maxInFlight: 1000\n    openFor: 15s`).reduce((a, b) => a + '\n' + b, 'breakers:')
  },
  // the budget of keys Core has not accepted, per client address: every proxied request with a key asks it
  { name: 'unknown-key budget', top: () => `unknownKeys: { rate: ${NEVER} }` },
  // flag traffic hashed per key for the Edge API, which none of the benchmark keys lands on
  { name: 'edge routing (0 %, hashed per key)', route: (r) => r.cached ? '' : 'edge: { percent: 0, keys: [] }' }
]

/** `without`: leave out the capabilities whose name matches (bench/ab.ts --without: what one costs). */
export function policy (o: { docUrl: string; fastUrl: string; redis?: PrivateRedis; without?: RegExp }): string {
  const caps = CAPABILITIES.filter((c) => o.without === undefined || !o.without.test(c.name))
  const routes: RouteSpec[] = [
    { name: 'environment-document', path: ENV_DOC, upstream: 'core', cached: true },
    { name: 'flags', path: FLAGS, upstream: 'fast', cached: false }
  ]
  const body = routes.map((r) => {
    const extra = caps.map((c) => c.route?.(r) ?? '').filter((s) => s !== '').map((s) => `    ${s}\n`).join('')
    return `  - name: ${r.name}\n    match: { methods: [GET], path: ${r.path} }\n    upstream: ${r.upstream}\n${extra}`
  }).join('')
  return `server: { listen: 127.0.0.1:0 }
admin: { listen: 127.0.0.1:0 }
upstreams:
  core: { url: "${o.docUrl}", timeout: 10s, maxConnections: 128 }
  fast: { url: "${o.fastUrl}", timeout: 10s, maxConnections: 128 }
  edge: { url: "${o.fastUrl}", timeout: 10s, maxConnections: 128 }
${o.redis === undefined ? '' : `store:\n  redis: { url: "${o.redis.url}", keyPrefix: "bench:${Date.now()}:", commandTimeout: 50ms }\n`}routes:
${body}  - name: default
    match: { pathPrefix: / }
    upstream: fast
    limit: { by: ip, rate: 50/s, burst: 100, shadow: true }
${caps.map((c) => c.top?.() ?? '').filter((s) => s !== '').join('\n')}
`
}

