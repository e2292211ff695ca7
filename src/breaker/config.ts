/**
 * `breakers.<upstream>` (policy, already in ms and fractions) → the core's {@link BreakerConfig}.
 * An upstream without a `breakers` entry gets {@link NO_BREAKER}: it never trips and has no cap,
 * but its requests in flight are still counted for status and metrics.
 */
import type { BreakerData, UpstreamData } from '../policy/schema.js'
import { ADAPTIVE_DEFAULTS, type AdaptiveLimitOptions } from './adaptive.js'
import type { BreakerConfig } from './core.js'

export const NO_BREAKER: BreakerConfig = Object.freeze({
  latency: undefined,
  errorRate: undefined,
  maxInFlight: undefined,
  openForMs: 15_000,
  halfOpenRequests: 5,
  recoveryMs: 0
})

export function breakerConfig (data: BreakerData | undefined, upstream: UpstreamData | undefined, random?: () => number): BreakerConfig {
  if (data === undefined) return NO_BREAKER
  let maxInFlight: BreakerConfig['maxInFlight']
  if (typeof data.maxInFlight === 'number') maxInFlight = data.maxInFlight
  else if (data.maxInFlight !== undefined) {
    const a = data.maxInFlight.auto
    const max = Math.max(a.min, a.max ?? upstream?.maxConnections ?? 128)
    const options: AdaptiveLimitOptions = { ...ADAPTIVE_DEFAULTS, min: a.min, max, buffer: a.buffer }
    if (random !== undefined) options.random = random
    maxInFlight = options
  }
  return {
    latency: data.latency === undefined ? undefined : { percentile: data.latency.percentile, aboveMs: data.latency.above, windowMs: data.latency.window, minRequests: data.latency.minRequests },
    errorRate: data.errorRate === undefined ? undefined : { above: data.errorRate.above, windowMs: data.errorRate.window, minRequests: data.errorRate.minRequests },
    maxInFlight,
    openForMs: data.openFor,
    halfOpenRequests: data.halfOpenRequests,
    recoveryMs: data.recovery
  }
}
