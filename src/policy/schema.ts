/**
 * The policy file's schema. Every field is parsed into the unit the code uses
 * (durations → ms, sizes → bytes, rates → tokens/s), so nothing downstream parses strings on the
 * hot path. Objects are strict: an unknown key is an error, never silently ignored.
 */
import { z } from 'zod'
import { parseCountPerWindow, parseDuration, parseListen, parsePercent, parseRate, parseSize } from '../shared/units.js'
import { isValidCidrOrIp } from '../shared/ip.js'
import { canonicalPath } from '../shared/path.js'
import { compileUserAgentPattern } from '../shared/ua-pattern.js'
import { placeholderProblem } from './placeholder.js'

/**
 * A string in one of the policy's units. The messages say what the value must look like, in the
 * file's own notation ("must look like `100/s` (a rate), not "fast""); load.ts puts the key's
 * name in front.
 */
function unit<T> (what: string, example: string, parse: (s: string) => T | undefined, check?: (v: T) => string | undefined) {
  return z.string({ error: (iss) => iss.input === undefined ? 'is required' : `must look like \`${example}\` (${what}), not ${typeof iss.input === 'number' ? `the number ${String(iss.input)}: write the unit too` : `a ${typeof iss.input}`}` })
    .transform((s, ctx) => {
      const v = parse(s)
      if (v === undefined) { ctx.addIssue({ code: 'custom', message: `must look like \`${example}\` (${what}), not "${s}"` }); return z.NEVER }
      const problem = check?.(v)
      if (problem !== undefined) { ctx.addIssue({ code: 'custom', message: problem }); return z.NEVER }
      return v
    })
}

/**
 * Bounds on numbers a policy can carry, so a policy that validates cannot fail at run time: a
 * duration becomes a Node timer (which fires at once past 2^31-1 ms, about 24.8 days) and a
 * `Retry-After`; a rate becomes the token bucket's interval (Infinity from 400 digits, 8.64e24 ms
 * from `1/99999999999999999999d`, would break the arithmetic and the headers).
 */
export const MAX_DURATION_MS = 24 * 86_400_000
export const MAX_RATE_PER_SECOND = 1_000_000
export const MIN_RATE_PER_SECOND = 1 / 86_400
export const MAX_BURST = 1_000_000_000
const positive = (v: number) => v > 0 ? undefined : 'must be greater than zero'
const boundedDuration = (v: number) => v <= MAX_DURATION_MS ? undefined : 'must be at most 24d (the longest timer Node.js can set)'
export const Duration = unit('a duration', '30s', parseDuration, boundedDuration)
export const PositiveDuration = unit('a duration', '30s', parseDuration, (v) => positive(v) ?? boundedDuration(v))
export const Size = unit('a size', '512kb', parseSize, (v) => positive(v) ?? (v <= 1024 ** 4 ? undefined : 'must be at most 1024gb'))
export const Rate = unit('a rate', '100/s', parseRate, (r) => {
  if (!(r.perSecond > 0)) return 'must be greater than zero'
  if (r.perSecond > MAX_RATE_PER_SECOND) return 'must be at most 1000000/s'
  if (r.perSecond < MIN_RATE_PER_SECOND) return 'must be at least 1/d (one per day)'
  return undefined
})
export const Percent = unit('a percentage', '50%', parsePercent, (p) => p <= 1 ? undefined : 'must be at most 100%')
export const Listen = unit('a listen address', '0.0.0.0:8080', parseListen)
export const CountPerWindow = unit('a count per window', '300 per 1m', parseCountPerWindow, (c) =>
  c.count > MAX_BURST ? 'count must be at most 1000000000' : c.windowMs > MAX_DURATION_MS ? 'window must be at most 24d' : undefined)

const HttpUrl = z.string().refine((s) => {
  try { const u = new URL(s); return u.protocol === 'http:' || u.protocol === 'https:' } catch { return false }
}, { message: 'must be an absolute http:// or https:// URL' })

const RedisUrl = z.string().refine((s) => /^rediss?:\/\//.test(s), { message: 'must start with redis:// or rediss://' })

const Cidr = z.string().refine(isValidCidrOrIp, { message: 'must be an IP address or CIDR block such as 10.0.0.0/8' })

// a User-Agent pattern runs against a header any client writes, on a linear-time engine (RE2)
const Regex = z.string().superRefine((s, ctx) => {
  const p = compileUserAgentPattern(s)
  if (typeof p === 'string') ctx.addIssue({ code: 'custom', message: p })
})

const Method = z.string().transform((s) => s.toUpperCase()).pipe(
  z.enum(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'], { error: 'must be an HTTP method (GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS)' }))

/** `environmentKey`, `ip` or `header:<Name>`; headers are lower-cased once here. */
const Dimension = z.string().transform((s, ctx) => {
  if (s === 'environmentKey' || s === 'ip') return s
  const m = /^header:([A-Za-z0-9!#$%&'*+.^_`|~-]+)$/.exec(s)
  if (m !== null) return `header:${m[1]!.toLowerCase()}` as const
  ctx.addIssue({ code: 'custom', message: `"${s}" is not a client dimension: use environmentKey, ip or header:<Name>` })
  return z.NEVER
})
export type Dimension = 'environmentKey' | 'ip' | `header:${string}`

export const LimitSchema = z.strictObject({
  by: z.union([Dimension, z.array(Dimension).min(1, 'needs at least one dimension')]).default('environmentKey')
    .transform((d) => (Array.isArray(d) ? d : [d]) as Dimension[]),
  rate: Rate,
  burst: z.number().int('must be a whole number').min(1, 'must be at least 1').max(MAX_BURST, 'must be at most 1000000000'),
  shadow: z.boolean().default(false)
})
/** A token bucket per client address, for the budgets that are not route limits (`unknownKeys`, the webhook's `limit`). */
export const BudgetSchema = z.strictObject({
  rate: Rate,
  burst: z.number().int('must be a whole number').min(1, 'must be at least 1').max(MAX_BURST, 'must be at most 1000000000')
})
export const DEFAULT_WEBHOOK_REPLAY_WINDOW_MS = 3_600_000
export const DEFAULT_WEBHOOK_COALESCE_MS = 250
export const MAX_WEBHOOK_COALESCE_MS = 5_000
// Flagsmith sends one webhook per changed feature state: a large version publish is a burst of
// them from one address, and Flagsmith never retries a 429, so the default lets a big burst in
export const DEFAULT_WEBHOOK_LIMIT = { rate: { perSecond: 20, text: '20/s' }, burst: 200 }
const Limits = z.union([LimitSchema, z.array(LimitSchema)]).transform((l) => Array.isArray(l) ? l : [l])

const CacheRuleSchema = z.strictObject({
  ttl: PositiveDuration,
  staleWhileRevalidate: Duration.default(0),
  staleIfError: Duration.default(0),
  maxEntrySize: Size.default(10 * 1024 * 1024)
})

/**
 * `compress` on a route: its proxied answers are compressed on the fly (br or gzip, as the client
 * accepts) when they are at least `minSize` and of one of `types` (`type/subtype` or `type/*`),
 * and never when the upstream already encoded them. Cached answers are always offered compressed
 * (above 1 KB) and need no key (docs/compression.md).
 */
const MediaRange = z.string().regex(/^[a-z0-9!#$&^_.+-]+\/(?:\*|[a-z0-9!#$&^_.+-]+)$/i, 'must be a media type such as application/json, or a range such as text/*')
  .transform((s) => s.toLowerCase())
const CompressSchema = z.strictObject({
  minSize: Size.default(1024),
  // no schema default: compile.ts applies DEFAULT_COMPRESS_TYPES
  types: z.array(MediaRange).min(1, 'needs at least one media type').optional()
})

const EdgeSchema = z.strictObject({
  percent: z.number().min(0, 'must be between 0 and 100').max(100, 'must be between 0 and 100').default(0),
  keys: z.array(z.string().min(1)).default([]),
  // send the route's reads to Edge while its upstream's breaker is open. Off unless asked: a
  // self-hosted Flagsmith has no Edge API, and its keys must never reach Flagsmith's hosted one
  whenOpen: z.boolean().default(false)
})

// requests are matched on their canonical path (routing/path.ts): a route path in any other
// spelling could never match
const RoutePath = z.string().startsWith('/', 'must start with /').refine((p) => canonicalPath(p) === p, {
  error: (iss) => {
    const c = canonicalPath(iss.input as string)
    return typeof c === 'string' ? `is not in canonical form: requests are matched on "${c}"` : `can never match: ${c.message}`
  }
})

const MatchSchema = z.strictObject({
  methods: z.array(Method).min(1).optional(),
  path: RoutePath.optional(),
  pathPrefix: RoutePath.optional()
}).refine((m) => (m.path === undefined) !== (m.pathPrefix === undefined), { message: 'needs exactly one of path or pathPrefix' })

const RouteSchema = z.strictObject({
  name: z.string().regex(/^[a-z0-9][a-z0-9_-]*$/, 'must be lower-case letters, digits, - or _'),
  match: MatchSchema,
  upstream: z.string(),
  limit: Limits.optional(),
  cache: CacheRuleSchema.optional(),
  compress: CompressSchema.optional(),
  edge: EdgeSchema.optional()
})

const UpstreamSchema = z.strictObject({
  url: HttpUrl,
  timeout: PositiveDuration.default(10_000),
  maxConnections: z.number().int().min(1).default(128),
  tls: z.strictObject({ rejectUnauthorized: z.boolean().default(true) }).optional()
})

const HostPort = z.string().regex(/^[^:\s]+:\d+$/, 'must be host:port')
const RedisSchema = z.strictObject({
  url: RedisUrl.optional(),
  sentinels: z.array(HostPort).min(1).optional(),
  sentinelName: z.string().optional(),
  cluster: z.array(HostPort).min(1).optional(),
  keyPrefix: z.string().default('flaggate:'),
  commandTimeout: PositiveDuration.default(50),
  password: z.string().optional()
}).refine((r) => [r.url, r.sentinels, r.cluster].filter((x) => x !== undefined).length === 1,
  { message: 'needs exactly one of url, sentinels or cluster' })
  .refine((r) => r.sentinels === undefined || r.sentinelName !== undefined, { message: 'sentinels needs sentinelName (the master group name)' })

const BlockSchema = z.strictObject({
  key: z.string().min(1).optional(),
  ip: Cidr.optional(),
  userAgent: Regex.optional(),
  routes: z.array(z.string()).optional(),
  reason: z.string().min(1, 'must say why'),
  publicReason: z.string().min(1).optional()
}).refine((b) => [b.key, b.ip, b.userAgent].filter((x) => x !== undefined).length === 1,
  { message: 'needs exactly one of key, ip or userAgent' })

const AdaptiveSchema = z.strictObject({
  min: z.number().int('must be a whole number').min(1, 'must be at least 1').default(3),
  max: z.number().int('must be a whole number').min(1, 'must be at least 1').optional(),
  buffer: Percent.default(0.25)
}).default({ min: 3, buffer: 0.25 }).refine((a) => a.max === undefined || a.max >= a.min, { message: 'max must be at least min' })

const BreakerSchema = z.strictObject({
  latency: z.strictObject({
    percentile: z.number().gt(0).lt(100).default(95),
    above: PositiveDuration,
    window: PositiveDuration.default(10_000),
    minRequests: z.number().int().min(1).default(20)
  }).optional(),
  errorRate: z.strictObject({
    above: Percent,
    window: PositiveDuration.default(10_000),
    minRequests: z.number().int().min(1).default(20)
  }).optional(),
  // a fixed bulkhead (64), or `auto` / `{ auto: { min, max, buffer } }`: the adaptive limit
  // (src/breaker/adaptive.ts); max defaults to the upstream's maxConnections
  maxInFlight: z.union([
    z.number().int('must be a whole number').min(1, 'must be at least 1'),
    z.literal('auto', { error: 'must be a whole number, `auto`, or { auto: { min, max, buffer } }' }).transform(() => ({ auto: AdaptiveSchema.parse({}) })),
    z.strictObject({ auto: AdaptiveSchema })
  ], { error: 'must be a whole number, `auto`, or { auto: { min, max, buffer } }' }).optional(),
  openFor: PositiveDuration.default(15_000),
  halfOpenRequests: z.number().int().min(1).default(5),
  // after closing, the concurrency limit (or the admitted share) ramps up over this long; 0s: at once
  recovery: Duration.default(10_000),
  probe: z.strictObject({ path: z.string().startsWith('/'), interval: PositiveDuration.default(5000) }).optional()
})

/**
 * Local evaluation (src/local/): the environments the gateway answers itself from their documents.
 * Checked for form only, never by asking Core: a key Core refuses shows at run time, in the log
 * and the status, and never stops a start.
 */
const ServerKey = z.string({ error: 'required: a server-side environment key' })
  .refine((k) => /^ser\.[A-Za-z0-9_-]+$/.test(k), { error: (iss) => iss.input === '' ? 'is empty (an unset variable?): needs a server-side key such as ser.abc123' : 'must be a server-side environment key (ser. followed by letters, digits, _ or -)' })
const LocalEvaluationSchema = z.strictObject({
  mode: z.enum(['fallback', 'always'], { error: 'must be fallback or always' }).default('fallback'),
  refresh: PositiveDuration.default(10_000),
  environments: z.array(z.strictObject({ serverKey: ServerKey })).min(1, 'needs at least one environment')
    .refine((envs) => new Set(envs.map((e) => e.serverKey)).size === envs.length, { message: 'lists a server key twice' }),
  // the upstream documents come from and writes go to; default: the one the route for
  // GET /api/v1/environment-document/ goes to
  upstream: z.string().optional(),
  // always mode: how long a request waits for an environment's first document
  firstDocumentTimeout: PositiveDuration.default(5000),
  // nothing lost, within bounds: identity writes kept while Core cannot take them, distinct
  // (environment, feature) analytics counters; beyond them each drop is counted
  maxQueuedWrites: z.number().int('must be a whole number').min(1, 'must be at least 1').default(10_000),
  maxQueuedBytes: Size.default(16 * 1024 * 1024),
  maxAnalyticsCounters: z.number().int('must be a whole number').min(1, 'must be at least 1').default(10_000),
  // what is kept survives a restart here (relative to the policy file's directory), unless Redis holds it
  stateFile: z.string().min(1).default('.flaggate/local-outbox.json')
})

/**
 * OpenTelemetry tracing (observe/tracing.ts): a span per proxied request, exported over OTLP/HTTP
 * to `<otlp>/v1/traces`. Absent: nothing is loaded and no request does any tracing work.
 */
const TracingSchema = z.strictObject({
  otlp: HttpUrl,
  // the share of traces recorded and exported, decided on the trace id (the same ratio gives the
  // same decision in every service that uses it); an unsampled request still gets a traceparent
  sampleRatio: z.number({ error: 'must be a number between 0 and 1' }).min(0, 'must be between 0 and 1').max(1, 'must be between 0 and 1').default(1)
})

/**
 * Bounds of the public listener. requestTimeout: the whole request (headers and body) must arrive
 * within it (NGINX: client_header_timeout + client_body_timeout, 60 s each between reads);
 * headersTimeout: the header block; keepAliveTimeout: an idle connection between requests (above
 * the 60 s idle timeout of common load balancers, as fastify's 72 s, so the balancer closes
 * first); maxConnections: open client connections, beyond which new ones are closed at once.
 */
const SERVER_DEFAULTS = {
  requestTimeout: 30_000,
  headersTimeout: 10_000,
  keepAliveTimeout: 72_000,
  maxConnections: 10_000,
  // open connections per client address (trustedProxies exempt): NGINX limit_conn, Traefik inFlightReq
  maxConnectionsPerClient: 1000,
  // an IPv6 client is its /64 when counted (shared/ip-prefix.ts)
  ipv6Prefix: 64,
  // request bodies being received at once, all clients together; beyond it, 503 (routing/body-budget.ts)
  bufferedBodies: 256 * 1024 * 1024
}

export const PolicySchema = z.strictObject({
  server: z.strictObject({
    listen: Listen.default({ host: '0.0.0.0', port: 8080 }),
    trustedProxies: z.array(Cidr).default([]),
    bodyLimit: Size.default(1024 * 1024),
    shutdownTimeout: Duration.default(10_000),
    // the public listener's bounds (app.ts applies them live)
    requestTimeout: PositiveDuration.default(SERVER_DEFAULTS.requestTimeout),
    headersTimeout: PositiveDuration.default(SERVER_DEFAULTS.headersTimeout),
    keepAliveTimeout: PositiveDuration.default(SERVER_DEFAULTS.keepAliveTimeout),
    maxConnections: z.number().int('must be a whole number').min(1, 'must be at least 1').default(SERVER_DEFAULTS.maxConnections),
    maxConnectionsPerClient: z.number().int('must be a whole number').min(1, 'must be at least 1').default(SERVER_DEFAULTS.maxConnectionsPerClient),
    ipv6Prefix: z.number().int('must be a whole number').min(1, 'must be between 1 and 128').max(128, 'must be between 1 and 128').default(SERVER_DEFAULTS.ipv6Prefix),
    bufferedBodies: Size.default(SERVER_DEFAULTS.bufferedBodies)
  }).refine((s) => s.headersTimeout <= s.requestTimeout, { message: 'headersTimeout must not be longer than requestTimeout', path: ['headersTimeout'] })
    .default({ listen: { host: '0.0.0.0', port: 8080 }, trustedProxies: [], bodyLimit: 1024 * 1024, shutdownTimeout: 10_000, ...SERVER_DEFAULTS }),
  admin: z.strictObject({
    listen: Listen.default({ host: '127.0.0.1', port: 8081 }),
    // `${FLAGGATE_ADMIN_TOKEN:-}` leaves an empty string: that means "no token", not a short one
    token: z.string().optional().transform((t) => t === '' ? undefined : t)
      .pipe(z.string().min(16, 'must be at least 16 characters')
        // an example value is not a secret: refused with how to make one (placeholder.ts)
        .superRefine((t, ctx) => {
          const problem = placeholderProblem(t)
          if (problem !== undefined) ctx.addIssue({ code: 'custom', message: `${problem}: set a random token, e.g. \`openssl rand -hex 24\`` })
        }).optional())
  }).default({ listen: { host: '127.0.0.1', port: 8081 } }),
  upstreams: z.record(z.string().regex(/^[a-z0-9][a-z0-9_-]*$/, 'upstream names are lower-case letters, digits, - or _'), UpstreamSchema)
    .refine((u) => Object.keys(u).length > 0, { message: 'needs at least one upstream' }),
  store: z.strictObject({ redis: RedisSchema }).optional(),
  routes: z.array(RouteSchema).min(1, 'needs at least one route'),
  overrides: z.array(z.strictObject({
    key: z.string().min(1),
    routes: z.array(z.string()).optional(),
    limit: Limits
  })).default([]),
  cache: z.strictObject({ maxSize: Size.default(256 * 1024 * 1024) }).default({ maxSize: 256 * 1024 * 1024 }),
  blocklist: z.array(BlockSchema).default([]),
  // distinct keys Core has not accepted, per client address, sent upstream (rate-limit/unknown-keys.ts); absent: none
  unknownKeys: BudgetSchema.optional(),
  abuse: z.strictObject({ rejections: CountPerWindow, blockFor: PositiveDuration }).optional(),
  blocking: z.strictObject({
    // relative paths are resolved against the policy file's directory
    stateFile: z.string().min(1).default('.flaggate/blocks.json')
  }).default({ stateFile: '.flaggate/blocks.json' }),
  breakers: z.record(z.string(), BreakerSchema).default({}),
  webhooks: z.strictObject({
    flagsmith: z.strictObject({
      path: z.string().startsWith('/'),
      secret: z.string().min(1),
      // the same signed body again within this window purges nothing (cache/webhook-replay.ts)
      replayWindow: PositiveDuration.default(DEFAULT_WEBHOOK_REPLAY_WINDOW_MS),
      // distinct webhooks within this window make one purge; bounded so a purge is never late by much
      coalesce: Duration.refine((ms) => ms <= MAX_WEBHOOK_COALESCE_MS, { message: 'must be at most 5s (a purge waits this long)' }).default(DEFAULT_WEBHOOK_COALESCE_MS),
      // per client address, before the body is read
      limit: BudgetSchema.default(DEFAULT_WEBHOOK_LIMIT)
    }).optional()
  }).default({}),
  localEvaluation: LocalEvaluationSchema.optional(),
  tracing: TracingSchema.optional(),
  probes: z.array(z.strictObject({
    name: z.string().min(1),
    path: z.string().startsWith('/'),
    key: z.string().min(1),
    interval: PositiveDuration.default(30_000),
    method: Method.default('GET')
  })).default([])
})

export type PolicyInput = z.input<typeof PolicySchema>
export type PolicyData = z.output<typeof PolicySchema>
export type RouteData = PolicyData['routes'][number]
export type LimitData = z.output<typeof LimitSchema>
export type CacheRuleData = z.output<typeof CacheRuleSchema>
export type CompressData = z.output<typeof CompressSchema>
export type UpstreamData = PolicyData['upstreams'][string]
export type BreakerData = z.output<typeof BreakerSchema>
export type RedisData = z.output<typeof RedisSchema>
export type LocalEvaluationData = z.output<typeof LocalEvaluationSchema>
export type TracingData = z.output<typeof TracingSchema>
