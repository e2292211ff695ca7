import type { documentQuery, documentUrl } from '../shared/document-query.js'

/**
 * What a cached environment document is keyed by: the environment key, the upstream, the
 * canonical upstream path and, for an upstream that paginates (Edge), `page_id`, the only query
 * parameter Edge reads on this route. Other parameters (`?cb=1`, `?cb=2`) neither vary the key nor
 * reach Core: routing keeps only {@link documentQuery}'s result on a cache route, and the cache
 * keys and fills by {@link documentUrl} of it, so the key and the request that fills it are built
 * from the same string. Core does not paginate: its documents are keyed and filled without
 * `page_id`, and Edge's pages are bounded per key (pages.ts).
 */

/**
 * The cache key of a document. `url` is the upstream path plus the query {@link documentUrl}
 * keeps; header values cannot contain a newline, so no key can forge another key's prefix.
 */
export function cacheKey (envKey: string, url: string, upstream = ''): string {
  // the upstream keeps Edge's and Core's documents apart (edge routing)
  return `${envKey}\n${upstream}\n${url}`
}

/** The upstream path of a cache key (key, upstream and URL on their own lines), without its query. */
export function pathOfKey (key: string): string {
  const url = key.slice(key.indexOf('\n', key.indexOf('\n') + 1) + 1)
  const q = url.indexOf('?')
  return q === -1 ? url : url.slice(0, q)
}
