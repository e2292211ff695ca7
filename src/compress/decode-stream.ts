/**
 * Decoding on the fly an answer handed to a client in a coding the client did not accept.
 *
 * The one case: a cache fill asks Core for `gzip, br` (the fill's request is canonical, never the
 * client's header). When Core's compressed body alone is larger than the route's `maxEntrySize`,
 * it is not cached and the still-streaming answer goes to the request that started the fill
 * (cache/lookup-step.ts). A client that did not accept Core's coding (`identity`, no header, a
 * `q=0`) must never get it: we decode it as it streams.
 *
 * Decoding rather than an error answer, because the answer is correct and already paid for, and an
 * SDK is better off with its document than with a 502 it would retry. The work is bounded:
 * - a zlib stream works chunk by chunk (16 KB out at a time) and only as fast as the client reads
 *   (the pipe's backpressure), so a large answer costs no memory beyond the streams' buffers;
 * - a decompression bomb from a broken Core (a small body that inflates to gigabytes) is cut when
 *   the decoded bytes pass {@link MAX_INFLATE_RATIO} times the encoded bytes read (plus
 *   {@link INFLATE_SLACK_BYTES}), Apache mod_deflate's `DeflateInflateRatioLimit` (200) idea.
 *   JSON documents compress 5-15 times (docs/compression.md).
 * A body that stops decoding half-way (truncated, corrupt, past the ratio) ends the client's
 * answer early (the headers are already sent): the client sees a cut answer, never a wrong one.
 * A coding we cannot decode (not gzip, br or deflate, or codings stacked) is known before any
 * byte is sent: the caller answers the upstream's 502 instead.
 */
import Negotiator from 'negotiator'
import { pipeline, Transform, type Readable } from 'node:stream'
import zlib from 'node:zlib'

/** decoded bytes may be at most this many times the encoded bytes read (plus the slack) */
export const MAX_INFLATE_RATIO = 200
/** what any answer may decode to regardless of the ratio (a tiny body's first chunk) */
export const INFLATE_SLACK_BYTES = 1024 * 1024

type Headers = Record<string, string | string[] | undefined>

/** The codings of a Content-Encoding, lower case, identity dropped. */
function codingsOf (contentEncoding: string | string[] | undefined): string[] {
  if (contentEncoding === undefined) return []
  const raw = Array.isArray(contentEncoding) ? contentEncoding.join(',') : contentEncoding
  return raw.split(',').map((c) => c.trim().toLowerCase()).filter((c) => c !== '' && c !== 'identity')
}

/**
 * Does the client's Accept-Encoding allow `contentEncoding` as sent? No header means identity
 * only (as negotiate.ts: a client that sent none may not decode anything).
 */
export function acceptsCoding (acceptEncoding: string | string[] | undefined, contentEncoding: string | string[] | undefined): boolean {
  const codings = codingsOf(contentEncoding)
  if (codings.length === 0) return true
  if (acceptEncoding === undefined) return false
  const header = Array.isArray(acceptEncoding) ? acceptEncoding.join(', ') : acceptEncoding
  const n = new Negotiator({ headers: { 'accept-encoding': header } })
  // x-gzip is gzip (RFC 9110 8.4.1.3)
  return codings.every((c) => n.encodings([c === 'x-gzip' ? 'gzip' : c]).length > 0)
}

function decoderFor (coding: string): zlib.Gunzip | zlib.BrotliDecompress | zlib.Inflate | undefined {
  switch (coding) {
    case 'gzip': case 'x-gzip': return zlib.createGunzip()
    case 'br': return zlib.createBrotliDecompress()
    case 'deflate': return zlib.createInflate()
    default: return undefined
  }
}

/**
 * `body` decoded as it streams, with the headers changed in place (Content-Encoding and
 * Content-Length dropped, `Accept-Encoding` added to Vary, a strong ETag made weak: the bytes are
 * no longer the upstream's); undefined, with `body` untouched, when the coding is not one we decode.
 */
export function decodeStreaming (body: Readable, headers: Headers): Readable | undefined {
  const codings = codingsOf(headers['content-encoding'])
  if (codings.length !== 1) return undefined
  const z = decoderFor(codings[0]!)
  if (z === undefined) return undefined
  delete headers['content-encoding']
  delete headers['content-length']
  const e = headers.etag
  if (typeof e === 'string' && e.startsWith('"')) headers.etag = `W/${e}`
  const v = headers.vary
  const vary = v === undefined ? '' : Array.isArray(v) ? v.join(', ') : v
  if (vary.trim() !== '*' && !vary.split(',').some((x) => x.trim().toLowerCase() === 'accept-encoding')) {
    headers.vary = vary.trim() === '' ? 'Accept-Encoding' : `${vary}, Accept-Encoding`
  }
  let out = 0
  const bounded = new Transform({
    transform (chunk: Buffer, _enc, cb) {
      out += chunk.length
      // z.bytesWritten: the encoded bytes the decoder has consumed so far
      if (out > MAX_INFLATE_RATIO * z.bytesWritten + INFLATE_SLACK_BYTES) { cb(new Error(`the upstream's answer inflates more than ${MAX_INFLATE_RATIO} times`)); return }
      cb(null, chunk)
    }
  })
  // the client going away destroys `bounded`, which pipeline passes on to the upstream body
  // (aborting the upstream request); a decoding error ends the client's answer early
  return pipeline(body, z, bounded, () => {})
}
