/**
 * The gateway's metrics (prefix `flaggate_`), in one place for the scrape test, the
 * Grafana dashboard and the alert rules.
 *
 * SECTION7_METRICS: those this branch produces; test/ops/metrics.test.ts scrapes each after real
 * traffic. PENDING_METRICS: announced by capabilities being built in parallel (breaker, blocking,
 * concurrency limits); the dashboard and alerts already use them. When one lands, move its name
 * from PENDING to SECTION7 (and add a plausibility check to metrics.test.ts if a generic one,
 * "a TYPE line and at least one finite sample", is not enough).
 */
export const SECTION7_METRICS = [
  'flaggate_requests_total',
  'flaggate_upstream_request_duration_seconds',
  'flaggate_cache_events_total',
  'flaggate_cache_bytes',
  'flaggate_ratelimit_decisions_total',
  'flaggate_store_fallback_total',
  'flaggate_policy_reloads_total',
  'flaggate_probe_success',
  'flaggate_probe_duration_seconds'
] as const

export const PENDING_METRICS = [
  'flaggate_breaker_state',
  'flaggate_blocks_active',
  'flaggate_upstream_inflight',
  'flaggate_upstream_concurrency_limit'
] as const

/** prom-client default metrics the dashboard uses (collectDefaultMetrics with the flaggate_ prefix). */
export const PROCESS_METRICS = [
  'flaggate_process_cpu_seconds_total',
  'flaggate_process_resident_memory_bytes',
  'flaggate_nodejs_eventloop_lag_p99_seconds'
] as const

/** A histogram's series names: `_bucket`, `_sum`, `_count` belong to the metric. */
export function baseMetricName (series: string): string {
  return series.replace(/_(bucket|sum|count)$/, '')
}
