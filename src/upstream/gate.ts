/**
 * The slot where the breaker and `maxInFlight` sit: every upstream attempt (proxy, cache fill,
 * edge fallback, probe) asks the gate first and reports its outcome exactly once.
 */
import type { GatewayError } from '../errors.js'

export type UpstreamOutcome =
  /** headers received; 5xx counts as a failure for the breaker, 4xx does not */
  | { kind: 'response'; status: number; latencyMs: number }
  | { kind: 'timeout'; latencyMs: number }
  /** refused, reset, DNS */
  | { kind: 'unreachable'; latencyMs: number }
  /** the gateway gave up for its own reasons (client left, body over the buffering limit): not counted */
  | { kind: 'abandoned' }

/**
 * Who an attempt is for: the environment key (routing) and the client address (after
 * trustedProxies). The breaker's trip evidence counts distinct clients, and fair admission counts
 * in-flight requests per key (per address without a key). Omitted for the gateway's own requests
 * that no client asked for (the active probe).
 */
export interface GateClient {
  readonly key: string | undefined
  readonly ip: string
}

export interface Admission {
  /** call exactly once per admitted attempt */
  finish (outcome: UpstreamOutcome): void
}

export interface UpstreamGate {
  /**
   * Once per upstream attempt; returns an Admission, or a GatewayError (503
   * FLAGGATE_UPSTREAM_OVERLOADED with Retry-After) when the request must be shed.
   */
  admit (upstream: string, route: string, client?: GateClient): Admission | GatewayError
  /** true while the upstream's breaker is open: the cache serves stale, edge-enabled GET routes go to Edge */
  isOpen (upstream: string): boolean
}

const ADMITTED: Admission = Object.freeze({ finish (): void {} })

/** Admits everything, never open: the default when no breaker is configured. */
export const OPEN_GATE: UpstreamGate = Object.freeze({
  admit: (): Admission => ADMITTED,
  isOpen: (): boolean => false
})
