/**
 * Which representation of a cached entry a request gets, and the forms an entry still needs
 * (docs/compression.md). Entries of at least {@link MIN_COMPRESS_BYTES} are negotiable: their
 * answers say `Vary: Accept-Encoding`, and the first answer to a client that accepts br or gzip
 * asks the compressor for the entry's forms (made once per entry version, off the request path;
 * identity is served until they are attached to the entry).
 */
import type { FastifyRequest } from 'fastify'
import type { CachedDocument } from './document.js'
import type { DocumentCache } from './core.js'
import { MIN_COMPRESS_BYTES } from '../compress/levels.js'
import { negotiate, type Encoding } from '../compress/negotiate.js'
import type { Compressor } from '../compress/forms.js'
import { HotChildTable } from '../metrics/hot-counter.js'
import type { Metrics } from '../metrics/registry.js'
import { upstreamOf, upstreamUrlOf } from '../contracts/request.js'

export { MIN_COMPRESS_BYTES }

/** The coding for this Accept-Encoding; identity while the forms are not made (or never, for small entries). */
export function chooseCoding (doc: CachedDocument, acceptEncoding: string | string[] | undefined): Encoding {
  if (doc.forms === undefined || acceptEncoding === undefined) return 'identity'
  return negotiate(acceptEncoding)
}

/** The body and ETag of one representation of `doc` (`coding` from {@link chooseCoding}). */
export function bodyOf (doc: CachedDocument, coding: Encoding): Buffer {
  return coding === 'identity' ? doc.body : doc.forms![coding].body
}

export function etagOfRepresentation (doc: CachedDocument, coding: Encoding): string {
  return coding === 'identity' ? doc.etag : doc.forms![coding].etag
}

/** Entries of this size or more vary by Accept-Encoding. */
export function isNegotiable (doc: CachedDocument): boolean {
  return doc.body.length >= MIN_COMPRESS_BYTES
}

/** What the hit path needs to get an entry's forms made and to count what it sends. */
export class Representations {
  readonly #bytes: HotChildTable | undefined
  readonly #identityBytes: HotChildTable | undefined
  readonly #flagList: Map<string, { inc: (n?: number) => void }> = new Map()
  readonly #metrics: Metrics | undefined

  constructor (readonly cache: DocumentCache, readonly compressor: Compressor, metrics?: Metrics) {
    this.#metrics = metrics
    if (metrics !== undefined) {
      this.#bytes = new HotChildTable(metrics.hot.responseBytes, (route, encoding) => ({ route, encoding }))
      this.#identityBytes = new HotChildTable(metrics.hot.compressedIdentityBytes, (route, encoding) => ({ route, encoding }))
    }
  }

  /**
   * The representation for `request`; asks for the entry's forms when the client would take one
   * and they are not made (the compressor makes each entry version once).
   */
  choose (request: FastifyRequest, doc: CachedDocument): Encoding {
    const ae = request.headers['accept-encoding']
    if (doc.forms === undefined && ae !== undefined && isNegotiable(doc) && negotiate(ae) !== 'identity') this.#ask(request, doc)
    return chooseCoding(doc, ae)
  }

  #ask (request: FastifyRequest, doc: CachedDocument): void {
    const gw = request.gateway
    if (gw?.envKey === undefined || this.compressor.pending(doc)) return
    const envKey = gw.envKey
    const upstream = upstreamOf(gw)
    const url = this.cache.documentUrl(upstreamUrlOf(gw), upstream)
    this.compressor.request(doc, doc.body, (bodies) => { this.cache.attachForms(envKey, url, upstream, doc, bodies) })
  }

  /** Counts an answer's body bytes by route and coding (and the identity size of a compressed one). */
  sent (route: string, coding: Encoding, doc: CachedDocument): void {
    if (this.#bytes === undefined) return
    this.#bytes.get(route, coding, '').inc(bodyOf(doc, coding).length)
    if (coding !== 'identity') this.#identityBytes!.get(route, coding, '').inc(doc.body.length)
  }

  /** Counts a flag-list answer by its X-Cache-Status. */
  flagList (status: string): void {
    const m = this.#metrics
    if (m === undefined) return
    let c = this.#flagList.get(status)
    if (c === undefined) { c = m.hot.flagListCache.child({ status }); this.#flagList.set(status, c) }
    c.inc()
  }
}
