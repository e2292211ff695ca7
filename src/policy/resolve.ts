/**
 * One way in: from the raw request target to the route and the exact upstream URL, for the
 * gateway (routing/plugin.ts) and `flaggate explain` alike. Pure: the policy in, a verdict out.
 */
import { matchRoute, type CompiledRoute, type Policy } from './compile.js'
import { documentQuery } from '../shared/document-query.js'
import { flagListQuery, isFlagListPath } from '../shared/flag-list.js'
import { canonicalTarget } from '../shared/path.js'

export type Resolution =
  /** answered 400 FLAGGATE_BAD_REQUEST */
  | { readonly kind: 'bad'; readonly message: string }
  /** answered 404 FLAGGATE_NOT_FOUND; `path` is canonical */
  | { readonly kind: 'none'; readonly path: string }
  | {
    readonly kind: 'route'
    readonly route: CompiledRoute
    /** the canonical path the route matched */
    readonly path: string
    /**
     * what goes upstream: the target's base path + the canonical path (with the trailing slash an
     * SDK route adds) + the query (on a cache route's GET and HEAD only `page_id`, which the cache
     * keeps for an upstream that paginates (cache/pages.ts), or `feature` on a flag list,
     * shared/flag-list.ts)
     */
    readonly upstreamUrl: string
  }

export function resolveTarget (policy: Policy, method: string, target: string): Resolution {
  const t = canonicalTarget(target)
  if (t.rejected) return { kind: 'bad', message: t.message }
  const m = matchRoute(policy, method, t.path)
  if (m === undefined) return { kind: 'none', path: t.path }
  // a cache route's query is what its key keeps: `feature` on a flag list, `page_id` on a document
  const query = m.route.cache !== undefined && (method === 'GET' || method === 'HEAD')
    ? (isFlagListPath(m.upstreamPath) ? flagListQuery(t.query) : documentQuery(t.query))
    : t.query
  return { kind: 'route', route: m.route, path: t.path, upstreamUrl: policy.targets[m.route.upstream]!.basePath + m.upstreamPath + query }
}
