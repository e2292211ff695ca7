/**
 * What the Flagsmith Edge API serves (Flagsmith/flagsmith:sdk/openapi.yaml, whose
 * server is edge.api.flagsmith.com), and the validation rule built on it: a route whose
 * requests Edge cannot answer must not carry an `edge` section. Checked when the policy is loaded
 * (`flaggate validate`, reload), never per request.
 */
import type { RouteData } from './schema.js'

/** Edge's SDK endpoints and their methods. A route matching GET also takes HEAD (policy/compile.ts). */
export const EDGE_SERVED: ReadonlyMap<string, ReadonlySet<string>> = new Map([
  ['/api/v1/flags/', new Set(['GET', 'HEAD'])],
  ['/api/v1/identities/', new Set(['GET', 'HEAD', 'POST'])],
  ['/api/v1/environment-document/', new Set(['GET', 'HEAD'])],
  ['/api/v1/analytics/flags/', new Set(['POST'])]
])

const SERVED_LIST = [...EDGE_SERVED.keys()].join(', ')

/** Why Edge cannot take a path it does not serve; the messages operators see in `flaggate validate`. */
function unservedReason (path: string): string {
  if (/^\/api\/v1\/traits(\/|$)/.test(path)) {
    return `Edge does not serve ${path}: traits/ exists only on Core, and a trait written to the other store splits the identity's data (Core's PostgreSQL and Edge's DynamoDB are no longer synchronised)`
  }
  if (/^\/api\/v1\/flags\/[^/]+\/multivariate-options\/?$/.test(path)) {
    return `Edge does not serve ${path}: flags/<id>/multivariate-options/ exists only on Core`
  }
  if (EDGE_SERVED.has(`${path}/`)) return `Edge serves ${path}/ (with the trailing slash): match that path`
  if (/^\/api\/v1\//.test(path)) return `Edge does not serve ${path}: outside the SDK endpoints it is Core's dashboard (admin) API`
  return `Edge does not serve ${path}`
}

/**
 * Problems of one route's `edge` section, as messages naming the route; empty when the route can
 * be sent to Edge (or has no `edge` section).
 */
export function edgeRouteProblems (route: Pick<RouteData, 'name' | 'match' | 'upstream' | 'edge'>): string[] {
  if (route.edge === undefined) return []
  const where = `route '${route.name}' cannot use edge routing`
  if (route.upstream === 'edge') return [`${where}: its upstream is already edge (the edge section moves traffic from another upstream to edge)`]
  const { path, pathPrefix, methods } = route.match
  if (path === undefined) {
    return [`${where}: a pathPrefix route (${pathPrefix ?? '?'}) also matches paths Edge does not serve (traits/, multivariate-options, the dashboard API); give it match.path, one of ${SERVED_LIST}`]
  }
  const served = EDGE_SERVED.get(path)
  if (served === undefined) return [`${where}: ${unservedReason(path)}; Edge serves only ${SERVED_LIST}`]
  const allowed = [...served].filter((m) => m !== 'HEAD').join(', ')
  if (methods === undefined) return [`${where}: it matches every method, and Edge serves only ${allowed} on ${path}; list them in match.methods`]
  const refused = methods.filter((m) => !served.has(m))
  if (refused.length > 0) return [`${where}: Edge does not serve ${refused.join(', ')} on ${path} (only ${allowed})`]
  return []
}
