/**
 * How long a request waited on its upstream, once for the proxy and the cache's fill: the one
 * writer of `upstreamStartedAt` (when the first upstream request of this request started, the
 * start of the Edge fallback's time budget) and `upstreamMs` (the access log's figure).
 */
import type { RequestGateway } from '../contracts/request.js'

export function elapsedMs (since: bigint): number {
  return Number(process.hrtime.bigint() - since) / 1e6
}

export interface UpstreamTimer {
  /** when this timer started */
  readonly started: bigint
  /** records `upstreamMs`: the time since `started` */
  stop: () => void
}

/** Starts timing an upstream request made for this request (its first one also sets `upstreamStartedAt`). */
export function timeUpstream (gw: RequestGateway): UpstreamTimer {
  const started = process.hrtime.bigint()
  gw.upstreamStartedAt ??= started
  return { started, stop: () => { gw.upstreamMs = elapsedMs(started) } }
}
