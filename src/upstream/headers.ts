/**
 * The one header policy, both directions, for the proxy and the cache alike:
 *
 * - hop-by-hop headers (RFC 9110 7.6.1) and the headers a `Connection` header names are removed
 *   both ways, except that a client's `Connection` can never remove a header the gateway keys on
 *   (X-Environment-Key, Host, any `header:<Name>` limit dimension): what the limiter and the cache
 *   saw is what Core sees;
 * - forwarding headers are built from the resolved client address only: X-Forwarded-For is the
 *   chain the trusted proxies vouch for (routing's `forwardedFor`), X-Real-IP is the client IP,
 *   and the other client-IP headers (Forwarded, True-Client-IP, CF-Connecting-IP, …) are always
 *   dropped: a load balancer appends to X-Forwarded-For but passes those through as the client
 *   wrote them, so even from a trusted peer they are the client's word. Their underscore
 *   spellings (`True_Client_IP`, `X_Forwarded_For`) go too: WSGI servers such as Django's map
 *   `-` and `_` to the same META name;
 * - nothing is added to a request that the client did not send (no Content-Type on a bare POST),
 *   except the gateway's own: forwarding headers, `X-Request-Id` (the client's, or the id the
 *   gateway gave the request: Core's logs and the access log name the same request) and, with
 *   tracing on, `traceparent` naming the gateway's span (contracts/request.ts `traceHeaders`);
 * - every answer names the upstream that gave it in X-Flaggate-Upstream.
 */
import type { FastifyRequest } from 'fastify'
import type { IncomingHttpHeaders } from 'node:http'
import type { Policy, UpstreamTarget } from '../policy/compile.js'
import type { RequestGateway } from '../contracts/request.js'
import { UPSTREAM_HEADER } from '../contracts/wire.js'

export { UPSTREAM_HEADER }
export const VIA = '1.1 flaggate'

export type HeaderSet = Record<string, string | string[]>

const HOP_BY_HOP: ReadonlySet<string> = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'proxy-authorization', 'proxy-authenticate'])

/** Headers that name the client's address: never passed on (the gateway sends X-Forwarded-For and X-Real-IP). */
const CLIENT_IP_HEADERS: ReadonlySet<string> = new Set(['forwarded', 'x-real-ip', 'true-client-ip', 'x-client-ip', 'cf-connecting-ip', 'fastly-client-ip', 'x-cluster-client-ip'])

/**
 * What the gateway sets itself; a client's value never passes. `Expect: 100-continue` was
 * answered by the gateway's own HTTP server (and undici refuses to send it).
 */
const SET_BY_GATEWAY: ReadonlySet<string> = new Set(['host', 'content-length', 'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'via', 'x-real-ip', 'expect'])

/**
 * What a cache fill asks for, whoever started it: the fill's answer is every client's, so the
 * client's own Accept (406 for `application/xml`, Django REST framework's HTML page for
 * `text/html`), Accept-Language, cookies and the like never ride it (attack 11, docs/security.md).
 */
const FILL_ACCEPT = 'application/json'

/**
 * A Flagsmith SDK's User-Agent (`flagsmith-python-sdk/3.8.0`, `flagsmith-go-sdk/4.0.1`): passed on
 * by a fill so Core's usage accounting keeps its SDK label (Core records SDK usage by it). Any
 * other User-Agent is one client's word (Django's DISALLOWED_USER_AGENTS or a firewall in front of
 * Core could refuse it, and the fleet would get that refusal) and is not sent.
 */
const SDK_USER_AGENT = /^flagsmith-[a-z0-9-]{1,32}\/[0-9A-Za-z.+-]{1,32}$/

const keyedOn = new WeakMap<Policy, ReadonlySet<string>>()

/** Headers the gateway keys on under this policy; a `Connection` token never removes them. */
export function keyedHeaders (policy: Policy): ReadonlySet<string> {
  let set = keyedOn.get(policy)
  if (set !== undefined) return set
  const names = new Set(['x-environment-key', 'host'])
  const add = (by: readonly string[]): void => { for (const d of by) if (d.startsWith('header:')) names.add(d.slice(7)) }
  for (const r of policy.routes) for (const l of r.limits) add(l.by)
  for (const list of policy.overrides.values()) for (const o of list) for (const l of o.limits) add(l.by)
  keyedOn.set(policy, set = names)
  return set
}

function connectionTokens (value: string | string[] | undefined): string[] | undefined {
  if (value === undefined) return undefined
  const text = Array.isArray(value) ? value.join(',') : value
  const out: string[] = []
  for (const t of text.split(',')) { const n = t.trim().toLowerCase(); if (n !== '') out.push(n) }
  return out
}

export function peerIsTrusted (request: FastifyRequest): boolean {
  const trusted = request.gateway.policy.trustedProxies
  return trusted.size > 0 && trusted.has(request.socket.remoteAddress ?? '')
}

function single (v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v
}

/**
 * X-Forwarded-*, X-Real-IP and Via, from the resolved client address and the trusted peer only.
 * A shared `fill` carries none of the client's own words: no Host of its choosing as
 * X-Forwarded-Host (Core with USE_X_FORWARDED_HOST answers 400 to a host it does not allow) and no
 * Via chain of its making (8 KiB of it pushes the line past Core's server's limit: another 400).
 */
function addForwarding (out: HeaderSet, request: FastifyRequest, gw: RequestGateway, trusted: boolean, fill = false): void {
  const src = request.headers
  out['x-forwarded-for'] = gw.forwardedFor ?? gw.clientIp
  out['x-real-ip'] = gw.clientIp
  const proto = single(src['x-forwarded-proto'])
  out['x-forwarded-proto'] = trusted && proto !== undefined && proto !== '' ? proto : 'http'
  const host = single(src['x-forwarded-host'])
  if (trusted && host !== undefined && host !== '') out['x-forwarded-host'] = host
  else if (!fill) out['x-forwarded-host'] = src.host ?? ''
  if (fill) { out.via = VIA; return }
  const via = src.via
  const prior = Array.isArray(via) ? via.join(', ') : via
  out.via = prior !== undefined && prior !== '' ? `${prior}, ${VIA}` : VIA
}

/**
 * The headers of a proxied request: the client's, minus hop-by-hop and connection-listed ones,
 * minus what the gateway sets itself, plus forwarding headers. Content-Length is left to undici,
 * which sets it from the body it sends.
 */
export function proxyRequestHeaders (request: FastifyRequest, target: UpstreamTarget): HeaderSet {
  const gw = request.gateway
  const src = request.headers
  const trusted = peerIsTrusted(request)
  const out: HeaderSet = {}
  for (const name in src) {
    if (HOP_BY_HOP.has(name) || SET_BY_GATEWAY.has(name) || CLIENT_IP_HEADERS.has(name)) continue
    if (name.includes('_')) {
      const dashed = name.replace(/_/g, '-')
      if (SET_BY_GATEWAY.has(dashed) || CLIENT_IP_HEADERS.has(dashed) || dashed === 'x-environment-key') continue
    }
    const v = src[name]
    if (v !== undefined) out[name] = v
  }
  const listed = connectionTokens(src.connection)
  if (listed !== undefined) {
    const keyed = keyedHeaders(gw.policy)
    for (const n of listed) if (!keyed.has(n)) delete out[n]
  }
  out.host = target.host
  addForwarding(out, request, gw, trusted)
  addCorrelation(out, request, gw)
  return out
}

/** X-Request-Id always; the gateway's trace headers in place of the client's when tracing is on. */
function addCorrelation (out: HeaderSet, request: FastifyRequest, gw: RequestGateway): void {
  out['x-request-id'] = request.id
  const trace = gw.traceHeaders
  if (trace === undefined) return
  // a tracestate belongs to the traceparent it came with: the client's goes unless ours carries it on
  if (out.tracestate !== undefined && trace.tracestate === undefined) delete out.tracestate
  for (const name in trace) out[name] = trace[name]!
}

/**
 * The headers of a cache fill, a canonical request: `Accept: application/json`, the key from the
 * request's resolved state (never the raw header set, which the first client could have shaped),
 * forwarding headers from the resolved client address, a Flagsmith SDK's User-Agent; nothing else
 * of the client's (the cache adds its own Accept-Encoding and If-Modified-Since).
 */
export function fillRequestHeaders (request: FastifyRequest, target: UpstreamTarget): Record<string, string> {
  const gw = request.gateway
  const out: HeaderSet = { accept: FILL_ACCEPT }
  const ua = request.headers['user-agent']
  if (ua !== undefined && SDK_USER_AGENT.test(ua)) out['user-agent'] = ua
  if (gw.envKey !== undefined) out['x-environment-key'] = gw.envKey
  out.host = target.host
  addForwarding(out, request, gw, peerIsTrusted(request), true)
  // the request that started the fill names it: its id, and its span with tracing on
  addCorrelation(out, request, gw)
  return out as Record<string, string>
}

// The last answer's header names and values, by position: an upstream sends the same names in
// the same order answer after answer, and mostly the same values (Content-Type, Vary, Allow, a
// Content-Length). Comparing a few dozen bytes in JavaScript is cheaper than a call into C++ to
// decode each one again, and lower-casing each name (undici's own parser saves the names with a
// trie); bench/results.md, fifth round. Bounded: 32 positions, values up to 64 bytes.
const SLOTS = 32
const MAX_MEMO_BYTES = 64
const lastNames: Array<{ bytes: Buffer; text: string } | undefined> = new Array(SLOTS)
const lastValues: Array<{ bytes: Buffer; text: string } | undefined> = new Array(SLOTS)

function decode (memo: typeof lastNames, slot: number, raw: Buffer | string, lower: boolean): string {
  if (typeof raw === 'string') return lower ? raw.toLowerCase() : raw
  const last = slot < SLOTS ? memo[slot] : undefined
  if (last !== undefined && last.bytes.length === raw.length) {
    let same = true
    for (let j = 0; j < raw.length; j++) if (last.bytes[j] !== raw[j]) { same = false; break }
    if (same) return last.text
  }
  const text = lower ? raw.toString('latin1').toLowerCase() : raw.toString('latin1')
  if (slot < SLOTS && raw.length <= MAX_MEMO_BYTES) memo[slot] = { bytes: Buffer.from(raw), text }
  return text
}

/**
 * {@link responseHeaders} straight from undici's raw name/value pairs (the proxy's dispatch
 * handler), without building the intermediate object `dispatcher.request()` would: names in
 * lower case, a repeated header as an array (Set-Cookie), the same removals and additions.
 */
export function responseHeadersFromRaw (raw: ReadonlyArray<Buffer | string>, upstream: string): HeaderSet {
  // no prototype: a header named like one of Object's methods is just a header
  const out = Object.create(null) as HeaderSet
  let connection: string[] | undefined
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = decode(lastNames, i >> 1, raw[i]!, true)
    const value = decode(lastValues, i >> 1, raw[i + 1]!, false)
    if (name === 'connection') (connection ??= []).push(value)
    // __proto__: what request()'s parsed headers lost on their way to the client too
    if (HOP_BY_HOP.has(name) || name === '__proto__') continue
    const prior = out[name]
    if (prior === undefined) out[name] = value
    else if (typeof prior === 'string') out[name] = [prior, value]
    else prior.push(value)
  }
  const listed = connectionTokens(connection)
  if (listed !== undefined) for (const n of listed) delete out[n]
  out[UPSTREAM_HEADER] = upstream
  return out
}

/**
 * An upstream answer's headers as they go to the client: hop-by-hop and connection-listed ones
 * removed (an upstream's `Connection: close` must not close the client's connection), and
 * X-Flaggate-Upstream naming the upstream that answered.
 */
export function responseHeaders (src: IncomingHttpHeaders | Readonly<Record<string, string | string[] | undefined>>, upstream: string): HeaderSet {
  const out: HeaderSet = {}
  for (const name in src) {
    if (HOP_BY_HOP.has(name)) continue
    const v = src[name]
    if (v !== undefined) out[name] = v
  }
  const listed = connectionTokens(src.connection)
  if (listed !== undefined) for (const n of listed) delete out[n]
  out[UPSTREAM_HEADER] = upstream
  return out
}
