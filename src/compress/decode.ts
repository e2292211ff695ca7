/**
 * Decoding a compressed answer from the upstream before it is stored. The cache asks Core for
 * `gzip, br` (Core compresses when its operator turned gzip on) and keeps the decoded bytes, from
 * which it makes its own forms for every client (forms.ts).
 *
 * Decoding runs on libuv's threadpool (node:zlib's asynchronous calls) and stops at `maxBytes`
 * decoded bytes (`maxOutputLength`): a small body that inflates to gigabytes (a broken or hostile
 * upstream) costs at most the rule's `maxEntrySize`. A body that does not decode is an
 * {@link UndecodableBody}: an upstream failure (502, or the stale copy), never our 500.
 */
import { promisify } from 'node:util'
import zlib from 'node:zlib'

const gunzip = promisify(zlib.gunzip)
const brotliDecompress = promisify(zlib.brotliDecompress)
const inflate = promisify(zlib.inflate)
const inflateRaw = promisify(zlib.inflateRaw)

/** The upstream's body is not what its Content-Encoding says (or uses a coding we do not know). */
export class UndecodableBody extends Error {
  constructor (readonly coding: string, cause?: unknown) {
    super(`the upstream's answer does not decode as ${JSON.stringify(coding)}`, cause === undefined ? undefined : { cause })
  }
}

/** The decoded body would be larger than `maxBytes`. */
export class DecodedTooLarge extends Error {
  constructor (readonly maxBytes: number) { super(`the upstream's answer decodes to more than ${maxBytes} bytes`) }
}

function codingsOf (contentEncoding: string | string[] | undefined): string[] {
  if (contentEncoding === undefined) return []
  const raw = Array.isArray(contentEncoding) ? contentEncoding.join(',') : contentEncoding
  return raw.split(',').map((c) => c.trim().toLowerCase()).filter((c) => c !== '' && c !== 'identity')
}

/** Is the body encoded (a Content-Encoding other than identity)? */
export function isEncoded (contentEncoding: string | string[] | undefined): boolean {
  return codingsOf(contentEncoding).length > 0
}

async function decodeOne (coding: string, body: Buffer, opts: zlib.ZlibOptions & zlib.BrotliOptions): Promise<Buffer> {
  switch (coding) {
    case 'gzip': case 'x-gzip': return await gunzip(body, opts)
    case 'br': return await brotliDecompress(body, opts)
    case 'deflate':
      // "deflate" is the zlib format (RFC 9110 8.4.1.2), but some servers send raw deflate
      try { return await inflate(body, opts) } catch (err) {
        if (isTooLarge(err)) throw err
        return await inflateRaw(body, opts)
      }
    default: throw new UndecodableBody(coding)
  }
}

function isTooLarge (err: unknown): boolean {
  return (err as { code?: unknown }).code === 'ERR_BUFFER_TOO_LARGE' || err instanceof RangeError
}

/**
 * The identity bytes of `body` as encoded by `contentEncoding` (codings applied in the order
 * listed, so undone last first). Throws {@link UndecodableBody} or {@link DecodedTooLarge}.
 */
export async function decodeBody (body: Buffer, contentEncoding: string | string[] | undefined, maxBytes: number): Promise<Buffer> {
  const codings = codingsOf(contentEncoding)
  let out = body
  const opts = { maxOutputLength: Math.max(1, Math.min(maxBytes, 2 ** 31 - 1)) }
  for (let i = codings.length - 1; i >= 0; i--) {
    const coding = codings[i]!
    try {
      out = await decodeOne(coding, out, opts)
    } catch (err) {
      if (err instanceof UndecodableBody) throw err
      if (isTooLarge(err)) throw new DecodedTooLarge(maxBytes)
      throw new UndecodableBody(coding, err)
    }
  }
  return out
}
