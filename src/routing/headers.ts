/**
 * What the gateway adds to and removes from requests on their way upstream (SPEC section 3).
 * Shared by the proxy (through reply-from) and by the gateway's own fetches (cache fills).
 */
import type { FastifyRequest } from 'fastify'
import type { IncomingHttpHeaders } from 'node:http'

/** RFC 9110 section 7.6.1 hop-by-hop headers, plus the proxy-only ones. */
const HOP_BY_HOP = ['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'proxy-authorization', 'proxy-authenticate'] as const

export const VIA = '1.1 flaggate'

/**
 * Adds X-Forwarded-For/-Proto/-Host and Via. The client's own X-Forwarded-For is kept and appended
 * to only when its peer is a trusted proxy; from anyone else it is replaced, so an untrusted
 * client cannot make Core (which reads the first entry) believe a forged address.
 */
export function addForwardingHeaders (request: FastifyRequest, headers: Record<string, string | string[] | undefined>): void {
  const gw = request.gateway
  const peer = request.socket.remoteAddress ?? ''
  const trusted = gw.policy.trustedProxies.size > 0 && gw.policy.trustedProxies.has(peer)
  const xff = request.headers['x-forwarded-for']
  headers['x-forwarded-for'] = trusted && typeof xff === 'string' && xff !== '' ? `${xff}, ${stripMapped(peer)}` : stripMapped(peer)
  const proto = request.headers['x-forwarded-proto']
  headers['x-forwarded-proto'] = trusted && typeof proto === 'string' && proto !== '' ? proto : 'http'
  const host = request.headers['x-forwarded-host']
  headers['x-forwarded-host'] = trusted && typeof host === 'string' && host !== '' ? host : (request.headers.host ?? '')
  const via = request.headers.via
  headers.via = typeof via === 'string' && via !== '' ? `${via}, ${VIA}` : VIA
}

function stripMapped (ip: string): string {
  return ip.startsWith('::ffff:') ? ip.slice(7) : ip
}

/** A fresh header set for a request the gateway makes itself on behalf of a client. */
export function upstreamRequestHeaders (request: FastifyRequest, upstreamHost: string): Record<string, string> {
  const src: IncomingHttpHeaders = request.headers
  const out: Record<string, string | string[] | undefined> = {}
  for (const name in src) out[name] = src[name]
  removeHopByHop(out)
  delete out['content-length']
  out.host = upstreamHost
  addForwardingHeaders(request, out)
  const flat: Record<string, string> = {}
  for (const name in out) {
    const v = out[name]
    if (v !== undefined) flat[name] = Array.isArray(v) ? v.join(', ') : v
  }
  return flat
}

export function removeHopByHop (headers: Record<string, unknown>): void {
  const listed = headers.connection
  if (typeof listed === 'string') for (const n of listed.split(',')) delete headers[n.trim().toLowerCase()]
  for (const n of HOP_BY_HOP) delete headers[n]
}
