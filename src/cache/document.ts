/**
 * What the document cache deals in: a route's cache rule, an upstream answer and the fill that
 * gets one, a cached document with its validators, what a lookup returns, what a purge names,
 * the events it counts and its statistics. Types only, and the one error a fill throws.
 */
import type { EntryForms } from '../compress/representation.js'
import type { Clock } from '../shared/clock.js'
/** A route's `cache` rule, already in ms and bytes (policy/schema.ts). */
export interface CacheRule {
  readonly ttl: number
  readonly staleWhileRevalidate: number
  readonly staleIfError: number
  readonly maxEntrySize: number
}

export interface UpstreamAnswer {
  statusCode: number
  headers: Record<string, string | string[] | undefined>
  body: Buffer
}

/**
 * Performs the one upstream request of a fill. `ifModifiedSince` is set for a conditional
 * revalidation. Throwing means the upstream failed (unreachable, timeout, breaker refused):
 * stale-if-error applies.
 */
export type Fill = (conditional: { ifModifiedSince?: string }) => Promise<UpstreamAnswer>

/**
 * The upstream answer of a fill that passed `maxEntrySize`, still streaming. The request that
 * started the fill takes it and sends it on, so Core builds such a document once per client
 * request, not twice; everyone else waiting on that fill makes its own upstream request.
 */
export interface OversizeAnswer {
  readonly statusCode: number
  /** the body for `owner` (the request that started the fill), once; undefined for anyone else */
  take (owner: unknown): unknown
}

/** Thrown by a fill that stopped buffering a body larger than the rule's `maxEntrySize`. */
export class TooLargeToCache extends Error {
  constructor (readonly answer?: OversizeAnswer) { super('document larger than maxEntrySize') }
}

export interface CachedDocument {
  readonly envKey: string
  readonly body: Buffer
  /** strong validator: a hash of the body, quoted */
  readonly etag: string
  /** Last-Modified as clients see it (HTTP date); moves forward whenever the body changes */
  readonly lastModified: string
  readonly lastModifiedMs: number
  /** Core's own Last-Modified, sent back as If-Modified-Since when revalidating */
  readonly upstreamLastModified: string | undefined
  /** when the upstream last confirmed this body (200 or 304) */
  readonly storedAt: number
  /** the document's `id` (Flagsmith environment id), for webhook purges */
  readonly envId: number | undefined
  /** the document's `project.id`, for organisation-webhook purges of project-wide changes */
  readonly projectId: number | undefined
  /** upstream headers replayed to clients (content-type, X-Flagsmith-Document-Updated-At, Link) */
  readonly headers: Readonly<Record<string, string>>
  /** revalidations before this time are unconditional (see {@link CORE_LAST_MODIFIED_LAG_MS}) */
  readonly unconditionalUntil: number
  /**
   * The document's `api_key`, the environment's client key: a purge of the environment also
   * drops the flag lists cached under that key (flag lists name no environment when empty)
   */
  readonly clientKey?: string | undefined
  /**
   * The br and gzip forms of this very body, once made (src/compress): an entry object with forms
   * replaces the one without in the cache, so forms never outlive or mix with another version
   */
  readonly forms?: EntryForms | undefined
}

export type CacheStatus = 'HIT' | 'MISS' | 'STALE' | 'UPDATING'

export type LookupResult =
  /** a document from the cache or from the shared fill; `freshForMs` is 0 when stale */
  | { kind: 'document'; status: CacheStatus; document: CachedDocument; freshForMs: number }
  /**
   * An upstream answer that is not stored (non-200, not JSON, larger than `maxEntrySize`), given
   * to every waiter of the fill (MISS), or Core's 403 for a bad key from the negative cache (HIT).
   */
  | { kind: 'response'; status: 'HIT' | 'MISS'; response: UpstreamAnswer }
  /** the caller said the breaker is open and nothing servable is cached: the breaker answers */
  | { kind: 'unavailable' }
  /**
   * The document is larger than `maxEntrySize`: not stored, not buffered. `answer` is the fill's
   * answer still streaming, for the request that started the fill to take; everyone else (and
   * every request for this key within the rule's ttl, which is remembered) streams it from the
   * upstream itself: one upstream request per client request.
   */
  | { kind: 'pass'; answer?: OversizeAnswer }

export interface LookupRequest {
  envKey: string
  /**
   * canonical upstream path plus `?page_id=…` when given and the upstream paginates (the cache's
   * documentUrl, pages.ts): what the fill requests
   */
  url: string
  /** the upstream the fill goes to: part of the key, so Edge's and Core's documents never mix */
  upstream?: string
  rule: CacheRule
  /** the upstream's breaker is open: serve stale within staleIfError, never call the upstream */
  breakerOpen?: boolean
  /** used only if this call starts the upstream request */
  fill: Fill
}

/** what a purge names (the type lives with the contracts: webhooks and local evaluation read it too) */
export type { PurgeTarget } from '../contracts/purge-target.js'

export type CacheEvent = 'hit' | 'miss' | 'stale' | 'updating' | 'store' | 'evict' | 'purge' | 'revalidated' | 'negative_hit' | 'compressed'

export interface DocumentCacheOptions {
  /** `cache.maxSize`: all cached documents together, in bytes */
  maxSize: number
  clock?: Clock
  /** how long Core's 403 for a key is answered from memory */
  negativeTtlMs?: number
  /** all remembered 403s together (keys, bodies, headers), in bytes: they are keyed by client input */
  negativeMaxBytes?: number
  /** called for every event, for metrics */
  onEvent?: (event: CacheEvent, count: number) => void
}

export interface CacheStats {
  entries: number
  bytes: number
  maxSize: number
  hits: number
  misses: number
  stale: number
  negativeEntries: number
  /** keys remembered as too large to cache */
  tooLargeEntries: number
  /** bytes the negative cache holds, as counted against `negativeMaxBytes` */
  negativeBytes: number
}
