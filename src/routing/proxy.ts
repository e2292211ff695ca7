/**
 * The last step: forward through @fastify/reply-from on our own undici Agent. Everything the
 * handler needs per request comes from `request.gateway`, so the callbacks below are static
 * functions, not closures allocated per request.
 */
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { IncomingHttpHeaders } from 'node:http'
import { addForwardingHeaders, removeHopByHop } from './headers.js'
import { toGatewayError } from './upstreams.js'

export const UPSTREAM_HEADER = 'x-flaggate-upstream'

export function elapsedMs (since: bigint): number {
  return Number(process.hrtime.bigint() - since) / 1e6
}

// reply-from retries GETs on 503 unless told otherwise (and `maxRetriesOn503: 0` means 10):
// a shedding Core must not get the same request up to eleven times. The one retry kept is
// NGINX's proxy_next_upstream for idempotent requests: a keep-alive socket that Core closed
// just as we reused it fails before Core saw anything, so a GET or HEAD is sent once more on a
// fresh connection (a delay of 0 would mean "no retry" to reply-from, hence 1 ms).
const SOCKET_CLOSED = new Set(['UND_ERR_SOCKET', 'ECONNRESET', 'EPIPE'])
function retryOnce ({ err, req, attempt }: { err?: { code?: string } | null; req: { method: string }; attempt: number }): number | null {
  if (attempt > 0 || err === undefined || err === null) return null
  if (req.method !== 'GET' && req.method !== 'HEAD') return null
  return SOCKET_CLOSED.has(err.code ?? '') ? 1 : null
}

function rewriteRequestHeaders (request: FastifyRequest, headers: IncomingHttpHeaders): IncomingHttpHeaders {
  removeHopByHop(headers as Record<string, unknown>)
  if (!Buffer.isBuffer(request.body) || request.body.length === 0) {
    // no body goes upstream (e.g. a GET that carried one): a stale length would make Core wait
    delete headers['content-length']
  }
  addForwardingHeaders(request, headers)
  return headers
}

function rewriteHeaders (headers: Record<string, unknown>, request?: FastifyRequest): Record<string, unknown> {
  if (request !== undefined) headers[UPSTREAM_HEADER] = request.gateway.upstream
  return headers
}

/** The query that goes upstream is routing's (routing/match.ts), never re-read from the raw URL. */
function upstreamQuery (_search: string, _reqUrl: string, request: FastifyRequest): string {
  const url = request.gateway.upstreamUrl
  const q = url.indexOf('?')
  return q === -1 ? '' : url.slice(q + 1)
}

interface RawResponse { statusCode: number; stream: NodeJS.ReadableStream }

function onResponse (request: FastifyRequest, reply: FastifyReply, res: unknown): void {
  request.gateway.upstreamMs = elapsedMs(request.gateway.upstreamStartedAt ?? request.gateway.startedAt)
  reply.send((res as RawResponse).stream)
}

function onError (reply: FastifyReply, { error }: { error: unknown }): void {
  const gw = reply.request.gateway
  gw.upstreamMs = elapsedMs(gw.upstreamStartedAt ?? gw.startedAt)
  reply.send(toGatewayError(error))
}

export async function proxyHandler (request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> {
  const gw = request.gateway
  const target = gw.policy.targets[gw.upstream]!
  const q = gw.upstreamUrl.indexOf('?')
  // no query in `source` (a query parsed into a URL would get re-encoded): `upstreamQuery` hands
  // reply-from the query of `upstreamUrl`, byte for byte, which on a cache route is `page_id` only
  const source = target.origin + (q === -1 ? gw.upstreamUrl : gw.upstreamUrl.slice(0, q))
  const body = Buffer.isBuffer(request.body) && request.body.length > 0 ? request.body : undefined
  gw.upstreamStartedAt = process.hrtime.bigint()
  return reply.from(source, {
    timeout: target.timeoutMs,
    retryDelay: retryOnce as never,
    // raw bytes with their own content type: reply-from would re-encode a parsed JSON body
    ...(body !== undefined ? { body, contentType: request.headers['content-type'] ?? 'application/octet-stream' } : {}),
    queryString: upstreamQuery as never,
    rewriteRequestHeaders: rewriteRequestHeaders as never,
    rewriteHeaders: rewriteHeaders as never,
    onResponse: onResponse as never,
    onError: onError as never
  })
}
