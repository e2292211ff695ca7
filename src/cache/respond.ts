/**
 * How the cache answers from memory: a stored document's headers (computed once per entry),
 * `Cache-Control` for the time it stays fresh, 304 to a client that already holds it, and the
 * {@link TurnWriter} that writes a turn's answers together. Shared by the three cache steps
 * (conditional, fresh-hit, lookup).
 *
 * `X-Flaggate-Upstream` is the upstream's name when this request waited on an upstream answer
 * (MISS), and `none` when the gateway answered from memory (HIT, STALE, UPDATING, 304).
 */
import type { FastifyReply, FastifyRequest } from 'fastify'
import { responseHeaders } from '../upstream/index.js'
import type { CachedDocument } from './document.js'
import { clientHasCurrent } from './validators.js'
import { UPSTREAM_HEADER } from '../contracts/wire.js'
import { upstreamUrlOf, type RequestGateway } from '../contracts/request.js'
import { bodyOf, etagOfRepresentation, isNegotiable, type Representations } from './representations.js'
import type { Encoding } from '../compress/negotiate.js'
import { isFlagListPath, isIdentitiesPath } from '../shared/flag-list.js'

export const CACHE_STATUS_HEADER = 'x-cache-status'

/** Headers of a passed-through upstream answer that describe that one transfer, not the resource. */
export const TRANSFER_HEADERS = ['content-length', 'date'] as const

export function singleHeader (v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v.join(', ') : v
}

// ---------------------------------------------------------------------------------------------
// HIT side: a stored document → its response. Entries are immutable, so what a response needs
// from an entry is computed once per entry (on its first answer) and reused; per request only
// Cache-Control's max-age, X-Cache-Status and X-Flaggate-Upstream change.
// ---------------------------------------------------------------------------------------------

interface EntryHeaders {
  /** the representation's headers (content-type, X-Flagsmith-Document-Updated-At, Link) and validators */
  readonly ok: Readonly<Record<string, string>>
  /** a 304 carries the validators and caching headers, not the representation's own */
  readonly notModified: Readonly<Record<string, string>>
  /** `ok` and the body's Content-Length as [name, value, ...], for writeHead */
  readonly okFlat: readonly string[]
  /** `notModified` as [name, value, ...] */
  readonly notModifiedFlat: readonly string[]
}

/** per entry, its identity, br and gzip header sets (the latter two once its forms exist) */
const entryHeaders = new WeakMap<CachedDocument, Partial<Record<Encoding, EntryHeaders>>>()

function flat (headers: Readonly<Record<string, string>>): string[] {
  const out: string[] = []
  for (const k in headers) out.push(k, headers[k]!)
  return out
}

function headersOf (doc: CachedDocument, coding: Encoding): EntryHeaders {
  let all = entryHeaders.get(doc)
  if (all === undefined) { all = {}; entryHeaders.set(doc, all) }
  let h = all[coding]
  if (h === undefined) {
    // the one response-header policy (upstream/headers.ts); X-Flaggate-Upstream is per request
    const base = responseHeaders(doc.headers, 'none') as Record<string, string>
    delete base[UPSTREAM_HEADER]
    // each representation has its own strong ETag; Last-Modified is the entry's
    const validators = { etag: etagOfRepresentation(doc, coding), 'last-modified': doc.lastModified, vary: isNegotiable(doc) ? 'X-Environment-Key, Accept-Encoding' : 'X-Environment-Key' }
    const notModified: Record<string, string> = { ...base, ...validators }
    delete notModified['content-type']
    delete notModified.link
    const ok: Record<string, string> = { ...base, ...validators }
    if (coding !== 'identity') ok['content-encoding'] = coding
    h = Object.freeze({
      ok: Object.freeze(ok),
      notModified: Object.freeze(notModified),
      okFlat: Object.freeze([...flat(ok), 'content-length', String(bodyOf(doc, coding).length)]),
      notModifiedFlat: Object.freeze(flat(notModified))
    })
    all[coding] = h
  }
  return h
}

// Core says no-store; on this route we say how long the copy is good for, and only for this
// client: the document belongs to its key. One string per whole second of freshness.
const cacheControls: string[] = []
function cacheControl (freshForMs: number): string {
  const s = freshForMs > 0 ? Math.floor(freshForMs / 1000) : 0
  if (s >= 86_400) return `private, max-age=${s}`
  return cacheControls[s] ??= `private, max-age=${s}`
}

/**
 * 200 with the stored bytes, or 304 when the client's validators say it has them: one writeHead
 * with the headers other hooks set (RateLimit), the entry's precomputed ones and the three that
 * change per request, then the stored Buffer. Written on the Node response, not through
 * reply.send: fastify would copy the entry's headers into the reply one by one (lower-casing
 * each name), then walk them again for writeHead, on every hit. onResponse hooks run as for any
 * answer (fastify listens for the response's end).
 */
export function sendDocument (reps: Representations, request: FastifyRequest, reply: FastifyReply, doc: CachedDocument, status: string, freshForMs: number, upstream: string): void {
  // the representation this client accepts (identity until the entry's forms are made)
  const coding = reps.choose(request, doc)
  const h = headersOf(doc, coding)
  const inm = request.headers['if-none-match']
  const ims = request.headers['if-modified-since']
  const current = (inm !== undefined || ims !== undefined) && clientHasCurrent(doc, singleHeader(inm), ims, etagOfRepresentation(doc, coding))
  // The access log reads X-Flaggate-Upstream from the reply, and logs `none` when it finds none:
  // only an answer fetched for this request (MISS) needs it set there.
  if (upstream !== 'none') void reply.header(UPSTREAM_HEADER, upstream)
  const out: string[] = []
  const set = reply.getHeaders()
  for (const k in set) {
    const v = set[k]
    if (Array.isArray(v)) { for (const x of v) out.push(k, x) } else if (v !== undefined) out.push(k, String(v))
  }
  const entry = current ? h.notModifiedFlat : h.okFlat
  for (let i = 0; i < entry.length; i++) out.push(entry[i]!)
  out.push('cache-control', cacheControl(freshForMs), CACHE_STATUS_HEADER, status)
  if (upstream === 'none') out.push(UPSTREAM_HEADER, upstream)
  const res = reply.raw
  // writeHead first: should it refuse a header, nothing is sent and fastify answers the error
  res.writeHead(current ? 304 : 200, out)
  reply.hijack()
  const gw = request.gateway
  if (gw?.route !== undefined && isFlagListPath(pathOf(upstreamUrlOf(gw)))) reps.flagList(status)
  if (current) { res.end(); return }
  res.end(bodyOf(doc, coding))
  if (gw?.route !== undefined) reps.sent(gw.route.name, coding, doc)
}

function pathOf (url: string): string {
  const q = url.indexOf('?')
  return q === -1 ? url : url.slice(0, q)
}

/**
 * Answers from memory are written in the check phase of the event-loop turn that read their
 * requests (one setImmediate per turn, not per answer): the turn's requests are parsed first and
 * their answers written after, as a Redis-backed limiter's round trip already arranges for every
 * request. Written from inside the parser's callback instead, each answer also pays for Node
 * finishing the request stream around it (`_dump`, `endReadable`, `resume` on the next tick).
 * Measured on a HIT at 50 connections: 0.76× the CPU per request, and no later answer at one
 * connection (p50 70–95 µs before, 81–88 µs after; bench/results.md, "Fourth round"). The deferral
 * stays within the turn: nothing waits on a timer, or on other clients' work beyond that turn's.
 */
export class TurnWriter {
  constructor (private readonly reps: Representations) {}
  #requests: FastifyRequest[] = []
  #replies: FastifyReply[] = []
  #docs: CachedDocument[] = []
  #fresh: number[] = []
  readonly #flush = (): void => {
    const requests = this.#requests
    const replies = this.#replies
    const docs = this.#docs
    const fresh = this.#fresh
    this.#requests = []
    this.#replies = []
    this.#docs = []
    this.#fresh = []
    for (let i = 0; i < requests.length; i++) {
      try {
        sendDocument(this.reps, requests[i]!, replies[i]!, docs[i]!, 'HIT', fresh[i]!, 'none')
      } catch (err) {
        // what fastify does with an error thrown in a hook; without this a throw here would end the process
        if (!replies[i]!.sent) void replies[i]!.send(err)
      }
    }
  }

  hit (request: FastifyRequest, reply: FastifyReply, doc: CachedDocument, freshForMs: number): void {
    if (this.#requests.push(request) === 1) setImmediate(this.#flush)
    this.#replies.push(reply)
    this.#docs.push(doc)
    this.#fresh.push(freshForMs)
  }
}

export function isCacheable (request: FastifyRequest): RequestGateway | undefined {
  const gw = request.gateway
  if (gw?.route?.cache === undefined) return undefined
  if (request.method !== 'GET' && request.method !== 'HEAD') return undefined
  // Core writes on identities/ (validation refuses a cache rule that names it): a broader cached
  // prefix never caches it either (shared/flag-list.ts)
  if (isIdentitiesPath(pathOf(upstreamUrlOf(gw)))) return undefined
  return gw
}
