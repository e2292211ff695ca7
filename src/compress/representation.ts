/**
 * The representations of one cached entry: identity (the stored body) and, once made, br and
 * gzip (forms.ts). Each has its own bytes and its own strong ETag; Last-Modified is the entry's.
 * What a cache entry holds of them, and how a conditional request is matched against the one
 * representation the client is about to get.
 */
import { formEtag, type CompressedBodies } from './forms.js'
import type { Encoding } from './negotiate.js'

export interface Representation {
  readonly coding: Encoding
  readonly body: Buffer
  /** strong, quoted */
  readonly etag: string
}

/** An entry's compressed forms; `bytes` is what they add to the cache's byte count. */
export interface EntryForms {
  readonly br: Representation
  readonly gzip: Representation
  readonly bytes: number
}

export function entryForms (identityEtag: string, bodies: CompressedBodies): EntryForms {
  const br = { coding: 'br' as const, body: bodies.br, etag: formEtag(identityEtag, 'br') }
  const gzip = { coding: 'gzip' as const, body: bodies.gzip, etag: formEtag(identityEtag, 'gzip') }
  // the bodies and their ETags, as the cache counts an entry's body and headers
  return { br, gzip, bytes: br.body.length + gzip.body.length + br.etag.length + gzip.etag.length }
}

/**
 * Does If-None-Match name this representation's ETag (or `*`)? Entity tags compare weakly, as RFC
 * 9110 13.1.2 requires for If-None-Match: `W/"x.br"` matches `"x.br"`, and the br ETag never
 * matches the gzip or identity representation.
 */
export function etagMatches (etag: string, ifNoneMatch: string): boolean {
  if (ifNoneMatch.trim() === '*') return true
  for (const raw of ifNoneMatch.split(',')) {
    const t = raw.trim()
    if ((t.startsWith('W/') ? t.slice(2) : t) === etag) return true
  }
  return false
}

/**
 * Does the client hold this representation? If-None-Match wins over If-Modified-Since (RFC 9110
 * 13.1.3); Last-Modified is shared by every representation of an entry.
 */
export function clientHasRepresentation (etag: string, lastModifiedMs: number, ifNoneMatch: string | undefined, ifModifiedSince: string | undefined): boolean {
  if (ifNoneMatch !== undefined) return etagMatches(etag, ifNoneMatch)
  if (ifModifiedSince !== undefined) {
    const since = Date.parse(ifModifiedSince)
    return Number.isFinite(since) && Math.floor(lastModifiedMs / 1000) <= Math.floor(since / 1000)
  }
  return false
}
