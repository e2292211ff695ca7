/**
 * One access-log line per response (SPEC section 7). What a client sends that names a secret or a
 * person is redacted (first characters and a short hash, shared/redact.ts) before it is written:
 * the `X-Environment-Key`, an environment key in a dashboard API path
 * (`/api/v1/environments/<key>/…`), and user identifiers (`identifier=` in any query, and the
 * legacy SDK paths `/api/v1/identities/<identifier>/` and `/api/v1/flags/<identifier>`).
 * Redactions are memoised in byte-bounded memos, since their inputs are client-chosen.
 */
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { Logger } from 'pino'
import { redactKey } from './redact.js'
import { BoundedMemo } from './memo.js'

// Core's dashboard API names environments by their key: /api/v1/environments/<api_key>/...
const ENV_IN_PATH = /(\/environments\/)([^/?#]+)/
// legacy SDK routes carry the identity in the path (FLAGSMITH.md 1.2)
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

export function createAccessLog (logger: Logger) {
  return function onResponse (request: FastifyRequest, reply: FastifyReply, done: () => void): void {
    const gw = request.gateway
    if (gw === null || gw === undefined) { done(); return }
    const raw = request.raw.url ?? ''
    const q = raw.indexOf('?')
    // the canonical path, as routed and sent upstream; the raw one when it was refused (400)
    const path = gw.path ?? (q === -1 ? raw : raw.slice(0, q))
    logger.info({
      reqId: request.id,
      route: gw.route?.name ?? 'none',
      method: request.method,
      url: loggableUrl(path, q === -1 ? '' : raw.slice(q)),
      status: reply.statusCode,
      upstream: reply.getHeader('x-flaggate-upstream') ?? 'none',
      decision: gw.decision,
      cache: gw.cacheStatus,
      limitedBy: gw.limitedBy,
      upstreamMs: gw.upstreamMs === undefined ? undefined : Math.round(gw.upstreamMs * 10) / 10,
      totalMs: Math.round(Number(process.hrtime.bigint() - gw.startedAt) / 1e5) / 10,
      ip: gw.clientIp,
      key: gw.envKey === undefined ? undefined : redactions.keys.get(gw.envKey)
    }, 'request')
    done()
  }
}
