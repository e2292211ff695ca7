/**
 * `flaggate explain`: which route, upstream (and, with edge routing, why), limits and cache rule
 * apply to one request, from the gateway's own decision functions. Durations and sizes are
 * printed in the policy's units (`30s`, `10mb`), as the operator wrote them.
 */
import { isIP } from 'node:net'
import { formatPolicyError } from '../policy/load.js'
import { loadPolicyFile } from '../policy/file.js'
import { resolveTarget } from '../policy/resolve.js'
import { describeLimits } from '../rate-limit/core.js'
import { clientIp } from '../routing/client.js'
import { decideEdge, describeEdge, EDGE_UPSTREAM } from '../edge/core.js'
import { isFlagListPath } from '../shared/flag-list.js'
import { MAX_PAGES_PER_KEY } from '../cache/pages.js'
import { formatDuration, formatSize } from '../shared/units.js'
import { DEFAULT_CONFIG } from './serve.js'

export const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']

export interface ExplainOptions { config?: string; key?: string; path: string; method: string; ip?: string }

/** `--ip`: an address, as a client's socket would carry it (not a CIDR). */
export function parseIpOption (value: string): string {
  if (isIP(value) === 0) throw new Error(`"${value}" is not an IP address (such as 203.0.113.7 or 2001:db8::1)`)
  return value
}

export function explain (opts: ExplainOptions): void {
  const file = opts.config ?? process.env.FLAGGATE_CONFIG ?? DEFAULT_CONFIG
  const result = loadPolicyFile(file, file, process.env)
  if (!result.ok) {
    for (const e of result.errors) process.stderr.write(formatPolicyError(e) + '\n')
    process.exitCode = 1
    return
  }
  const policy = result.policy
  const method = opts.method.toUpperCase()
  const url = opts.path
  // the same resolution as the gateway's (policy/resolve.ts); the operator's text as the wire
  // would carry it: UTF-8 bytes, read as latin1 by Node's HTTP parser
  const r = resolveTarget(policy, method, Buffer.from(url, 'utf8').toString('latin1'))
  const out: string[] = [`request:  ${method} ${url}${opts.key === undefined ? '' : `  key ${opts.key}`}${opts.ip === undefined ? '' : `  ip ${opts.ip}`}`]
  if (r.kind === 'bad') {
    out.push(`path:     refused: the gateway answers 400 FLAGGATE_BAD_REQUEST (${r.message})`)
  } else if (r.kind === 'none') {
    out.push(`path:     ${r.path} (canonical)`)
    out.push('route:    none: the gateway answers 404 FLAGGATE_NOT_FOUND')
  } else {
    const m = r
    // edge routing: the gateway's own decision function (src/edge/core.ts), breaker closed
    const edgeQuery = { routeUpstream: m.route.upstream, method, key: opts.key, upstreamOpen: false }
    const edge = m.route.edge !== undefined && policy.targets[EDGE_UPSTREAM] !== undefined ? m.route.edge : undefined
    const upstream = edge === undefined ? m.route.upstream : decideEdge(edge, edgeQuery).upstream
    const routeTarget = policy.targets[m.route.upstream]!
    const target = policy.targets[upstream]!
    const sent = m.upstreamUrl.slice(routeTarget.basePath.length)
    out.push(`path:     ${m.path} (canonical)`)
    out.push(`route:    ${m.route.name} (#${policy.routes.indexOf(m.route) + 1} of ${policy.routes.length}, first match wins)`)
    out.push(`upstream: ${upstream} → ${target.origin}${target.basePath}${sent}  (timeout ${formatDuration(target.timeoutMs)})`)
    const sentPath = sent.split('?')[0]!
    if (sentPath !== m.path) out.push(`          trailing slash added: ${m.path} → ${sentPath}`)
    if (edge !== undefined) for (const line of describeEdge(edge, edgeQuery)) out.push(`edge:     ${line}`)
    const ip = opts.ip === undefined ? '<client ip>' : clientIp(opts.ip, undefined, policy.trustedProxies)
    out.push(`client:   ${opts.key === undefined ? 'no key (limited by ip)' : `key ${opts.key}`}, ip ${ip}`)
    for (const line of describeLimits(policy, m.route, opts.key)) out.push(`limit:    ${line}`)
    const c = m.route.cache
    out.push(c === undefined
      ? 'cache:    none'
      : `cache:    ttl ${formatDuration(c.ttl)}, stale-while-revalidate ${formatDuration(c.staleWhileRevalidate)}, stale-if-error ${formatDuration(c.staleIfError)}, max entry ${formatSize(c.maxEntrySize)}; keyed by ${cacheKeyText(sentPath, upstream)}`)
  }
  process.stdout.write(out.join('\n') + '\n')
}

/** What a cached answer is keyed by (src/cache/key.ts, pages.ts): only Edge paginates documents. */
function cacheKeyText (path: string, upstream: string): string {
  if (isFlagListPath(path)) return 'environment key + path + feature'
  if (upstream === EDGE_UPSTREAM) return `environment key + path + page_id (at most ${MAX_PAGES_PER_KEY} pages per key)`
  return `environment key + path (page_id dropped: ${upstream} does not paginate)`
}
