/**
 * The one canonical form of a request target (the path that routes match is
 * exactly the path sent upstream). Pure: no fastify, no policy. Routing, the proxy, the cache and
 * `flaggate explain` all use what {@link canonicalTarget} returns, and nothing else re-reads the
 * raw target.
 *
 * Core is Django behind gunicorn, which percent-decodes the whole path before routing and does not
 * merge slashes; `new URL()` (in reply-from) resolves dot segments, `%2e` included, and turns `\`
 * into `/`. So every spelling that any of them reads differently from the plain form is either
 * rewritten to the plain form here (and sent upstream in that form) or refused with 400, as Envoy
 * does with `normalize_path`, `path_with_escaped_slashes_action: REJECT_REQUEST`:
 *
 * - `%XX` of an unreserved character, `:`, `@` or a sub-delim is decoded (`%66lags` → `flags`):
 *   those are legal as they are in a path and Django decodes them anyway;
 * - every other byte that is not legal as it is (`%`, `?`, `#`, `[`, `]`, space, `"`, `<`, `>`,
 *   `^`, `` ` ``, `{`, `|`, `}`, non-ASCII) is percent-encoded, hex in upper case;
 * - dot segments (`.`, `..`, also spelled `%2e`) are resolved (RFC 3986 5.2.4); `..` above the root
 *   is refused;
 * - refused: encoded slashes (`%2F`) and backslashes (raw or `%5C`), empty segments (`//`), control
 *   characters and NUL (raw or encoded), invalid percent-encodings, bytes that are not UTF-8
 *   (overlong forms included), fragments, and any target that is not origin-form (`*`,
 *   `http://host/path`, `host:port`).
 *
 * Case is kept: Core's URLs are case-sensitive, so `/API/v1/flags/` is another path (the default
 * route's), and Django answers it 404.
 *
 * Written by hand: no maintained library implements this exact policy (Envoy's is C++; the WHATWG
 * URL parser is the ambiguity we defend against, not a canonicaliser).
 */

/** A refusal: the target is answered 400 FLAGGATE_BAD_REQUEST with this message. */
export interface PathRejection { readonly rejected: true; readonly message: string }

export interface CanonicalTarget {
  readonly rejected: false
  /** the canonical path: what routes match and what goes upstream */
  readonly path: string
  /** the query as received, with its leading `?`, or '' */
  readonly query: string
}

function rejection (message: string): PathRejection { return Object.freeze({ rejected: true as const, message }) }

/** The reasons, allocated once: a flood of bad targets costs no allocations for them. */
export const REJECT = Object.freeze({
  notOriginForm: rejection('The request target must be a path starting with / (no absolute URL, authority or *).'),
  fragment: rejection('The request target must not contain a fragment (#).'),
  control: rejection('The request path contains a space or a control character (raw or encoded).'),
  backslash: rejection('The request path contains a backslash (raw or %5C).'),
  encodedSlash: rejection('The request path contains an encoded slash (%2F).'),
  badPercent: rejection('The request path has an invalid percent-encoding.'),
  badUtf8: rejection('The request path is not valid UTF-8.'),
  emptySegment: rejection('The request path contains an empty segment (//).'),
  aboveRoot: rejection('The request path climbs above the root (..).')
})

// Byte classes of RFC 3986 for one path segment.
const PLAIN = 1 // unreserved, sub-delims, ':' and '@': legal as they are, decoded when encoded
const KEEP_ENCODED = 2 // printable ASCII that must stay (or become) percent-encoded
const CLASS = new Uint8Array(128)
for (let c = 0; c < 128; c++) {
  const ch = String.fromCharCode(c)
  if (/[A-Za-z0-9\-._~!$&'()*+,;=:@]/.test(ch)) CLASS[c] = PLAIN
  else if (c > 0x20 && c < 0x7f) CLASS[c] = KEEP_ENCODED
}
const HEX = '0123456789ABCDEF'
const utf8 = new TextDecoder('utf-8', { fatal: true })

function hexValue (c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30
  if (c >= 0x41 && c <= 0x46) return c - 0x37
  if (c >= 0x61 && c <= 0x66) return c - 0x57
  return -1
}

/**
 * Splits and canonicalises a raw request target (`request.raw.url`). Returns the canonical path
 * and the query as received, or the reason to answer 400.
 */
export function canonicalTarget (target: string): CanonicalTarget | PathRejection {
  if (target.charCodeAt(0) !== 0x2f) return REJECT.notOriginForm
  if (target.includes('#')) return REJECT.fragment
  const q = target.indexOf('?')
  const raw = q === -1 ? target : target.slice(0, q)
  const path = canonicalPath(raw)
  if (typeof path !== 'string') return path
  return { rejected: false, path, query: q === -1 ? '' : target.slice(q) }
}

/** The canonical form of a raw path (no query), or the reason to refuse it. */
export function canonicalPath (raw: string): string | PathRejection {
  if (raw.charCodeAt(0) !== 0x2f) return REJECT.notOriginForm
  // Fast path, the SDK's own paths: plain characters and single slashes, no segment starting with
  // a dot. Returned as is, no allocation.
  let plain = true
  for (let i = 0; i < raw.length; i++) {
    const c = raw.charCodeAt(i)
    if (c === 0x2f) {
      const next = raw.charCodeAt(i + 1)
      if (next === 0x2f || next === 0x2e) { plain = false; break }
    } else if (c >= 128 || CLASS[c] !== PLAIN) { plain = false; break }
  }
  if (plain) return raw
  return slowPath(raw)
}

function slowPath (raw: string): string | PathRejection {
  // 1. Bytes: decode what is plain, encode what must be encoded, refuse what is ambiguous.
  let out = ''
  let highBytes = false
  for (let i = 0; i < raw.length; i++) {
    const c = raw.charCodeAt(i)
    if (c === 0x25) {
      const hi = hexValue(raw.charCodeAt(i + 1))
      const lo = hexValue(raw.charCodeAt(i + 2))
      if (hi < 0 || lo < 0) return REJECT.badPercent
      const b = hi * 16 + lo
      i += 2
      if (b === 0x2f) return REJECT.encodedSlash
      if (b === 0x5c) return REJECT.backslash
      if (b < 0x20 || b === 0x7f) return REJECT.control
      if (b < 128 && CLASS[b] === PLAIN) { out += String.fromCharCode(b); continue }
      if (b >= 128) highBytes = true
      out += '%' + HEX[hi]! + HEX[lo]!
    } else if (c === 0x2f) {
      out += '/'
    } else if (c === 0x5c) {
      return REJECT.backslash
    } else if (c <= 0x20 || c === 0x7f) {
      return REJECT.control
    } else if (c < 128 && CLASS[c] === PLAIN) {
      out += raw[i]
    } else if (c < 256) {
      // KEEP_ENCODED ASCII, or a raw byte ≥ 0x80 (Node reads the request line as latin1)
      if (c >= 128) highBytes = true
      out += '%' + HEX[c >> 4]! + HEX[c & 15]!
    } else {
      // not a byte: cannot come off the wire (callers pass the request line as latin1)
      return REJECT.badUtf8
    }
  }
  if (highBytes && !isUtf8(out)) return REJECT.badUtf8

  // 2. Segments: refuse `//`, resolve `.` and `..` (RFC 3986 5.2.4).
  const segments = out.split('/')
  const kept: string[] = []
  const last = segments.length - 1
  for (let i = 1; i <= last; i++) {
    const s = segments[i]!
    if (s === '.' || s === '..') {
      if (s === '..') { if (kept.length === 0) return REJECT.aboveRoot; kept.pop() }
      // a dot segment at the end leaves a directory: `/a/b/..` → `/a/`
      if (i === last) kept.push('')
      continue
    }
    if (s === '' && i !== last) return REJECT.emptySegment
    kept.push(s)
  }
  return '/' + kept.join('/')
}

/** Are the percent-encoded bytes of this (already canonical) path UTF-8? Overlong forms are not. */
function isUtf8 (encoded: string): boolean {
  const bytes: number[] = []
  for (let i = 0; i < encoded.length; i++) {
    const c = encoded.charCodeAt(i)
    if (c === 0x25) { bytes.push(parseInt(encoded.slice(i + 1, i + 3), 16)); i += 2 } else bytes.push(c)
  }
  try { utf8.decode(Uint8Array.from(bytes)); return true } catch { return false }
}
