/**
 * Edge routing, with no HTTP in it: which environment keys go to the Flagsmith
 * Edge API instead of Core, and why. The request path (plugin.ts) and `flaggate explain` call the
 * same {@link decideEdge}, so what the CLI prints is what the gateway does.
 *
 * The split must be stable: a client whose key went to Edge yesterday goes there today, in every
 * replica and after every restart or upgrade, and raising the percentage only ever moves keys from
 * Core to Edge. So the choice is a pure function of the key, never of time, process or a random
 * seed: each key has a fixed bucket 0..9999, and a key goes to Edge when its bucket is below
 * `percent × 100`. A higher percentage is a superset of a lower one by construction.
 */
import { hash } from 'node:crypto'
import { EDGE_UPSTREAM } from '../shared/document-query.js'

/** Buckets per key space: the percentage's resolution is 0.01 %. */
export const EDGE_BUCKETS = 10_000

/**
 * The bucket 0..9999 of an environment key: the first 32 bits of SHA-256 of its UTF-8 bytes,
 * big-endian, modulo 10,000.
 *
 * Why SHA-256: it is fixed by a standard (FIPS 180-4), built into Node (no dependency) and into
 * every language an operator might check a key with (`printf %s KEY | sha256sum`: the first 8 hex
 * digits, as an integer, mod 10000), so the split can never change under us with a library
 * upgrade, unlike a hand-rolled FNV or a seeded xxhash whose seed and variant must be pinned. Its
 * output is uniform for keys that differ in one character (FNV-1a's low bits are not), and the
 * 32-bit slice leaves a modulo bias of 2^32 mod 10^4 / 2^32 ≈ 1.7e-6, far below what a percentage
 * can express. Cost: one short hash (about a microsecond) per request on an edge-enabled route.
 */
export function edgeBucket (key: string): number {
  return hash('sha256', key, 'buffer').readUInt32BE(0) % EDGE_BUCKETS
}

/** The first bucket NOT sent to Edge at this percentage (0..100, in steps of 0.01). */
export function edgeThreshold (percent: number): number {
  return Math.round(percent * (EDGE_BUCKETS / 100))
}

/** A route's compiled `edge` section (policy/compile.ts). */
export interface EdgeRule {
  readonly percent: number
  readonly keys: ReadonlySet<string>
  /** reads go to Edge while the route's upstream has its breaker open (off unless asked) */
  readonly whenOpen: boolean
}

export type EdgeReason =
  /** the key is in `edge.keys` */
  | 'listed'
  /** the key's bucket is below `percent × 100` */
  | 'hashed'
  /** the key stays on the route's upstream */
  | 'not-selected'
  /** no X-Environment-Key: stays on the route's upstream (Edge would only answer 403) */
  | 'no-key'
  /** the route's upstream has its breaker open and the route says `whenOpen: true`: a GET goes to Edge rather than to a 503 */
  | 'breaker-open'

export interface EdgeDecision {
  /** `edge`, or the route's own upstream */
  readonly upstream: string
  readonly reason: EdgeReason
  /** the key's bucket, when it was computed (a key on a route with a percentage above 0) */
  readonly bucket: number | undefined
  /**
   * Where a failed answer (connection error, timeout, 5xx) is retried once: the route's upstream
   * for a GET or HEAD sent to Edge by the split; undefined for writes (a write retried elsewhere
   * would land in the other store) and when the route's upstream is the one that is failing.
   */
  readonly fallback: string | undefined
}

/** the upstream name edge routing sends to (shared: the cache keys Edge's pages by it) */
export { EDGE_UPSTREAM }

export interface EdgeQuery {
  /** the route's `upstream` */
  readonly routeUpstream: string
  readonly method: string
  /** X-Environment-Key, undefined when absent */
  readonly key: string | undefined
  /** whether the route's upstream has its breaker open now */
  readonly upstreamOpen: boolean
}

/**
 * Where one request of a route with an `edge` section goes, and why. Precedence: no key → stay;
 * listed → Edge; bucket below the threshold → Edge; otherwise stay, unless the route says
 * `whenOpen`, its upstream is open and the request is a read (then Edge, without a fallback to
 * the open upstream). Nothing goes to Edge that the policy did not send there: `percent: 0`, no
 * `keys` and no `whenOpen` is Core only, whatever the breaker does.
 */
export function decideEdge (rule: EdgeRule, q: EdgeQuery): EdgeDecision {
  if (q.key === undefined) return { upstream: q.routeUpstream, reason: 'no-key', bucket: undefined, fallback: undefined }
  const read = q.method === 'GET' || q.method === 'HEAD'
  const fallback = read && !q.upstreamOpen ? q.routeUpstream : undefined
  if (rule.keys.has(q.key)) return { upstream: EDGE_UPSTREAM, reason: 'listed', bucket: undefined, fallback }
  const threshold = edgeThreshold(rule.percent)
  const bucket = threshold > 0 ? edgeBucket(q.key) : undefined
  if (bucket !== undefined && bucket < threshold) return { upstream: EDGE_UPSTREAM, reason: 'hashed', bucket, fallback }
  if (read && q.upstreamOpen && rule.whenOpen) return { upstream: EDGE_UPSTREAM, reason: 'breaker-open', bucket, fallback: undefined }
  return { upstream: q.routeUpstream, reason: 'not-selected', bucket, fallback: undefined }
}

/** Smallest `edge.percent` (0.01 steps) that sends a key in this bucket to Edge. */
export function percentFor (bucket: number): number {
  return (bucket + 1) / (EDGE_BUCKETS / 100)
}

function fmtPercent (p: number): string {
  return `${Number(p.toFixed(2))}%`
}

/**
 * `flaggate explain`'s account of a decision, one line per fact: the split in force, where the key
 * goes and why (the reason is the `reason` label of the routing metric), what happens when Edge
 * fails, and what an open breaker would change.
 */
export function describeEdge (rule: EdgeRule, q: EdgeQuery, d: EdgeDecision = decideEdge(rule, q)): string[] {
  const threshold = edgeThreshold(rule.percent)
  const lines = [`split: ${fmtPercent(rule.percent)} of keys${threshold === 0 ? '' : ` (buckets 0..${threshold - 1} of ${EDGE_BUCKETS})`}, plus ${rule.keys.size} listed in edge.keys`]
  const read = q.method === 'GET' || q.method === 'HEAD'
  switch (d.reason) {
    case 'no-key':
      lines.push(`no X-Environment-Key → stays on ${d.upstream} (no-key)`)
      return lines
    case 'listed':
      lines.push(`key listed in edge.keys → ${d.upstream} (listed)`)
      break
    case 'hashed':
      lines.push(`key in bucket ${d.bucket!}, below ${threshold} → ${d.upstream} (hashed)`)
      break
    case 'not-selected': {
      const bucket = d.bucket ?? edgeBucket(q.key!)
      lines.push(`key in bucket ${bucket}, not below ${threshold} → stays on ${d.upstream} (not-selected); moves to edge at edge.percent ≥ ${fmtPercent(percentFor(bucket))}`)
      break
    }
    case 'breaker-open':
      lines.push(`${q.routeUpstream}'s breaker is open → ${d.upstream} for this read (breaker-open)`)
      break
  }
  if (d.upstream === EDGE_UPSTREAM) {
    if (d.fallback !== undefined) lines.push(`if edge fails (connection error, timeout, 5xx), ${q.method} is retried once on ${d.fallback}`)
    else if (!read) lines.push(`${q.method} is a write: never retried on ${q.routeUpstream} (it would land in the other store)`)
  } else if (read && !q.upstreamOpen && rule.whenOpen) {
    lines.push(`while ${q.routeUpstream}'s breaker is open, ${q.method} goes to edge instead (breaker-open)`)
  } else if (read && !rule.whenOpen) {
    lines.push(`while ${q.routeUpstream}'s breaker is open, ${q.method} stays on ${q.routeUpstream} (no edge.whenOpen)`)
  }
  return lines
}
