/**
 * What a cache entry costs against its byte bound: a stored answer (every representation it holds:
 * identity, and br and gzip once made) and a remembered 403.
 */
import type { CachedDocument, UpstreamAnswer } from './document.js'

/** what one remembered answer costs beyond its strings and bytes (maps, objects, buffer headers), estimated */
const NEGATIVE_ENTRY_OVERHEAD = 256

/** `cache.maxSize` counts every representation held: the body, key, headers and compressed forms */
export function entrySize (doc: CachedDocument, key: string): number {
  let n = doc.body.length + Buffer.byteLength(key) + (doc.forms?.bytes ?? 0)
  for (const name in doc.headers) n += name.length + doc.headers[name]!.length
  return Math.max(1, n)
}

export function negativeKey (envKey: string, url: string): string {
  // a bad key is bad on every page and query: one entry per key, upstream and path (`url` starts
  // with the upstream's name and a newline, as in the document key)
  const q = url.indexOf('?')
  return `${envKey}\n${q === -1 ? url : url.slice(0, q)}`
}

export function negativeSize (answer: UpstreamAnswer, key: string): number {
  let n = NEGATIVE_ENTRY_OVERHEAD + key.length + answer.body.length
  for (const name in answer.headers) {
    const v = answer.headers[name]
    n += name.length + (v === undefined ? 0 : Array.isArray(v) ? v.join(', ').length : v.length)
  }
  return n
}
