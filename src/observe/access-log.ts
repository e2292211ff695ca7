/**
 * One access-log line per response. What a client sends that names a secret or a
 * person is redacted (first characters and a short hash, shared/redact.ts) before it is written:
 * the `X-Environment-Key`, an environment key in a dashboard API path
 * (`/api/v1/environments/<key>/…`), and user identifiers (`identifier=` in any query, and the
 * legacy SDK paths `/api/v1/identities/<identifier>/` and `/api/v1/flags/<identifier>`).
 * Redactions are memoised in byte-bounded memos, since their inputs are client-chosen.
 */
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { Logger } from 'pino'
import { redactKey } from '../shared/redact.js'
import { BoundedMemo } from '../shared/memo.js'
import { lineSinkOf } from '../shared/logger.js'
import { decisionOf } from '../contracts/request.js'

// Core's dashboard API names environments by their key: /api/v1/environments/<api_key>/...
const ENV_IN_PATH = /(\/environments\/)([^/?#]+)/
// legacy SDK routes carry the identity in the path (`/api/v1/identities/<identifier>/`, `/api/v1/flags/<identifier>/`)
const IDENTITY_IN_PATH = /^(\/api\/v1\/(?:identities|flags)\/)([^/?#]+)/

/** Memos of the redactions; exported so their bounds can be measured. */
export const redactions = {
  keys: new BoundedMemo((k) => redactKey(k)!, 4 * 1024 * 1024),
  identifiers: new BoundedMemo(redactIdentifier, 4 * 1024 * 1024)
}

function redactIdentifier (raw: string): string {
  // hashed as Core reads it (decoded), so on-call can match an identifier they are given
  let value = raw
  try { value = decodeURIComponent(raw.replace(/\+/g, ' ')) } catch {}
  return redactKey(value) ?? ''
}

/** `identifier=<value>` (the name also percent-encoded, as Django decodes it) → a redacted value. */
export function loggableQuery (query: string): string {
  // `%69%64entifier=` is `identifier=` to Core, hence any query with an escape is looked at
  if (!query.includes('dentifier') && !query.includes('%')) return query
  const parts = query.slice(1).split('&')
  let changed = false
  for (let i = 0; i < parts.length; i++) {
    const p = parts[i]!
    const eq = p.indexOf('=')
    if (eq === -1) continue
    let name = p.slice(0, eq)
    if (name.includes('%')) { try { name = decodeURIComponent(name) } catch {} }
    if (name !== 'identifier') continue
    parts[i] = p.slice(0, eq + 1) + redactions.identifiers.get(p.slice(eq + 1))
    changed = true
  }
  return changed ? '?' + parts.join('&') : query
}

/** The path (canonical when the target was accepted) and query, redacted for the log. */
export function loggableUrl (path: string, query: string): string {
  let p = path
  if (p.includes('/environments/')) p = p.replace(ENV_IN_PATH, (_m, prefix: string, key: string) => prefix + redactions.keys.get(key))
  if (p.startsWith('/api/v1/identities/') || p.startsWith('/api/v1/flags/')) {
    p = p.replace(IDENTITY_IN_PATH, (_m, prefix: string, id: string) => prefix + redactions.identifiers.get(id))
  }
  return query === '' ? p : p + loggableQuery(query)
}

// a string that JSON can carry as it is (pino's own test, tools.js asString)
const NEEDS_ESCAPE = /[\u0000-\u001f\u0022\u005c\ud800-\udfff]/
function str (s: string): string {
  return NEEDS_ESCAPE.test(s) ? JSON.stringify(s) : `"${s}"`
}

export interface AccessLogFields {
  reqId: string
  route: string
  method: string
  url: string
  status: number
  upstream: string
  decision: string
  cache: string | undefined
  limitedBy: string | undefined
  upstreamMs: number | undefined
  /** why the upstream failed (502/504 of ours) */
  error?: string | undefined
  totalMs: number
  ip: string
  key: string | undefined
}

/**
 * The access line exactly as pino writes `logger.info(fields, 'request')` with flaggate's base
 * (level, time, service, the fields in order, undefined ones left out, msg last), serialised
 * by hand: it is written on every request, and pino's generic walk over the object (serializers,
 * redaction paths, per-key escaping) was a tenth of a cache hit's CPU (bench/results.md).
 */
export function accessLine (f: AccessLogFields, time: number): string {
  let s = `{"level":30,"time":${time},"service":"flaggate","reqId":${str(f.reqId)},"route":${str(f.route)},"method":${str(f.method)},"url":${str(f.url)},"status":${f.status},"upstream":${str(f.upstream)},"decision":${str(f.decision)}`
  if (f.cache !== undefined) s += `,"cache":${str(f.cache)}`
  if (f.limitedBy !== undefined) s += `,"limitedBy":${str(f.limitedBy)}`
  if (f.upstreamMs !== undefined) s += `,"upstreamMs":${f.upstreamMs}`
  if (f.error !== undefined) s += `,"error":${str(f.error)}`
  s += `,"totalMs":${f.totalMs},"ip":${str(f.ip)}`
  if (f.key !== undefined) s += `,"key":${str(f.key)}`
  return s + ',"msg":"request"}\n'
}

export function createAccessLog (logger: Logger) {
  // the logger's own line sink when it has one (createLogger); pino's info() otherwise
  const sink = lineSinkOf(logger)
  return function onResponse (request: FastifyRequest, reply: FastifyReply, done: () => void): void {
    const gw = request.gateway
    if (gw === null || gw === undefined) { done(); return }
    const raw = request.raw.url ?? ''
    const q = raw.indexOf('?')
    // the canonical path, as routed and sent upstream; the raw one when it was refused (400)
    const path = gw.path ?? (q === -1 ? raw : raw.slice(0, q))
    const upstreamHeader = reply.getHeader('x-flaggate-upstream')
    const fields: AccessLogFields = {
      reqId: String(request.id),
      route: gw.route?.name ?? 'none',
      method: request.method,
      url: loggableUrl(path, q === -1 ? '' : raw.slice(q)),
      status: reply.statusCode,
      upstream: upstreamHeader === undefined ? 'none' : String(upstreamHeader),
      decision: decisionOf(gw),
      cache: gw.cacheStatus,
      limitedBy: gw.limitedBy,
      upstreamMs: gw.upstreamMs === undefined ? undefined : Math.round(gw.upstreamMs * 10) / 10,
      ...(gw.upstreamError !== undefined ? { error: gw.upstreamError } : {}),
      totalMs: Math.round(Number(process.hrtime.bigint() - gw.startedAt) / 1e5) / 10,
      ip: gw.clientIp,
      key: gw.envKey === undefined ? undefined : redactions.keys.get(gw.envKey)
    }
    if (sink === undefined) logger.info(fields, 'request')
    else if (logger.levelVal <= 30) sink(accessLine(fields, Date.now()))
    done()
  }
}
