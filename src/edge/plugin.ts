/**
 * Edge routing on the request path: one onRequest hook right after routing and
 * before the cache and the limits, so that everything after it (the cache key, the fill, the
 * proxy, `X-Flaggate-Upstream`, the upstream metrics) sees the upstream the request really goes
 * to. It reads the route's `edge` section from the request's policy snapshot, so the split
 * reloads live with the policy.
 *
 * Hot path: routes without an `edge` section cost one property check; edge-enabled routes cost
 * one SHA-256 of the key (only when the percentage is above 0) and one counter increment.
 */
import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import type { Metrics } from '../metrics/registry.js'
import { HotChildTable } from '../metrics/hot-counter.js'
import { decideEdge, EDGE_UPSTREAM } from './core.js'
import { rebasePath } from '../upstream/index.js'

export interface EdgePluginOptions {
  metrics: Pick<Metrics, 'hot'>
  /** whether an upstream's breaker is open now (the upstream gate); never open without breakers */
  isOpen: (upstream: string) => boolean
}

async function edgeRouting (app: FastifyInstance, opts: EdgePluginOptions): Promise<void> {
  const { metrics, isOpen } = opts
  const counters = new HotChildTable(metrics.hot.edgeRouting, (route, upstream, reason) => ({ route, upstream, reason: String(reason) }))
  const count = (route: string, upstream: string, reason: string): void => { counters.get(route, upstream, reason).inc() }

  app.addHook('onRequest', (request, _reply, done) => {
    const gw = request.gateway
    const route = gw.route
    // an edge section without an `edge` upstream is valid only at 0% with no keys: nothing to do
    const edgeTarget = gw.policy.targets[EDGE_UPSTREAM]
    if (route?.edge === undefined || edgeTarget === undefined) { done(); return }
    const d = decideEdge(route.edge, { routeUpstream: route.upstream, method: request.method, key: gw.envKey, upstreamOpen: isOpen(route.upstream) })
    count(route.name, d.upstream, d.reason)
    if (d.upstream !== route.upstream) {
      // routing built the URL for the route's upstream: swap its base path for Edge's. A fallback
      // is named for reads only (decideEdge): the upstream module retries them once there
      gw.edge = { upstream: d.upstream, url: rebasePath(gw.policy.targets, route.upstream, EDGE_UPSTREAM, gw.routeUrl), fallback: d.fallback }
    }
    done()
  })
}

export default fp(edgeRouting, { name: 'gateway-edge', fastify: '5.x', dependencies: ['gateway-routing'] })
