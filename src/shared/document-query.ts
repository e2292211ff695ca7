/**
 * The query a cached environment-document request keeps: `page_id`, the only query parameter Core
 * (and Edge) read on that route. Routing sends this upstream on a cache route and the cache keys
 * the document by it (cache/key.ts), so the key and the request that fills it are built from the
 * same string.
 */

/**
 * `?…name=<value as given>…` → `?name=<value>`: the one query parameter a cached route keeps; the
 * last one wins, as in Django's QueryDict; '' without one. `name` is 7 characters or more.
 */
export function keepOneParam (query: string, name: string): string {
  if (query.length < 2) return ''
  let found: string | undefined
  let start = 1
  while (start < query.length) {
    let end = query.indexOf('&', start)
    if (end === -1) end = query.length
    if (query.startsWith(name, start) && (end - start === name.length || query.charCodeAt(start + name.length) === 0x3d)) found = query.slice(start, end)
    start = end + 1
  }
  return found === undefined ? '' : '?' + found
}

/** `?…page_id=<value as given>…` → `?page_id=<value>`. */
export function documentQuery (query: string): string {
  return keepOneParam(query, 'page_id')
}
