/**
 * Who may use the admin API, decided from the request's headers alone (pure, tested without HTTP).
 *
 * A token-less admin listener is safe only because nothing but this machine can reach it, and a
 * browser on this machine can: a page from anywhere can POST to http://127.0.0.1:8081 (CSRF), and
 * a DNS name rebound to 127.0.0.1 makes such a page same-origin with the listener (DNS rebinding).
 * Browsers always send the Host they aimed at and an Origin on cross-origin and state-changing
 * requests, so without a token the listener accepts only a loopback Host and, when there is one,
 * a loopback Origin. A bearer token is never attached by a browser on its own, so
 * with a token only the Fetch-metadata rule applies: a browser that says `Sec-Fetch-Site:
 * cross-site` on a state-changing request is refused in both modes.
 */
import type { IncomingHttpHeaders } from 'node:http'

/** RFC 7235: the scheme is case-insensitive; any run of spaces or tabs may follow it. */
const BEARER = /^bearer[ \t]+([^ \t]+)[ \t]*$/i

export function bearerToken (authorization: string | undefined): string | undefined {
  if (authorization === undefined) return undefined
  return BEARER.exec(authorization)?.[1]
}

const SAFE_METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS'])
/** what a Host header or an origin's host may hold: a name, an IPv4 or a bracketed IPv6, a port */
const HOST_CHARS = /^[A-Za-z0-9.\-:[\]]+$/
const LOOPBACK_V4 = /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/

/** A host as the WHATWG URL parser reads it (so `127.1` and `[0::1]` are what a browser would reach). */
function isLoopbackHostname (hostname: string): boolean {
  const h = hostname.toLowerCase().replace(/\.$/, '')
  return h === 'localhost' || h === '[::1]' || LOOPBACK_V4.test(h)
}

/** `localhost`, `127.0.0.0/8` or `[::1]`, with any port. */
export function isLoopbackHost (host: string | undefined): boolean {
  // only these characters: `evil.example@127.0.0.1` must not parse as a loopback URL
  if (host === undefined || !HOST_CHARS.test(host)) return false
  let url: URL
  try { url = new URL(`http://${host}/`) } catch { return false }
  return isLoopbackHostname(url.hostname)
}

/** An `Origin` header naming an http(s) page served from a loopback host. `null` is not one. */
export function isLoopbackOrigin (origin: string): boolean {
  const m = /^(https?):\/\/([^/]+)$/i.exec(origin)
  return m !== null && isLoopbackHost(m[2])
}

/** Why this request may not use the admin API, or undefined when it may. */
export function adminRefusal (method: string, headers: IncomingHttpHeaders, tokenless: boolean): string | undefined {
  if (!SAFE_METHODS.has(method) && headers['sec-fetch-site'] === 'cross-site') {
    return 'A cross-site browser request may not change anything through the admin API.'
  }
  if (!tokenless) return undefined
  if (!isLoopbackHost(headers.host)) {
    return 'Without admin.token the admin API answers only requests addressed to a loopback host (localhost, 127.0.0.1, [::1]).'
  }
  const origin = headers.origin
  if (origin !== undefined && !isLoopbackOrigin(origin)) {
    return 'Without admin.token the admin API refuses requests from web pages that are not served from this machine.'
  }
  return undefined
}

/** `X-Flaggate-Reason`, as the audit log records it: bounded, one line. */
export function reasonOf (headers: IncomingHttpHeaders): string | undefined {
  const r = headers['x-flaggate-reason']
  if (typeof r !== 'string' || r === '') return undefined
  // eslint-disable-next-line no-control-regex
  return r.replace(/[\u0000-\u001f\u007f]/g, ' ').slice(0, 200)
}
