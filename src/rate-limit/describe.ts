/** The operator-facing text of limits (`flaggate explain`), from the compiled policy. */
import { effectiveLimits, type CompiledLimit, type CompiledRoute, type Policy } from '../policy/compile.js'
import { formatDuration } from '../shared/duration.js'

/**
 * For `flaggate explain`: the limits that apply to `envKey` on `route`, one line each, e.g.
 * `environment-document.1: 1/s, burst 10, by environmentKey+ip (override for this key)`.
 */
export function describeLimits (policy: Policy, route: CompiledRoute, envKey: string | undefined): string[] {
  const limits = effectiveLimits(policy, route, envKey)
  if (limits.length === 0) return ['no rate limit on this route']
  const overridden = limits !== route.limits
  return limits.map((l: CompiledLimit) => {
    const by = l.by.map((d) => d === 'environmentKey' && envKey === undefined ? 'environmentKey (absent: ip)' : d).join('+')
    const refill = l.burst / l.ratePerSec
    const parts = [`${l.id}: ${l.rateText}, burst ${l.burst}, by ${by}`, `full again after ${formatDuration(refill * 1000, 'precise')}`]
    if (l.shadow) parts.push('shadow: counted and logged, never rejects')
    if (overridden) parts.push('override for this key')
    return parts.join('; ')
  })
}

