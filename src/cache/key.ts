import { documentQuery } from '../shared/document-query.js'

/**
 * What a cached environment document is keyed by: the environment key, the
 * canonical upstream path and `page_id`, the only query parameter Core (and Edge) read on this
 * route. Other parameters (`?cb=1`, `?cb=2`) neither vary the key nor reach Core: routing sends
 * {@link documentQuery}'s result upstream on a cache route, so the key and the request that fills
 * it are built from the same string.
 */

/**
 * The cache key of a document. `url` is the upstream path plus {@link documentQuery}; header
 * values cannot contain a newline, so no key can forge another key's prefix.
 */
export function cacheKey (envKey: string, url: string, upstream = ''): string {
  // the upstream keeps Edge's and Core's documents apart (edge routing)
  return `${envKey}\n${upstream}\n${url}`
}
