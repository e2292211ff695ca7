/**
 * What a cached environment document is keyed by (SPEC section 3): the environment key, the
 * canonical upstream path and `page_id`, the only query parameter Core (and Edge) read on this
 * route. Other parameters (`?cb=1`, `?cb=2`) neither vary the key nor reach Core: routing sends
 * {@link documentQuery}'s result upstream on a cache route, so the key and the request that fills
 * it are built from the same string.
 */

/** `?…page_id=<value as given>…` → `?page_id=<value>`; the last one wins, as in Django's QueryDict. */
export function documentQuery (query: string): string {
  if (query.length < 2) return ''
  let found: string | undefined
  let start = 1
  while (start < query.length) {
    let end = query.indexOf('&', start)
    if (end === -1) end = query.length
    if (query.startsWith('page_id', start) && (end - start === 7 || query.charCodeAt(start + 7) === 0x3d)) found = query.slice(start, end)
    start = end + 1
  }
  return found === undefined ? '' : '?' + found
}

/**
 * The cache key of a document. `url` is the upstream path plus {@link documentQuery}; header
 * values cannot contain a newline, so no key can forge another key's prefix.
 */
export function cacheKey (envKey: string, url: string, upstream = ''): string {
  // the upstream keeps Edge's and Core's documents apart (edge routing, SPEC section 6)
  return `${envKey}\n${upstream}\n${url}`
}
