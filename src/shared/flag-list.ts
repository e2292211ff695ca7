/**
 * Cached flag lists: a `cache` rule on a `flags/` route. Browsers and phones poll `GET flags/` with
 * one client key by the thousand, and Core evaluates every one of them from its database; a cached
 * list answers them from memory (one Core request per key, query and ttl per replica), with the
 * document cache's single flight, stale rules and purges.
 *
 * The key is the environment key, the canonical path, the upstream and the `feature` query
 * parameter, the only one Core reads on this endpoint (`?feature=<name>` answers one flag, or 404):
 * every other parameter is dropped before the request goes upstream, so `flags/?feature=x` is never
 * served for `flags/` and `flags/?cb=123` cannot make a miss per request.
 *
 * `identities/` can never be cached: Core writes on it (creates the identity, stores traits), and
 * its answer belongs to one identity. Validation refuses a `cache` rule on a route whose path or
 * prefix names it ({@link identitiesCacheProblem}); a broader cached prefix (`/`) never caches
 * an identities/ request either ({@link isIdentitiesPath}, checked on the request path).
 */
import { keepOneParam } from './document-query.js'

/** The SDK's flag-list endpoint, `…/flags/` (any API prefix; the canonical path has the trailing slash). */
export function isFlagListPath (path: string): boolean {
  return path.endsWith('/flags/')
}

/** `?a=1&feature=x&feature=y` → `?feature=y` (the last one wins, as in Django's QueryDict); '' without one. */
export function flagListQuery (query: string): string {
  return keepOneParam(query, 'feature')
}

const IDENTITIES = '/identities/'

/** An SDK identities path (`…/identities/…`): never answered from the cache, whatever the route. */
export function isIdentitiesPath (path: string): boolean {
  return path.includes(IDENTITIES)
}

/** Why a route whose `path` or `pathPrefix` names `identities/` cannot carry a `cache` rule. */
export function identitiesCacheProblem (match: { path?: string | undefined; pathPrefix?: string | undefined }): string | undefined {
  const p = match.path ?? match.pathPrefix
  if (p === undefined || !(p.includes(IDENTITIES) || p.endsWith('/identities'))) return undefined
  return 'identities/ cannot be cached: Core creates the identity and stores its traits on every call, and each answer belongs to one identity. Remove the cache rule.'
}
