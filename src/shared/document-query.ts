/**
 * The query a cached environment-document request keeps: `page_id`, the only query parameter Edge
 * reads on that route. Routing keeps it on a cache route (and drops every other parameter); the
 * cache then keys the document by it, and sends it with the fill, only for an upstream that
 * paginates documents ({@link documentUrl}): Core builds one document whatever the `page_id`, so
 * distinct `page_id`s must not make distinct entries (and Core builds) of that one document.
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

/** The upstream name of Flagsmith's Edge API, the one upstream known to paginate documents. */
export const EDGE_UPSTREAM = 'edge'

const PAGE_QUERY = '?page_id'

/** Whether a cached document's URL (path plus {@link documentQuery}) names a page past the first. */
export function isPageUrl (url: string): boolean {
  return url.includes(PAGE_QUERY)
}

/**
 * The URL a cached document is keyed and filled by: `url` as routing built it for an upstream
 * that paginates, without its `page_id` for one that does not (`url` itself when it has none, so
 * the hit path allocates nothing). Flag lists' `?feature=` is not a page and is kept.
 */
export function documentUrl (url: string, paginates: boolean): string {
  if (paginates) return url
  const q = url.indexOf(PAGE_QUERY)
  return q === -1 ? url : url.slice(0, q)
}
