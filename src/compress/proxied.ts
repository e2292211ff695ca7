/**
 * Proxied answers compressed on the fly, for routes with a `compress` rule
 * (`compress: { minSize, types }`): br or gzip as the client's Accept-Encoding allows
 * (negotiate.ts), at the levels measured for cached answers (levels.ts).
 *
 * Only answers that gain: a 2xx other than 204/206 to a GET, POST or the like (never HEAD, which
 * has no body), of one of `types`, at least `minSize` bytes (an answer of unknown length is
 * compressed: it is streamed, and usually large). Never an answer the upstream already encoded
 * (any Content-Encoding), nor one marked `Cache-Control: no-transform` (RFC 9111 5.2.2.6).
 *
 * A small answer (read whole by the proxy, up to 64 KB) is compressed with node:zlib's
 * asynchronous call, on libuv's threadpool; a streamed one through a zlib stream, chunk by chunk,
 * with the upstream's backpressure. @fastify/compress was not used: it wraps `reply.send` for the
 * whole scope and decides from the reply's headers, where our proxy writes the answer it already
 * holds (buffered or streamed) with the headers it built; this is that decision for one answer.
 *
 * The answer's headers change as a compressing cache's must: Content-Encoding set,
 * Content-Length dropped (or set to the compressed size), `Accept-Encoding` added to Vary, and a
 * strong ETag made weak (the bytes are no longer the upstream's; RFC 9110 8.8.1, as express's
 * `compression` does).
 */
import { pipeline, type Readable } from 'node:stream'
import { promisify } from 'node:util'
import zlib from 'node:zlib'
import { brotliOptions, gzipOptions } from './levels.js'
import { negotiate, type Encoding } from './negotiate.js'

const brotliCompress = promisify(zlib.brotliCompress)
const gzipCompress = promisify(zlib.gzip)

export interface CompressRule { readonly minSize: number; readonly types: readonly string[] }

type Headers = Record<string, string | string[] | undefined>

/** Does `contentType` (its media type, without parameters) fall in one of `types` (`type/sub` or `type/*`)? */
export function typeMatches (contentType: string | string[] | undefined, types: readonly string[]): boolean {
  if (typeof contentType !== 'string') return false
  const semi = contentType.indexOf(';')
  const media = (semi === -1 ? contentType : contentType.slice(0, semi)).trim().toLowerCase()
  const slash = media.indexOf('/')
  if (slash <= 0) return false
  for (const t of types) {
    if (t === media) return true
    if (t.endsWith('/*') && media.length > slash && t.slice(0, -1) === media.slice(0, slash + 1)) return true
  }
  return false
}

function isEligible (rule: CompressRule, method: string, statusCode: number, headers: Headers, size: number | undefined): boolean {
  if (method === 'HEAD' || statusCode < 200 || statusCode >= 300 || statusCode === 204 || statusCode === 206) return false
  const ce = headers['content-encoding']
  if (ce !== undefined && !(typeof ce === 'string' && ce.trim().toLowerCase() === 'identity')) return false
  const cc = headers['cache-control']
  if (cc !== undefined && /(?:^|,)\s*no-transform\s*(?:,|$)/i.test(Array.isArray(cc) ? cc.join(',') : cc)) return false
  if (size !== undefined && size < rule.minSize) return false
  return typeMatches(headers['content-type'], rule.types)
}

function addVary (headers: Headers): void {
  const v = headers.vary
  const current = v === undefined ? '' : Array.isArray(v) ? v.join(', ') : v
  if (current.trim() === '*') return
  if (current.split(',').some((x) => x.trim().toLowerCase() === 'accept-encoding')) return
  headers.vary = current.trim() === '' ? 'Accept-Encoding' : `${current}, Accept-Encoding`
}

function weakenEtag (headers: Headers): void {
  const e = headers.etag
  if (typeof e === 'string' && e.startsWith('"')) headers.etag = `W/${e}`
}

export interface Compressed<B> { readonly body: B; readonly encoding: Encoding; readonly identityBytes: number | undefined }

/**
 * The answer to send for `body`: compressed (headers changed in place) when the rule, the answer
 * and the client allow, else `body` as it was (with `Vary: Accept-Encoding` when only the client's
 * header said no, so a shared cache downstream does not hand it to a client that asked for gzip).
 */
export async function compressProxied (rule: CompressRule, acceptEncoding: string | string[] | undefined, method: string,
  statusCode: number, headers: Headers, body: Buffer | Readable): Promise<Compressed<Buffer | Readable>> {
  const declared = headers['content-length']
  const size = Buffer.isBuffer(body) ? body.length : typeof declared === 'string' ? Number(declared) : undefined
  if (!isEligible(rule, method, statusCode, headers, size)) return { body, encoding: 'identity', identityBytes: undefined }
  addVary(headers)
  const encoding = negotiate(acceptEncoding)
  if (encoding === 'identity') return { body, encoding, identityBytes: undefined }
  weakenEtag(headers)
  headers['content-encoding'] = encoding
  delete headers['content-length']
  if (Buffer.isBuffer(body)) {
    const out = encoding === 'br' ? await brotliCompress(body, brotliOptions(body.length)) : await gzipCompress(body, gzipOptions)
    headers['content-length'] = String(out.length)
    return { body: out, encoding, identityBytes: body.length }
  }
  const z = encoding === 'br' ? zlib.createBrotliCompress(brotliOptions(size ?? 0)) : zlib.createGzip(gzipOptions)
  // the client going away destroys `z`, which pipeline passes on to the upstream body (aborting
  // the upstream request); an upstream error ends the client's answer early, as without compression
  return { body: pipeline(body, z, () => {}), encoding, identityBytes: size }
}
