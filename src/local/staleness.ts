/**
 * When a held document counts as stale: Core has not confirmed it (200 or 304) for more than
 * `STALE_AFTER_REFRESHES` refresh intervals (100 s at the default `refresh: 10s`). Ten missed
 * refreshes is well past a slow Core's hiccup and means Core has been out of reach for a while:
 * local answers still flow (that is their point during an outage), but an operator should know
 * they come from an old document. `/admin/status` marks the environment `stale: true`, and
 * `/readyz` names it in `warnings` while staying 200 (readiness must not take a replica out of
 * its load balancer during the very outage local answers are for).
 *
 * Pure: state, interval and clock in, verdict out.
 */
import type { EnvironmentState } from './documents.js'
import { redactKey } from '../shared/redact.js'

export const STALE_AFTER_REFRESHES = 10

export interface Staleness { ageSeconds: number | null; stale: boolean; staleAfterSeconds: number }

export function stalenessOf (state: EnvironmentState, refreshMs: number, now: number): Staleness {
  const staleAfterSeconds = (STALE_AFTER_REFRESHES * refreshMs) / 1000
  if (state.confirmedAt === undefined) return { ageSeconds: null, stale: false, staleAfterSeconds }
  const ageSeconds = Math.max(0, Math.round((now - state.confirmedAt) / 100) / 10)
  return { ageSeconds, stale: ageSeconds > staleAfterSeconds, staleAfterSeconds }
}

/** The readiness body's warnings: one line per listed environment whose document is stale. */
export function readinessWarnings (states: Iterable<EnvironmentState>, refreshMs: number, now: number): string[] {
  const out: string[] = []
  for (const s of states) {
    const st = stalenessOf(s, refreshMs, now)
    if (st.stale) out.push(`local document for ${redactKey(s.serverKey)} older than ${st.staleAfterSeconds}s (age ${st.ageSeconds}s)`)
  }
  return out
}
