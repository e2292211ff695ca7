/**
 * The token-bucket arithmetic (GCRA) for all the limits of one request, with no store in it: the
 * memory store runs it on an LRU, and lua.ts is the same algorithm line by line for Redis.
 * See core.ts for GCRA in one paragraph.
 */

/** A limit's numbers as the bucket arithmetic needs them, computed once per limit. */
export interface BucketParams {
  /** ms per token: `1000 / ratePerSec` */
  readonly intervalMs: number
  /** `burst * intervalMs`: how far TAT may run ahead of now */
  readonly toleranceMs: number
  readonly burst: number
  readonly ratePerSec: number
  /** counted, never refuses the request and never stops other limits from spending */
  readonly shadow: boolean
}

export function bucketParams (ratePerSec: number, burst: number, shadow = false): BucketParams {
  if (!(ratePerSec > 0) || !Number.isFinite(ratePerSec)) throw new Error(`rate must be a positive number of tokens per second, got ${ratePerSec}`)
  if (!(burst >= 1)) throw new Error(`burst must be at least 1, got ${burst}`)
  const intervalMs = 1000 / ratePerSec
  return Object.freeze({ intervalMs, toleranceMs: burst * intervalMs, burst, ratePerSec, shadow })
}

export interface BucketRequest {
  /** the bucket's key, without the store's prefix */
  readonly key: string
  readonly params: BucketParams
}

/** One limit's answer. */
export interface BucketDecision {
  /** this limit alone would let the request through (for a shadow limit: it would not refuse) */
  readonly allowed: boolean
  /** whole tokens left after this request */
  readonly remaining: number
  /** ms until one token exists (rounded up); 0 when allowed */
  readonly retryAfterMs: number
  /** ms until the bucket is full again (rounded up) */
  readonly resetMs: number
}

/**
 * Slack for float comparisons, in ms. Epoch milliseconds around 1.7e12 have an ulp of about
 * 0.00024 ms, so exact equality is meaningless; 1 µs is far below anything a client can observe.
 */
export const EPS_MS = 0.001

/**
 * The decision for one request over several buckets, given their current TATs (undefined = full).
 * Writes the new TATs through `commit` only when the request is allowed. This function and the
 * Lua script below are the same algorithm line by line; change both or neither.
 */
export function decideBuckets (
  now: number,
  requests: readonly BucketRequest[],
  tats: ReadonlyArray<number | undefined>,
  commit: (index: number, tat: number, ttlMs: number) => void
): { allowed: boolean; limits: BucketDecision[] } {
  const n = requests.length
  const current = new Array<number>(n)
  const next = new Array<number>(n)
  const conforming = new Array<boolean>(n)
  let allowed = true
  for (let i = 0; i < n; i++) {
    const p = requests[i]!.params
    const stored = tats[i]
    const tat = stored === undefined || stored < now ? now : stored
    const newTat = tat + p.intervalMs
    current[i] = tat
    next[i] = newTat
    conforming[i] = newTat - p.toleranceMs - now <= EPS_MS
    if (!conforming[i] && !p.shadow) allowed = false
  }
  const limits = new Array<BucketDecision>(n)
  for (let i = 0; i < n; i++) {
    const p = requests[i]!.params
    // All-or-nothing: a request refused by one limit spends nothing anywhere, so a client that
    // is over its per-instance limit does not also drain its fleet-wide bucket.
    const spend = allowed && conforming[i]!
    const tat = spend ? next[i]! : current[i]!
    const remaining = Math.max(0, Math.floor((now + p.toleranceMs - tat + EPS_MS) / p.intervalMs))
    const resetMs = Math.ceil(tat - now)
    const retryAfterMs = conforming[i]! ? 0 : Math.ceil(next[i]! - p.toleranceMs - now)
    if (spend) commit(i, tat, resetMs)
    limits[i] = { allowed: conforming[i]!, remaining, retryAfterMs, resetMs }
  }
  return { allowed, limits }
}
