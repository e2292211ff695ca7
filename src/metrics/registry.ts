/**
 * Every metric, defined once per gateway instance (a Registry per app, so
 * several gateways in one test process do not collide). Labels never carry a client key.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'
import { HotChildren } from './hot-counter.js'

/** One upstream's load, read at scrape time (set by the composition from the breakers; the hot path never touches a gauge). */
export interface UpstreamLoad { upstream: string; state: 'closed' | 'open' | 'half-open'; inFlight: number; limit: number | null }
/** flaggate_breaker_state: ordered by severity, so `max by (upstream)` over replicas shows the worst */
export const BREAKER_STATE_VALUE = { closed: 0, 'half-open': 1, open: 2 } as const

export function createMetrics (opts: { defaultMetrics?: boolean } = {}) {
  const registry = new Registry()
  const upstreamLoad: { read: () => Iterable<UpstreamLoad> } = { read: () => [] }
  if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: registry, prefix: 'flaggate_' })
  const registers = [registry]
  // the counters the request path increments, through hot children (hot-counter.ts)
  const hot = { requests: new HotChildren(), cacheEvents: new HotChildren(), ratelimitDecisions: new HotChildren(), edgeRouting: new HotChildren(), responseBytes: new HotChildren(), compressedIdentityBytes: new HotChildren(), flagListCache: new HotChildren() }
  const metrics = {
    registry,
    hot,
    requests: new Counter({ name: 'flaggate_requests_total', help: 'Requests answered, by route, decision and status', labelNames: ['route', 'decision', 'status'] as const, registers, collect () { hot.requests.flush(this) } }),
    upstreamDuration: new Histogram({
      name: 'flaggate_upstream_request_duration_seconds',
      help: 'Time to the upstream response headers',
      labelNames: ['upstream', 'route'] as const,
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.8, 1, 2.5, 5, 10],
      registers
    }),
    breakerState: new Gauge({
      name: 'flaggate_breaker_state',
      help: 'Breaker state per upstream: 0 closed, 1 half-open, 2 open',
      labelNames: ['upstream'] as const,
      registers,
      collect () { this.reset(); for (const u of upstreamLoad.read()) this.set({ upstream: u.upstream }, BREAKER_STATE_VALUE[u.state]) }
    }),
    upstreamInflight: new Gauge({
      name: 'flaggate_upstream_inflight',
      help: 'Requests in flight to each upstream (proxied, cache fills, probes)',
      labelNames: ['upstream'] as const,
      registers,
      collect () { this.reset(); for (const u of upstreamLoad.read()) this.set({ upstream: u.upstream }, u.inFlight) }
    }),
    upstreamConcurrencyLimit: new Gauge({
      name: 'flaggate_upstream_concurrency_limit',
      help: 'The maxInFlight in force per upstream (fixed, adaptive or ramping after recovery); absent without maxInFlight',
      labelNames: ['upstream'] as const,
      registers,
      collect () { this.reset(); for (const u of upstreamLoad.read()) if (u.limit !== null) this.set({ upstream: u.upstream }, u.limit) }
    }),
    /** the composition sets `read` (from the breakers); the three gauges above call it at scrape time */
    upstreamLoad,
    cacheEvents: new Counter({ name: 'flaggate_cache_events_total', help: 'Cache events: hit, miss, stale, updating, bypass, store, evict, purge, revalidated, negative_hit, compressed (an entry got its br and gzip forms)', labelNames: ['event'] as const, registers, collect () { hot.cacheEvents.flush(this) } }),
    cacheBytes: new Gauge({ name: 'flaggate_cache_bytes', help: 'Bytes held by the document cache, every representation (identity, br, gzip) counted', registers }),
    // compression (src/compress): answers from memory and compressed proxied answers. The ratio per
    // route and encoding is compression_identity_bytes_total / response_body_bytes_total
    responseBytes: new Counter({ name: 'flaggate_response_body_bytes_total', help: 'Body bytes sent, by route and content-coding (identity, br, gzip): answers from the cache, proxied answers the gateway compressed, and every proxied answer streamed (larger than the read-whole bound, or unsized)', labelNames: ['route', 'encoding'] as const, registers, collect () { hot.responseBytes.flush(this) } }),
    compressedIdentityBytes: new Counter({ name: 'flaggate_compression_identity_bytes_total', help: 'Identity (uncompressed) size of the answers sent compressed, by route and content-coding: divide by response_body_bytes_total for the ratio', labelNames: ['route', 'encoding'] as const, registers, collect () { hot.compressedIdentityBytes.flush(this) } }),
    flagListCache: new Counter({ name: 'flaggate_flag_list_cache_total', help: 'Flag-list answers (flags/ routes with a cache rule) by cache status: HIT, MISS, STALE, UPDATING, BYPASS', labelNames: ['status'] as const, registers, collect () { hot.flagListCache.flush(this) } }),
    ratelimitDecisions: new Counter({ name: 'flaggate_ratelimit_decisions_total', help: 'Rate-limit decisions by route and result (allowed, limited, shadow_limited)', labelNames: ['route', 'result'] as const, registers, collect () { hot.ratelimitDecisions.flush(this) } }),
    blocksActive: new Gauge({ name: 'flaggate_blocks_active', help: 'Blocks in force, by source (static, runtime, abuse)', labelNames: ['source'] as const, registers }),
    storeFallback: new Counter({ name: 'flaggate_store_fallback_total', help: 'Decisions taken on local state because Redis was unusable', registers }),
    policyReloads: new Counter({ name: 'flaggate_policy_reloads_total', help: 'Policy reloads by result (ok, error)', labelNames: ['result'] as const, registers }),
    probeSuccess: new Gauge({ name: 'flaggate_probe_success', help: '1 when the last synthetic probe succeeded', labelNames: ['probe'] as const, registers }),
    // edge routing (src/edge): every request of an edge-enabled route, by where it went and why
    edgeRouting: new Counter({ name: 'flaggate_edge_routing_total', help: 'Edge routing decisions by route, upstream and reason (listed, hashed, not-selected, no-key, breaker-open)', labelNames: ['route', 'upstream', 'reason'] as const, registers, collect () { hot.edgeRouting.flush(this) } }),
    upstreamFallbacks: new Counter({ name: 'flaggate_upstream_fallbacks_total', help: 'Reads retried on the fallback upstream after the first failed (connection error, timeout, 5xx), by route, from and to', labelNames: ['route', 'from', 'to'] as const, registers }),
    // a gauge of the last run, as blackbox_exporter's probe_duration_seconds
    probeDuration: new Gauge({ name: 'flaggate_probe_duration_seconds', help: 'Duration of the last synthetic probe, to the end of the response body', labelNames: ['probe'] as const, registers })
  }
  // Series an alert watches exist at 0 from the start: a counter that first appears at 1 gives
  // increase() nothing to compare with, so the first bad reload of each replica would not alert.
  for (const result of ['ok', 'error']) metrics.policyReloads.labels(result).inc(0)
  return metrics
}

export type Metrics = ReturnType<typeof createMetrics>
