/**
 * Which content-coding an answer from memory is sent in, from the client's `Accept-Encoding`
 * (RFC 9110 12.5.3), with the `negotiator` package (what express and `@fastify/compress` use): q
 * values, `q=0` (refused), `identity;q=0` and `*` are its job. On equal q we prefer br, then gzip,
 * then identity (smaller first).
 *
 * When nothing the client accepts is available (`identity;q=0` and the compressed forms are not
 * made yet, or `Accept-Encoding: zstd` alone) the answer is identity: RFC 9110 lets a server
 * disregard the header rather than answer 406, and an SDK with no document is worse off than one
 * with an uncompressed one. NGINX and express's `compression` do the same.
 *
 * The hit path asks once per request, so the answer for a header value is remembered (clients of
 * one SDK send the same few spellings); the memo is bounded, since the header is client input.
 */
import Negotiator from 'negotiator'

export type Encoding = 'br' | 'gzip' | 'identity'

const AVAILABLE: readonly Encoding[] = ['br', 'gzip', 'identity']
const PREFERRED = { preferred: AVAILABLE }
/** header values remembered; longer values are negotiated every time (no real client sends one) */
const MEMO_MAX_ENTRIES = 256
const MEMO_MAX_HEADER = 128
const memo = new Map<string, Encoding>()

/** `encodings(available, { preferred })` exists in negotiator 1.x; @types/negotiator lags behind. */
type EncodingsWithPreference = (available: readonly string[], options: { preferred: readonly string[] }) => string[]

function decide (header: string): Encoding {
  const n = new Negotiator({ headers: { 'accept-encoding': header } })
  const best = (n.encodings as unknown as EncodingsWithPreference)(AVAILABLE, PREFERRED)[0]
  return best === 'br' || best === 'gzip' ? best : 'identity'
}

/**
 * The coding to send when br, gzip and identity are all available. No header means identity: RFC
 * 9110 allows any coding then, but a client that sent none may not decode one (what every
 * server does).
 */
export function negotiate (acceptEncoding: string | string[] | undefined): Encoding {
  if (acceptEncoding === undefined) return 'identity'
  const header = Array.isArray(acceptEncoding) ? acceptEncoding.join(', ') : acceptEncoding
  if (header.length > MEMO_MAX_HEADER) return decide(header)
  let e = memo.get(header)
  if (e === undefined) {
    e = decide(header)
    if (memo.size >= MEMO_MAX_ENTRIES) memo.clear()
    memo.set(header, e)
  }
  return e
}

/** Does the client accept a compressed form at all (worth making one for it)? */
export function wantsCompressed (acceptEncoding: string | string[] | undefined): boolean {
  return negotiate(acceptEncoding) !== 'identity'
}
