/**
 * A cached document's validators: its entity tag (a digest of the bytes served, so it changes
 * exactly when they do) and whether a conditional request's copy is current.
 */
import { createHash } from 'node:crypto'
import type { CachedDocument } from './document.js'

export function etagOf (body: Buffer): string {
  return `"${createHash('sha256').update(body).digest('base64url')}"`
}

/**
 * Does the client's copy match? If-None-Match wins over If-Modified-Since (RFC 9110 13.1.3);
 * entity tags compare weakly, as RFC 9110 13.1.2 requires for If-None-Match.
 * Not `fresh`: it wants a response-headers object built per request and re-parses Last-Modified,
 * where we hold the validators precomputed; and it says "not fresh" to any `Cache-Control:
 * no-cache` request, turning a 304 that our own cache can vouch for into the whole document.
 */
export function clientHasCurrent (doc: CachedDocument, ifNoneMatch: string | undefined, ifModifiedSince: string | undefined): boolean {
  if (ifNoneMatch !== undefined) {
    if (ifNoneMatch.trim() === '*') return true
    const own = doc.etag
    for (const raw of ifNoneMatch.split(',')) {
      const t = raw.trim()
      if ((t.startsWith('W/') ? t.slice(2) : t) === own) return true
    }
    return false
  }
  if (ifModifiedSince !== undefined) {
    const since = Date.parse(ifModifiedSince)
    return Number.isFinite(since) && Math.floor(doc.lastModifiedMs / 1000) <= Math.floor(since / 1000)
  }
  return false
}
