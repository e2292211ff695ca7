/**
 * The Edge fallback rule, once for the proxy (client.ts `forward`) and the cache's fill
 * (cache/lookup-step.ts): a read routed to one upstream (Edge, or the route's own upstream) whose
 * first attempt failed is asked once of the other upstream the edge step named
 * (`gw.edge.fallback`), at the same path rebased onto that upstream's base path, within what is
 * left of the time budget: the timeout of the route's own upstream, counted from the first
 * attempt. What counts as "failed" is the caller's (the proxy also retries a 5xx it streamed; the
 * fill, a 5xx it read).
 */
import type { Policy, UpstreamTarget } from '../policy/compile.js'
import { upstreamOf, upstreamUrlOf, type RequestGateway } from '../contracts/request.js'

/**
 * A path built for upstream `from` (its base path + the request's path and query), moved onto
 * upstream `to`'s base path. Routing builds the path for the route's upstream; the edge step and
 * the fallback move it.
 */
export function rebasePath (targets: Policy['targets'], from: string, to: string, path: string): string {
  return targets[to]!.basePath + path.slice(targets[from]!.basePath.length)
}

export interface FallbackPlan {
  /** the upstream that failed, and the one to ask now */
  from: string
  to: string
  target: UpstreamTarget
  /** the path for `to` */
  path: string
  /** what is left of the budget, capped by `to`'s own timeout; at least 1 ms */
  timeoutMs: number
}

/**
 * Where to ask once more, or undefined: no fallback named, the same upstream, an upstream missing
 * from the policy, or no time left.
 */
export function planFallback (opts: {
  targets: Policy['targets']
  /** the route's own upstream: its timeout is the budget */
  routeUpstream: string | undefined
  /** the upstream the first attempt went to, and its path */
  from: string
  path: string
  fallback: string | undefined
  /** ms since the first attempt started */
  elapsedMs: number
}): FallbackPlan | undefined {
  const { targets, from, fallback } = opts
  if (fallback === undefined || fallback === from) return undefined
  const target = targets[fallback]
  const fromTarget = targets[from]
  if (target === undefined || fromTarget === undefined) return undefined
  const budgetMs = targets[opts.routeUpstream ?? from]?.timeoutMs ?? fromTarget.timeoutMs
  const remainingMs = Math.floor(budgetMs - opts.elapsedMs)
  if (remainingMs < 1) return undefined
  return { from, to: fallback, target, path: rebasePath(targets, from, fallback, opts.path), timeoutMs: Math.min(target.timeoutMs, remainingMs) }
}

/**
 * The fallback for this request, taken: planned from where the request goes now and the edge
 * step's fallback, and recorded in `gw.fallback` (so `upstreamOf(gw)` is now the fallback's
 * upstream). Once per request: undefined when a fallback was already taken, or none is possible.
 */
export function takeFallback (gw: RequestGateway, elapsedMs: number): FallbackPlan | undefined {
  if (gw.fallback !== undefined) return undefined
  const plan = planFallback({ targets: gw.policy.targets, routeUpstream: gw.route?.upstream, from: upstreamOf(gw), path: upstreamUrlOf(gw), fallback: gw.edge?.fallback, elapsedMs })
  if (plan !== undefined) gw.fallback = { from: plan.from, upstream: plan.to, url: plan.path }
  return plan
}
