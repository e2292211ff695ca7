/**
 * The `rate-limit` step (onRequest; contracts/pipeline.ts): find the limits in force for this
 * client on this route, decide them all in one call, answer 429 or let the request go on with
 * `RateLimit-Policy` / `RateLimit` headers (draft-ietf-httpapi-ratelimit-headers).
 *
 * Hot path: the plan (bucket params, key prefixes, hash-tag dimensions, the policy header) is
 * computed once per frozen limits array, and a recent client's bucket requests once per client
 * (keys.ts); per request there is one store call and one header string. Logging happens only for
 * shadow refusals and unexpected errors.
 */
import fp from 'fastify-plugin'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { effectiveLimits } from '../policy/compile.js'
import { GatewayError } from '../errors.js'
import type { Metrics } from '../metrics/registry.js'
import type { HotChild } from '../metrics/hot-counter.js'
import type { BucketDecision, RateLimitDecision, RateLimiter } from './core.js'
import { bucketRequests, planFor, type LimitPlan } from './keys.js'

export const RATELIMIT_POLICY_HEADER = 'ratelimit-policy'
export const RATELIMIT_HEADER = 'ratelimit'
export const RETRY_AFTER_HEADER = 'retry-after'

export interface RateLimitPluginOptions {
  limiter: RateLimiter
  metrics: Pick<Metrics, 'hot' | 'storeFallback'>
}

/** Seconds for `Retry-After` / `t`: rounded up, so a client never comes back before a token exists. */
function seconds (ms: number): number { return Math.ceil(ms / 1000) }

/**
 * `t` of the `RateLimit` field: seconds until more quota is available (draft 10 wording). For a
 * refused limit that is the wait for one token; for an allowed one, the wait for the next token
 * to drip in (0 when the bucket is full).
 */
function nextQuotaSeconds (d: BucketDecision, p: LimitPlan['limits'][number]): number {
  if (!d.allowed) return Math.max(1, seconds(d.retryAfterMs))
  if (d.remaining >= p.limit.burst) return 0
  const tokensMissing = p.limit.burst - d.remaining
  return Math.max(0, seconds(d.resetMs - (tokensMissing - 1) * p.params.intervalMs))
}

/**
 * Who an automatic block (src/blocking/abuse.ts) may target for a refusal by a limit counting
 * `by`: the client that was refused, never a shared identity. A key is shared by every browser
 * of a customer (client-side keys are public) or every backend instance, so a per-key limit's
 * refusal blocks the key only from this address; an `ip` limit's refusal blocks the address.
 * `ip` is the counted address (an IPv6 client's network).
 */
export function limitedClient (by: readonly string[], envKey: string | undefined, ip: string): { key?: string; ip?: string } | undefined {
  let key: string | undefined
  let byIp = false
  for (const d of by) {
    if (d === 'environmentKey') { if (envKey === undefined) byIp = true; else key = envKey } else if (d === 'ip') byIp = true
    else return undefined // a header value is no client the gateway can block
  }
  return byIp && key === undefined ? { ip } : { key: key!, ip }
}

async function rateLimit (app: FastifyInstance, opts: RateLimitPluginOptions): Promise<void> {
  const { limiter, metrics } = opts
  // Hot child counters per route (metrics/hot-counter.ts), resolved once.
  type Counters = { allowed: HotChild; limited: HotChild; shadow: HotChild }
  const counters = new Map<string, Counters>()
  const countersFor = (route: string): Counters => {
    let c = counters.get(route)
    if (c === undefined) {
      const hot = metrics.hot.ratelimitDecisions
      c = {
        allowed: hot.child({ route, result: 'allowed' }),
        limited: hot.child({ route, result: 'limited' }),
        shadow: hot.child({ route, result: 'shadow_limited' })
      }
      counters.set(route, c)
    }
    return c
  }

  /** Headers on an allowed request, or the 429 to throw; metrics either way. */
  function apply (request: FastifyRequest, reply: FastifyReply, plan: LimitPlan, decision: RateLimitDecision): GatewayError | undefined {
    const gw = request.gateway
    if (decision.source === 'local-fallback') metrics.storeFallback.inc()

    // An allowed request shows the most restrictive enforced limit (fewest tokens left); a
    // refused one shows, and is named after, the refused limit with the longest wait.
    let shown = -1
    let refused = -1
    let shadowRefused = false
    for (let i = 0; i < plan.limits.length; i++) {
      const d = decision.limits[i]!
      if (plan.limits[i]!.limit.shadow) {
        if (!d.allowed) {
          shadowRefused = true
          request.log.info({ route: plan.route, limit: plan.limits[i]!.limit.id, rate: plan.limits[i]!.limit.rateText, retryAfterMs: d.retryAfterMs }, 'shadow rate limit exceeded (not enforced)')
        }
        continue
      }
      if (shown === -1 || d.remaining < decision.limits[shown]!.remaining) shown = i
      if (!d.allowed && (refused === -1 || d.retryAfterMs > decision.limits[refused]!.retryAfterMs)) refused = i
    }

    const c = countersFor(plan.route)
    if (decision.allowed) {
      if (shadowRefused) c.shadow.inc(); else c.allowed.inc()
      if (shown !== -1) {
        const p = plan.limits[shown]!
        const d = decision.limits[shown]!
        reply.header(RATELIMIT_POLICY_HEADER, plan.policyHeader)
        reply.header(RATELIMIT_HEADER, `"${p.limit.id}";r=${d.remaining};t=${nextQuotaSeconds(d, p)}`)
      }
      return undefined
    }

    // Only an enforced limit can refuse, so `refused` is set; its `t` then equals Retry-After.
    if (refused === -1) { c.allowed.inc(); return undefined }
    c.limited.inc()
    const p = plan.limits[refused]!
    const d = decision.limits[refused]!
    const retryAfter = Math.max(1, seconds(d.retryAfterMs))
    gw.limitedBy = p.limit.id
    gw.limitedClient = limitedClient(p.limit.by, gw.envKey, gw.clientNet)
    return new GatewayError('FLAGGATE_RATE_LIMITED',
      `Rate limit '${p.limit.id}' exceeded (${p.limit.rateText}, burst ${p.limit.burst}, per ${p.limit.by.join('+')}); retry after ${retryAfter} s.`,
      {
        [RETRY_AFTER_HEADER]: String(retryAfter),
        [RATELIMIT_POLICY_HEADER]: plan.policyHeader,
        [RATELIMIT_HEADER]: `"${p.limit.id}";r=0;t=${retryAfter}`
      })
  }

  // Callback style: a decision taken without I/O (memory store, Redis fallback) finishes the
  // hook synchronously; only a Redis round trip goes through a promise.
  app.addHook('onRequest', (request: FastifyRequest, reply: FastifyReply, done: (err?: Error) => void) => {
    const gw = request.gateway
    const route = gw?.route
    if (route === undefined) { done(); return }
    const limits = effectiveLimits(gw.policy, route, gw.envKey)
    if (limits.length === 0) { done(); return }
    const plan = planFor(route.name, limits)
    const requests = bucketRequests(plan, { envKey: gw.envKey, clientIp: gw.clientNet, headers: request.headers })

    const local = limiter.decideLocal(requests)
    if (local !== undefined) { done(apply(request, reply, plan, local)); return }
    limiter.decide(requests).then(
      (decision) => { done(apply(request, reply, plan, decision)) },
      (err: unknown) => {
        // The limiters catch store failures themselves; reaching here is a bug. Let the request
        // through rather than turn a limiter bug into an outage.
        request.log.error({ err, route: route.name }, 'rate limiter failed; request let through')
        done()
      })
  })
}

const rateLimitPlugin = fp(rateLimit, { name: 'gateway-rate-limit', fastify: '5.x', dependencies: ['gateway-routing'] })
export default rateLimitPlugin
