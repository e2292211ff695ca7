/**
 * Cross-field rules the schema cannot express (references between sections), and the compiled,
 * frozen form every request reads: sets instead of arrays, precomputed ids and header values.
 */
import type { CacheRuleData, Dimension, LimitData, PolicyData, RouteData, UpstreamData } from './schema.js'
import { IpSet } from '../shared/ip.js'
import { identitiesCacheProblem } from '../shared/flag-list.js'
import { edgeRouteProblems } from './edge-served.js'

export interface CompiledLimit {
  /** stable id of this limit: `<route>` for a route's only limit, `<route>.<i>` otherwise (`.o` for overrides) */
  readonly id: string
  readonly by: readonly Dimension[]
  readonly ratePerSec: number
  readonly rateText: string
  readonly burst: number
  readonly shadow: boolean
  /** `RateLimit-Policy` item for this limit, built once: `"flags";q=100;w=5` */
  readonly policyHeader: string
}

/** what `compress.types` is when a route does not say: every SDK answer is JSON */
export const DEFAULT_COMPRESS_TYPES: readonly string[] = ['application/json']

export interface CompiledRoute {
  readonly name: string
  readonly methods: ReadonlySet<string> | null
  readonly path: string | undefined
  /** `path` (or `pathPrefix`) without its trailing slash, matched as if it had one (SDK routes) */
  readonly pathNoSlash: string | undefined
  readonly pathPrefix: string | undefined
  readonly upstream: string
  readonly limits: readonly CompiledLimit[]
  readonly cache: CacheRuleData | undefined
  /** on-the-fly compression of proxied answers (src/compress/proxied.ts) */
  readonly compress: { readonly minSize: number; readonly types: readonly string[] } | undefined
  readonly edge: { readonly percent: number; readonly keys: ReadonlySet<string>; readonly whenOpen: boolean } | undefined
}

export interface CompiledOverride { readonly routes: ReadonlySet<string> | null; readonly limits: readonly CompiledLimit[] }

export interface UpstreamTarget {
  readonly name: string
  readonly origin: string
  /** `host[:port]`, the Host header of requests the gateway makes itself */
  readonly host: string
  /** path of the upstream URL without its trailing slash, prepended to every request path */
  readonly basePath: string
  readonly timeoutMs: number
}

export interface Policy {
  readonly version: string
  readonly loadedAt: string
  readonly data: PolicyData
  readonly routes: readonly CompiledRoute[]
  readonly upstreams: Readonly<Record<string, UpstreamData>>
  readonly targets: Readonly<Record<string, UpstreamTarget>>
  readonly trustedProxies: IpSet
  /** environment key → override; most keys have none, so a Map lookup is the whole cost */
  readonly overrides: ReadonlyMap<string, readonly CompiledOverride[]>
}

export interface CompileProblem { path: Array<string | number>; message: string }
export type CompileResult = { ok: true; policy: Policy } | { ok: false; problems: CompileProblem[] }

/** Hosts where an admin listener may go without a token: only this machine can reach it. */
/**
 * SDK answers that must never be cached: identities/ (an identity's flags; its GET writes traits)
 * and the deprecated flags/<id> (which creates an identity). A route reaching them cannot carry a
 * cache rule.
 */
function uncacheableSdkPath (p: string, prefix: boolean): string | undefined {
  if (p.startsWith('/api/v1/identities/') || (prefix && '/api/v1/identities/'.startsWith(p) && p !== '/')) {
    return 'identities/ answers are per identity and their requests write traits: they can never be cached'
  }
  if (p.startsWith('/api/v1/flags/') && (prefix || p !== '/api/v1/flags/')) {
    return 'only flags/ itself can be cached: the deprecated flags/<id> creates an identity (use path: /api/v1/flags/)'
  }
  return undefined
}

export const LOOPBACK: ReadonlySet<string> = new Set(['127.0.0.1', '::1', 'localhost'])

function compileLimit (l: LimitData, id: string, headerName: string): CompiledLimit {
  // The IETF draft expresses a policy as quota q per window w; a bucket of `burst` tokens that
  // refills at `rate` is exactly q=burst over w=burst/rate seconds.
  const w = Math.max(1, Math.ceil(l.burst / l.rate.perSecond))
  return Object.freeze({
    id,
    by: Object.freeze([...l.by]),
    ratePerSec: l.rate.perSecond,
    rateText: l.rate.text,
    burst: l.burst,
    shadow: l.shadow,
    policyHeader: `"${headerName}";q=${l.burst};w=${w}`
  })
}

function compileLimits (limits: readonly LimitData[] | undefined, routeName: string, suffix: string): CompiledLimit[] {
  if (limits === undefined) return []
  return limits.map((l, i) => {
    const id = limits.length === 1 ? `${routeName}${suffix}` : `${routeName}${suffix}.${i}`
    return compileLimit(l, id, id)
  })
}

/** `/api/v1/traits/` → `/api/v1/traits`; undefined when there is no slash to add (or for `/`). */
function noSlash (p: string | undefined): string | undefined {
  return p !== undefined && p.length > 1 && p.endsWith('/') ? p.slice(0, -1) : undefined
}

function compileRoute (r: RouteData): CompiledRoute {
  const path = r.match.path
  return Object.freeze({
    name: r.name,
    // HEAD is GET without a body (RFC 9110 9.3.2) and costs Core the same work: a GET route
    // takes its HEADs too, or they would slip past its limits and its cache
    methods: r.match.methods === undefined ? null : new Set(r.match.methods.includes('GET') ? [...r.match.methods, 'HEAD'] : r.match.methods),
    path,
    pathNoSlash: noSlash(path ?? r.match.pathPrefix),
    pathPrefix: r.match.pathPrefix,
    upstream: r.upstream,
    limits: Object.freeze(compileLimits(r.limit, r.name, '')),
    cache: r.cache === undefined ? undefined : Object.freeze({ ...r.cache }),
    compress: r.compress === undefined ? undefined : Object.freeze({ minSize: r.compress.minSize, types: Object.freeze([...(r.compress.types ?? DEFAULT_COMPRESS_TYPES)]) }),
    edge: r.edge === undefined ? undefined : Object.freeze({ percent: r.edge.percent, keys: new Set(r.edge.keys), whenOpen: r.edge.whenOpen })
  })
}

export function compilePolicy (data: PolicyData, version: string, now = new Date()): CompileResult {
  const problems: CompileProblem[] = []
  const upstreamNames = new Set(Object.keys(data.upstreams))
  const routeNames = new Set<string>()

  data.routes.forEach((r, i) => {
    if (routeNames.has(r.name)) problems.push({ path: ['routes', i, 'name'], message: `duplicate route name '${r.name}'` })
    routeNames.add(r.name)
    if (!upstreamNames.has(r.upstream)) {
      problems.push({ path: ['routes', i, 'upstream'], message: `unknown upstream '${r.upstream}' (defined: ${[...upstreamNames].join(', ')})` })
    }
    if (r.edge !== undefined && (r.edge.percent > 0 || r.edge.keys.length > 0 || r.edge.whenOpen) && !upstreamNames.has('edge')) {
      problems.push({ path: ['routes', i, 'edge'], message: "edge routing needs an upstream named 'edge'" })
    }
    // edge routing: only routes whose paths and methods the Edge API serves (src/edge/served.ts)
    for (const message of edgeRouteProblems(r)) problems.push({ path: ['routes', i, 'edge'], message })
    if (r.cache !== undefined && r.match.methods !== undefined && r.match.methods.some((m) => m !== 'GET' && m !== 'HEAD')) {
      problems.push({ path: ['routes', i, 'cache'], message: 'only GET and HEAD routes can be cached' })
    }
    if (r.cache !== undefined) {
      const problem = identitiesCacheProblem(r.match) ?? uncacheableSdkPath(r.match.path ?? r.match.pathPrefix!, r.match.pathPrefix !== undefined)
      if (problem !== undefined) problems.push({ path: ['routes', i, 'cache'], message: problem })
    }
  })
  data.overrides.forEach((o, i) => o.routes?.forEach((name, j) => {
    if (!routeNames.has(name)) problems.push({ path: ['overrides', i, 'routes', j], message: `unknown route '${name}'` })
  }))
  data.blocklist.forEach((b, i) => b.routes?.forEach((name, j) => {
    if (!routeNames.has(name)) problems.push({ path: ['blocklist', i, 'routes', j], message: `unknown route '${name}'` })
  }))
  for (const name of Object.keys(data.breakers)) {
    if (!upstreamNames.has(name)) problems.push({ path: ['breakers', name], message: `unknown upstream '${name}'` })
  }
  if (data.admin.token === undefined && !LOOPBACK.has(data.admin.listen.host)) {
    problems.push({ path: ['admin', 'listen'], message: `admin API on non-loopback ${data.admin.listen.host} needs admin.token (set FLAGGATE_ADMIN_TOKEN)` })
  }
  if (data.admin.listen.port !== 0 && data.admin.listen.port === data.server.listen.port) {
    problems.push({ path: ['admin', 'listen'], message: 'admin listener must not share the public port' })
  }
  const localUpstream = data.localEvaluation?.upstream
  if (localUpstream !== undefined && !upstreamNames.has(localUpstream)) {
    problems.push({ path: ['localEvaluation', 'upstream'], message: `unknown upstream '${localUpstream}' (defined: ${[...upstreamNames].join(', ')})` })
  }
  if (problems.length > 0) return { ok: false, problems }

  const overrides = new Map<string, CompiledOverride[]>()
  data.overrides.forEach((o, i) => {
    const list = overrides.get(o.key) ?? []
    list.push(Object.freeze({
      routes: o.routes === undefined ? null : new Set(o.routes),
      limits: Object.freeze(compileLimits(o.limit, `override-${i}`, ''))
    }))
    overrides.set(o.key, list)
  })

  return {
    ok: true,
    policy: Object.freeze({
      version,
      loadedAt: now.toISOString(),
      data,
      routes: Object.freeze(data.routes.map(compileRoute)),
      upstreams: data.upstreams,
      targets: Object.freeze(Object.fromEntries(Object.entries(data.upstreams).map(([name, u]) => {
        const url = new URL(u.url)
        return [name, Object.freeze({ name, origin: url.origin, host: url.host, basePath: url.pathname.replace(/\/+$/, ''), timeoutMs: u.timeout })]
      }))),
      trustedProxies: new IpSet(data.server.trustedProxies),
      overrides
    })
  }
}

export interface RouteMatch { route: CompiledRoute; /** path to send upstream (slash added when normalised) */ upstreamPath: string }

/** First match wins; `path` is the URL path without the query. */
export function matchRoute (policy: Policy, method: string, path: string): RouteMatch | undefined {
  for (const route of policy.routes) {
    if (route.methods !== null && !route.methods.has(method)) continue
    if (route.path !== undefined) {
      if (path === route.path) return { route, upstreamPath: path }
      if (path === route.pathNoSlash) return { route, upstreamPath: route.path }
    } else if (route.pathPrefix !== undefined) {
      if (path.startsWith(route.pathPrefix)) return { route, upstreamPath: path }
      if (path === route.pathNoSlash) return { route, upstreamPath: route.pathPrefix }
    }
  }
  return undefined
}

/** The limits that apply to `key` on `route`: an override's when one names this key (and route). */
export function effectiveLimits (policy: Policy, route: CompiledRoute, key: string | undefined): readonly CompiledLimit[] {
  if (key !== undefined && policy.overrides.size > 0) {
    const list = policy.overrides.get(key)
    if (list !== undefined) {
      for (const o of list) if (o.routes === null || o.routes.has(route.name)) return o.limits
    }
  }
  return route.limits
}
