/**
 * The environment-document cache, with no HTTP framework in it: the plugin
 * turns a {@link LookupResult} into a reply, tests drive it with a fake fill and a fake clock.
 *
 * Built on lru-cache's `fetch()`, which gives us single flight: while one fill for a key is in
 * flight every other caller for that key gets the same promise, so any number of concurrent misses
 * make one upstream request and share its answer, errors included.
 *
 * Freshness is ours, not lru-cache's. lru-cache's `ttl` is set to the entry's whole useful life
 * (`ttl + max(staleWhileRevalidate, staleIfError)`), so lru-cache only drops entries nobody may
 * serve any more; HIT / UPDATING / STALE are decided here from `storedAt` and the route's rule of
 * the request at hand. Every refresh is a `fetch({ forceRefresh: true })`, and we pass every option
 * that matters on every call, because in lru-cache "the options of the FIRST fetch() call win" for
 * a fetch in flight: the first caller's fill function (its headers, its upstream) and its rule's
 * lifetime are the ones used; later callers only choose whether they wait (`allowStale`).
 */
import { LRUCache } from 'lru-cache'
import { systemClock, type Clock } from '../shared/clock.js'
import { cacheKey, pathOfKey } from './key.js'
import { ClientStrings } from '../shared/client-memo.js'
import type { CacheEvent, CacheRule, CacheStats, CachedDocument, DocumentCacheOptions, Fill, LookupRequest, LookupResult, PurgeTarget, UpstreamAnswer } from './document.js'
import { TooLargeToCache } from './document.js'
import { clientHasCurrent, etagOf } from './validators.js'
import { entryIds, matches } from './purge-target.js'
import { entrySize } from './entry-size.js'
import { NegativeCache } from './negative.js'
import { TooLargeKeys } from './too-large.js'
import { DocumentPages } from './pages.js'
import { CORE_LAST_MODIFIED_LAG_MS, PurgeLog } from './purge-log.js'
import { isFlagListPath } from '../shared/flag-list.js'
import { entryForms } from '../compress/representation.js'
import type { CompressedBodies } from '../compress/forms.js'

export { cacheKey, CORE_LAST_MODIFIED_LAG_MS }
export { DEFAULT_NEGATIVE_TTL_MS } from './negative.js'

const PASS: LookupResult = Object.freeze({ kind: 'pass' })
const REPLAY_HEADERS = ['content-type', 'x-flagsmith-document-updated-at', 'link'] as const
const JSON_TYPE = /^application\/(?:[\w.+-]+\+)?json(?:\s*;|$)/i

/** Rejection of a fill whose answer is passed to the waiters but not stored. */
class UncachedAnswer extends Error {
  readonly answer: UpstreamAnswer
  /** a 5xx or 429: stale-if-error applies, and the stale entry is kept */
  readonly upstreamFailure: boolean
  constructor (answer: UpstreamAnswer, upstreamFailure: boolean) {
    super(`upstream answered ${answer.statusCode}; not stored`)
    this.answer = answer
    this.upstreamFailure = upstreamFailure
  }
}

interface FillContext { fill: Fill; rule: CacheRule }

export function lifetimeOf (rule: CacheRule): number {
  return rule.ttl + Math.max(rule.staleWhileRevalidate, rule.staleIfError)
}

function headerValue (headers: UpstreamAnswer['headers'], name: string): string | undefined {
  const v = headers[name]
  return Array.isArray(v) ? v.join(', ') : v
}

export class DocumentCache {
  #lru: LRUCache<string, CachedDocument, FillContext>
  readonly #negative: NegativeCache
  readonly #tooLarge: TooLargeKeys
  readonly #purges = new PurgeLog()
  readonly #pages = new DocumentPages()
  // A recent (key, URL, upstream)'s cache key, as the same string object every time, so the hit
  // path's LRU lookup does not flatten and hash a fresh 70-character string (shared/client-memo.ts).
  // Core and Edge are the only upstreams a document comes from; a key's URLs are its pages.
  readonly #keys = new ClientStrings({ maxBytes: 2 * 1024 * 1024, maxIpsPerKey: 16, maxNames: 2 })
  readonly #clock: Clock
  readonly #onEvent: ((event: CacheEvent, count: number) => void) | undefined
  #hits = 0
  #misses = 0
  #stale = 0

  constructor (opts: DocumentCacheOptions) {
    this.#clock = opts.clock ?? systemClock
    this.#onEvent = opts.onEvent
    this.#lru = this.#createLru(opts.maxSize)
    this.#negative = new NegativeCache(this.#clock, opts.negativeMaxBytes, opts.negativeTtlMs)
    this.#tooLarge = new TooLargeKeys(this.#clock)
  }

  #createLru (maxSize: number): LRUCache<string, CachedDocument, FillContext> {
    if (!Number.isInteger(maxSize) || maxSize < 1) throw new TypeError('cache.maxSize must be a whole number of bytes ≥ 1')
    return new LRUCache<string, CachedDocument, FillContext>({
      maxSize,
      sizeCalculation: entrySize,
      // our fake clock drives expiry too; ttlResolution 0 because its cached "now" would go
      // stale across clock steps in tests
      perf: { now: this.#clock },
      ttlResolution: 0,
      // a failed refresh keeps the stale entry: stale-if-error is decided per request, in lookup()
      noDeleteOnFetchRejection: true,
      allowStaleOnFetchRejection: false,
      // a purge or an eviction deletes the slot of a fill in flight; its waiters still get the
      // answer (it is just not stored) instead of an abort error
      ignoreFetchAbort: true,
      allowStaleOnFetchAbort: false,
      fetchMethod: async (key, stale, { signal, options, context }) => await this.#fetchMethod(key, stale, signal, options, context),
      dispose: (_v, _k, reason) => { if (reason === 'evict') this.#emit('evict') }
    })
  }

  /** The byte budget changed (policy reload): keep the most recently used entries that fit. */
  resize (maxSize: number): void {
    if (maxSize === this.#lru.maxSize) return
    const old = this.#lru
    const next = this.#createLru(maxSize)
    // dump() lists the least recently used first, so loading it in order keeps recency and, when
    // the budget shrank, evicts the oldest
    next.load(old.dump())
    this.#lru = next
    old.clear()
  }

  get bytes (): number { return this.#lru.calculatedSize }

  stats (): CacheStats {
    return {
      entries: this.#lru.size,
      bytes: this.#lru.calculatedSize,
      maxSize: this.#lru.maxSize,
      hits: this.#hits,
      misses: this.#misses,
      stale: this.#stale,
      negativeEntries: this.#negative.size,
      tooLargeEntries: this.#tooLarge.size,
      negativeBytes: this.#negative.bytes
    }
  }

  /**
   * The fresh document for a conditional request, when the client's validators say it already has
   * it (a 304 from memory); otherwise undefined and nothing is counted.
   */
  notModified (envKey: string, url: string, rule: CacheRule, ifNoneMatch: string | undefined, ifModifiedSince: string | undefined, upstream = '',
    etagFor?: (doc: CachedDocument) => string): { document: CachedDocument; freshForMs: number } | undefined {
    const doc = this.#lru.get(this.#key(envKey, url, upstream))
    if (doc === undefined) return undefined
    const age = this.#clock() - doc.storedAt
    // `etagFor`: the ETag of the representation this client would be sent (br, gzip, identity)
    if (age >= rule.ttl || !clientHasCurrent(doc, ifNoneMatch, ifModifiedSince, etagFor?.(doc) ?? doc.etag)) return undefined
    this.#count('hit')
    return { document: doc, freshForMs: rule.ttl - age }
  }

  /**
   * The URL a document is keyed and filled by: `url` (upstream path plus `?page_id=…`) for an
   * upstream that paginates documents, without its `page_id` for one that does not (pages.ts).
   * Every caller passes its URL through this before any other method.
   */
  documentUrl (url: string, upstream = ''): string {
    return this.#pages.url(url, upstream)
  }

  #key (envKey: string, url: string, upstream: string): string {
    let key = this.#keys.get(envKey, url, upstream)
    if (key === undefined) {
      key = cacheKey(envKey, url, upstream)
      this.#keys.set(envKey, url, upstream, key)
    }
    return key
  }

  /**
   * The hit path without a promise: the fresh document for this key (counted as a hit), or
   * undefined when anything else applies (a remembered 403, stale, missing), which
   * {@link lookup} then decides. Allocation-free once the cache key is remembered.
   */
  fresh (envKey: string, url: string, rule: CacheRule, upstream = ''): CachedDocument | undefined {
    if (this.#negative.has(envKey, `${upstream}\n${url}`)) return undefined
    const doc = this.#lru.get(this.#key(envKey, url, upstream))
    if (doc === undefined || this.#clock() - doc.storedAt >= rule.ttl) return undefined
    this.#count('hit')
    return doc
  }

  /**
   * Gives `doc` its compressed forms (src/compress): a copy with them replaces it, counted in the
   * byte bound, lifetime unchanged; only if `doc` is still the entry stored and the copy fits.
   */
  attachForms (envKey: string, url: string, upstream: string, doc: CachedDocument, bodies: CompressedBodies): CachedDocument | undefined {
    const key = this.#key(envKey, url, upstream)
    if (doc.forms !== undefined || this.#lru.peek(key) !== doc) return undefined
    const withForms: CachedDocument = { ...doc, forms: entryForms(doc.etag, bodies) }
    if (entrySize(withForms, key) > this.#lru.maxSize) return undefined
    this.#lru.set(key, withForms, { noUpdateTTL: true })
    this.#emit('compressed')
    return withForms
  }

  /** How long `doc` stays fresh under `rule`, from now (≤ 0 once stale). */
  freshForMs (doc: CachedDocument, rule: CacheRule): number {
    return rule.ttl - (this.#clock() - doc.storedAt)
  }

  /**
   * Answers one request: from memory when fresh; stale at once with one background refresh within
   * staleWhileRevalidate; otherwise after the shared fill, falling back to stale within
   * staleIfError when the upstream fails. Throws what the fill threw when nothing can be served.
   */
  async lookup (req: LookupRequest): Promise<LookupResult> {
    const { envKey, url, rule, upstream = '' } = req
    const negative = this.#negative.get(envKey, `${upstream}\n${url}`)
    if (negative !== undefined) {
      this.#count('negative_hit')
      return { kind: 'response', status: 'HIT', response: negative }
    }

    const key = this.#key(envKey, url, upstream)
    if (this.#tooLarge.has(key)) return PASS
    const now = this.#clock()
    // past its key's bound of pages: proxied, not cached (pages.ts)
    if (this.#pages.isPage(key) && !this.#pages.admits(key, now)) return PASS
    let doc = this.#lru.get(key)
    if (doc !== undefined && now - doc.storedAt >= lifetimeOf(rule)) doc = undefined
    if (doc !== undefined) {
      const age = now - doc.storedAt
      if (age < rule.ttl) {
        this.#count('hit')
        return { kind: 'document', status: 'HIT', document: doc, freshForMs: rule.ttl - age }
      }
      if (req.breakerOpen === true) return this.#staleOrUnavailable(doc, rule, now)
      if (age < rule.ttl + rule.staleWhileRevalidate) {
        // allowStale: if a refresh is already running this joins nothing and starts nothing
        void this.#lru.fetch(key, { forceRefresh: true, allowStale: true, ttl: lifetimeOf(rule), context: { fill: req.fill, rule } }).catch(() => {})
        this.#count('updating')
        return { kind: 'document', status: 'UPDATING', document: doc, freshForMs: 0 }
      }
    } else if (req.breakerOpen === true) {
      return { kind: 'unavailable' }
    }

    let fetched: CachedDocument | undefined
    try {
      fetched = await this.#lru.fetch(key, { forceRefresh: true, allowStale: false, ttl: lifetimeOf(rule), context: { fill: req.fill, rule } })
    } catch (err) {
      if (err instanceof TooLargeToCache) {
        if (err.answer !== undefined && err.answer.statusCode !== 200) {
          // a large error page says nothing about the document or its size: the copy we hold
          // stays and is served within staleIfError (the page is released unread: lookup-step.ts Handover)
          const current = this.#lru.peek(key, { allowStale: true })
          if (current !== undefined && this.#clock() - current.storedAt < rule.ttl + rule.staleIfError) {
            this.#count('stale')
            return { kind: 'document', status: 'STALE', document: current, freshForMs: 0 }
          }
          return { kind: 'pass', answer: err.answer }
        }
        // the document outgrew maxEntrySize: definitive, the old copy goes
        this.#lru.delete(key)
        this.#tooLarge.remember(key, rule.ttl)
        return err.answer === undefined ? PASS : { kind: 'pass', answer: err.answer }
      }
      const upstreamFailure = !(err instanceof UncachedAnswer) || err.upstreamFailure
      if (upstreamFailure) {
        // re-read: a purge during the fill removed the entry, and a purged document is not served
        const current = this.#lru.peek(key, { allowStale: true })
        const t = this.#clock()
        if (current !== undefined && t - current.storedAt < rule.ttl + rule.staleIfError) {
          this.#count('stale')
          return { kind: 'document', status: 'STALE', document: current, freshForMs: 0 }
        }
      }
      if (err instanceof UncachedAnswer) {
        this.#count('miss')
        return { kind: 'response', status: 'MISS', response: err.answer }
      }
      this.#count('miss')
      throw err
    }
    /* c8 ignore next 2 -- lru-cache only resolves undefined for options we never set */
    if (fetched === undefined) throw new Error('document cache: fill resolved nothing')
    this.#count('miss')
    return { kind: 'document', status: 'MISS', document: fetched, freshForMs: Math.max(0, rule.ttl - (this.#clock() - fetched.storedAt)) }
  }

  #staleOrUnavailable (doc: CachedDocument, rule: CacheRule, now: number): LookupResult {
    if (now - doc.storedAt < rule.ttl + rule.staleIfError) {
      this.#count('stale')
      return { kind: 'document', status: 'STALE', document: doc, freshForMs: 0 }
    }
    return { kind: 'unavailable' }
  }

  /** Drops documents (and remembered 403s) on this replica; returns how many went. */
  purge (target: PurgeTarget): number {
    this.#purges.record(target, this.#clock())
    const digests = new Map<string, string>()
    let n = 0
    if ('all' in target) {
      this.#lru.forEach(() => { n++ })
      this.#lru.clear()
      this.#pages.clear()
    } else {
      // forEach also visits entries whose refresh is in flight (their stale value); fills for
      // cold keys in flight are caught by the purge log when they complete
      const doomed: string[] = []
      // an environment's documents name its client key: its flag lists go too (src/shared/flag-list.ts)
      const clientKeys = new Set<string>()
      this.#lru.forEach((doc, key) => {
        if (!matches(target, doc.envKey, doc, digests)) return
        doomed.push(key)
        if (doc.clientKey !== undefined && ('envId' in target || 'projectId' in target)) clientKeys.add(doc.clientKey)
      })
      const already = new Set(doomed)
      if (clientKeys.size > 0) this.#lru.forEach((doc, key) => { if (clientKeys.has(doc.envKey) && !already.has(key)) doomed.push(key) })
      for (const key of doomed) {
        if (this.#lru.delete(key)) n++
        this.#pages.release(key)
      }
    }
    n += this.#negative.purge(target, digests)
    this.#tooLarge.purge(target, digests)
    this.#emit('purge', n)
    return n
  }

  async #fetchMethod (key: string, stale: CachedDocument | undefined, signal: AbortSignal,
    options: LRUCache.FetcherFetchOptions<string, CachedDocument, FillContext>, context: FillContext): Promise<CachedDocument> {
    const { fill, rule } = context
    const gen = this.#purges.generation
    const envKey = key.slice(0, key.indexOf('\n'))
    const conditional = stale?.upstreamLastModified !== undefined && this.#clock() >= stale.unconditionalUntil
    const answer = await fill(conditional ? { ifModifiedSince: stale.upstreamLastModified } : {})
    const now = this.#clock()
    // not aborted ⇒ the slot still holds this fill (a purge, eviction or set would have aborted it)
    const ownsSlot = !signal.aborted
    options.ttl = lifetimeOf(rule)

    if (answer.statusCode === 304 && conditional && stale !== undefined) {
      const doc: CachedDocument = { ...stale, storedAt: now }
      if (ownsSlot && (this.#purges.purgedSince(gen, envKey, doc) || !this.#keepsPage(key, now, rule))) this.#lru.delete(key)
      this.#emit('revalidated')
      return doc
    }

    const status = answer.statusCode
    if (status >= 500 || status === 429) throw new UncachedAnswer(answer, true)
    const contentType = headerValue(answer.headers, 'content-type')
    const ids = status === 200 && contentType !== undefined && JSON_TYPE.test(contentType) ? entryIds(answer.body, isFlagListPath(pathOfKey(key))) : undefined
    if (ids === undefined && stale !== undefined && status !== 401 && status !== 403) {
      // A refresh answered with anything but a document (406, 404, a redirect, an HTML page, JSON
      // that does not parse) says nothing about the document we hold: it stays, and stale-if-error
      // applies, as for a 5xx. Only Core refusing the key (401/403) drops it: a revoked key must
      // stop being served. (attack 11, docs/security.md)
      throw new UncachedAnswer(answer, true)
    }
    if (ids === undefined || answer.body.length > rule.maxEntrySize || answer.body.length + key.length > this.#lru.maxSize) {
      // a definitive answer that replaces the document: the old copy must not be served any more
      if (ownsSlot) this.#lru.delete(key)
      this.#negative.remember(envKey, key.slice(envKey.length + 1), answer)
      throw new UncachedAnswer(answer, false)
    }

    const headers: Record<string, string> = {}
    for (const name of REPLAY_HEADERS) {
      const v = headerValue(answer.headers, name)
      if (v !== undefined) headers[name] = v
    }
    this.#pages.learn(key, headers.link)
    const etag = etagOf(answer.body)
    const upstreamLastModified = headerValue(answer.headers, 'last-modified')
    let lastModifiedMs: number
    if (stale !== undefined && stale.etag === etag) {
      lastModifiedMs = stale.lastModifiedMs
    } else {
      const upstreamMs = upstreamLastModified === undefined ? NaN : Date.parse(upstreamLastModified)
      lastModifiedMs = Number.isFinite(upstreamMs) ? upstreamMs : now
      // the body changed but Core's Last-Modified did not move (it lags by up to a minute, CORE_LAST_MODIFIED_LAG_MS): move
      // ours, or a client's If-Modified-Since would get a 304 for a document it does not have
      if (stale !== undefined && lastModifiedMs <= stale.lastModifiedMs) lastModifiedMs = Math.max(now, stale.lastModifiedMs + 1000)
      lastModifiedMs = Math.floor(lastModifiedMs / 1000) * 1000
    }
    const draft: CachedDocument = {
      envKey,
      body: answer.body,
      etag,
      lastModified: new Date(lastModifiedMs).toUTCString(),
      lastModifiedMs,
      upstreamLastModified,
      storedAt: now,
      envId: ids.envId,
      projectId: ids.projectId,
      clientKey: ids.clientKey,
      headers,
      unconditionalUntil: 0
    }
    const purgedAt = this.#purges.recentPurgeAt(envKey, draft, now)
    const doc: CachedDocument = purgedAt === undefined ? draft : { ...draft, unconditionalUntil: purgedAt + CORE_LAST_MODIFIED_LAG_MS }
    if (ownsSlot && this.#purges.purgedSince(gen, envKey, doc)) {
      // asked for before a purge that covers it: give it to the waiters, keep it out of the cache
      this.#lru.delete(key)
    } else if (ownsSlot && !this.#keepsPage(key, now, rule)) {
      // a page past its key's bound (distinct pages filled at once): the waiters get it, not the cache
      this.#lru.delete(key)
    } else if (ownsSlot) {
      this.#emit('store')
    }
    return doc
  }

  /** Whether `key` may be stored: not a page, or a page that holds one of its key's slots (pages.ts). */
  #keepsPage (key: string, now: number, rule: CacheRule): boolean {
    return !this.#pages.isPage(key) || this.#pages.claim(key, now, now + lifetimeOf(rule))
  }

  #count (event: 'hit' | 'miss' | 'stale' | 'updating' | 'negative_hit'): void {
    if (event === 'hit' || event === 'negative_hit') this.#hits++
    else if (event === 'miss') this.#misses++
    else this.#stale++
    this.#emit(event)
  }

  #emit (event: CacheEvent, count = 1): void {
    this.#onEvent?.(event, count)
  }
}
