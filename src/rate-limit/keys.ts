/**
 * Which bucket a request falls into, per limit, and everything about a set of limits that can be
 * computed once per policy instead of once per request. Pure: no fastify.
 *
 * Bucket key: `rl:<route>:<limit id>:{<tag>}<rest>`.
 * - `<route>` keeps each route's buckets apart even when an override's limits serve several routes.
 * - `{<tag>}` is a Redis Cluster hash tag: the values of the dimensions every limit of the set
 *   shares (`environmentKey` for the shipped `[environmentKey]` + `[environmentKey, ip]` pair).
 *   All the keys of one request then live in one slot, which a multi-key script requires, while
 *   different clients still spread over the cluster. A set with no shared dimension uses the
 *   route name (one slot per route). A given bucket always gets the same tag, so it is never
 *   split between slots.
 * - Environment keys appear only as a digest (Redis is readable by whoever operates it).
 * - Identities longer than {@link MAX_IDENTITY_CHARS} (or containing braces, which would confuse
 *   the hash tag) are replaced by a hash, so keys stay short whatever a client sends.
 */
import { MEMO_ENTRY_OVERHEAD } from '../shared/memo.js'
import { digest22, keyDigest } from '../shared/key-digest.js'
import { ClientMemo } from '../shared/client-memo.js'
import type { CompiledLimit } from '../policy/compile.js'
import type { Dimension } from '../policy/schema.js'
import { bucketParams, type BucketParams, type BucketRequest } from './core.js'

export const MAX_IDENTITY_CHARS = 48

/** What a request offers to identify its client. */
export interface ClientFacts {
  envKey: string | undefined
  clientIp: string
  headers: Readonly<Record<string, string | string[] | undefined>>
}

const ENV = 0
const IP = 1
const HEADER = 2
interface DimAccessor { readonly kind: 0 | 1 | 2; readonly header: string }

function accessor (d: Dimension): DimAccessor {
  if (d === 'environmentKey') return { kind: ENV, header: '' }
  if (d === 'ip') return { kind: IP, header: '' }
  return { kind: HEADER, header: d.slice('header:'.length) }
}

function valueOf (a: DimAccessor, f: ClientFacts): string {
  // The prefixes keep a client without a key ("i" + its IP) from sharing a bucket with a client
  // whose key happens to be that IP string.
  if (a.kind === ENV) return f.envKey === undefined || f.envKey === '' ? 'i' + f.clientIp : 'k' + keyDigest(f.envKey)
  if (a.kind === IP) return f.clientIp
  const v = f.headers[a.header]
  if (v === undefined) return ''
  return typeof v === 'string' ? v : v.join(',')
}

/** `\n` cannot occur in a header value or an IP, so joined parts never collide. */
function encode (parts: readonly string[]): string {
  const s = parts.length === 1 ? parts[0]! : parts.join('\n')
  if (s.length <= MAX_IDENTITY_CHARS && !s.includes('{') && !s.includes('}') && !s.includes('\n')) return s
  return '#' + digest22(s)
}

export interface PlannedLimit {
  readonly limit: CompiledLimit
  readonly params: BucketParams
  /** `rl:<route>:<limit id>:` */
  readonly keyStart: string
  /** dimensions outside the hash tag, in the limit's own order */
  readonly rest: readonly DimAccessor[]
}

export interface LimitPlan {
  readonly route: string
  readonly limits: readonly PlannedLimit[]
  /** dimensions shared by every limit, forming the hash tag; empty → the route name is the tag */
  readonly tag: readonly DimAccessor[]
  /** `RateLimit-Policy` value: every non-shadow limit; empty when all are shadow */
  readonly policyHeader: string
  /** no limit of the set can refuse a request */
  readonly allShadow: boolean
  /** the bucket requests of recent clients; undefined when a limit counts by a header */
  readonly clients: ClientMemo<readonly BucketRequest[]> | undefined
}

// Policies are frozen and a reload swaps them, so caching on the limits array is safe and the
// entries die with the policy that owns them.
const plans = new WeakMap<readonly CompiledLimit[], Map<string, LimitPlan>>()

/** The precomputed plan for `limits` on `route` (cached per frozen limits array). */
export function planFor (route: string, limits: readonly CompiledLimit[]): LimitPlan {
  let byRoute = plans.get(limits)
  if (byRoute === undefined) { byRoute = new Map(); plans.set(limits, byRoute) }
  let plan = byRoute.get(route)
  if (plan === undefined) { plan = buildPlan(route, limits); byRoute.set(route, plan) }
  return plan
}

function buildPlan (route: string, limits: readonly CompiledLimit[]): LimitPlan {
  const shared = limits.length === 0 ? [] : limits[0]!.by.filter((d) => limits.every((l) => l.by.includes(d)))
  const sharedSet = new Set<Dimension>(shared)
  return Object.freeze({
    route,
    limits: Object.freeze(limits.map((limit) => Object.freeze({
      limit,
      params: bucketParams(limit.ratePerSec, limit.burst, limit.shadow),
      keyStart: `rl:${route}:${limit.id}:`,
      rest: Object.freeze(limit.by.filter((d) => !sharedSet.has(d)).map(accessor))
    }))),
    tag: Object.freeze(shared.map(accessor)),
    policyHeader: limits.filter((l) => !l.shadow).map((l) => l.policyHeader).join(', '),
    allShadow: limits.every((l) => l.shadow),
    // a header value is any string a client sends with each request: not worth remembering
    clients: limits.some((l) => l.by.some((d) => d.startsWith('header:'))) ? undefined : clientRequests()
  })
}

/** The bucket key of each planned limit for this client, in plan order. */
export function bucketKeys (plan: LimitPlan, facts: ClientFacts): string[] {
  const tag = plan.tag.length === 0 ? plan.route : encode(plan.tag.map((a) => valueOf(a, facts)))
  const keys = new Array<string>(plan.limits.length)
  for (let i = 0; i < plan.limits.length; i++) {
    const p = plan.limits[i]!
    keys[i] = p.rest.length === 0
      ? `${p.keyStart}{${tag}}`
      : `${p.keyStart}{${tag}}:${encode(p.rest.map((a) => valueOf(a, facts)))}`
  }
  return keys
}

/** The bucket requests (key and parameters, in plan order) for this client. */
export function bucketRequests (plan: LimitPlan, facts: ClientFacts): readonly BucketRequest[] {
  const memo = plan.clients
  if (memo === undefined) return buildRequests(plan, facts)
  const known = memo.get(facts.envKey, facts.clientIp)
  if (known !== undefined) return known
  const built = buildRequests(plan, facts)
  memo.set(facts.envKey, facts.clientIp, built)
  return built
}

function buildRequests (plan: LimitPlan, facts: ClientFacts): BucketRequest[] {
  const keys = bucketKeys(plan, facts)
  const requests = new Array<BucketRequest>(keys.length)
  for (let i = 0; i < keys.length; i++) requests[i] = { key: keys[i]!, params: plan.limits[i]!.params }
  return requests
}

/** IPs remembered per environment key; a key seen from more (a browser key) builds the rest. */
export const MAX_IPS_PER_KEY = 64
/** Bytes one plan's memo of recent clients may hold (estimated). */
export const CLIENT_MEMO_BYTES = 2 * 1024 * 1024

function keyChars (requests: readonly BucketRequest[]): number {
  let n = 0
  for (const r of requests) n += r.key.length
  return n
}

/**
 * The bucket requests of recent clients of one plan (shared/client-memo.ts): a remembered client's
 * bucket lookups use the same key strings, with their hashes kept, on every request.
 */
function clientRequests (): ClientMemo<readonly BucketRequest[]> {
  return new ClientMemo<readonly BucketRequest[]>({
    maxBytes: CLIENT_MEMO_BYTES,
    maxIpsPerKey: MAX_IPS_PER_KEY,
    size: (requests) => requests.length * MEMO_ENTRY_OVERHEAD + keyChars(requests),
    chars: keyChars
  })
}
