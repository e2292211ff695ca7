/**
 * A token bucket per client address, in this process's memory, for the budgets that are not
 * route limits: the Flagsmith webhook's `limit` and `unknownKeys`. The arithmetic is the route
 * limits' (algorithm.ts, on the bounded LRU of memory-store.ts); what differs is only what is
 * counted and when, which the caller decides.
 *
 * Per replica even with Redis: these guard this process's work (hashing webhook bodies, the
 * requests it sends Core), so the fleet admits at most `replicas × burst`.
 */
import { GatewayError } from '../errors.js'
import { bucketParams, type BucketParams } from './algorithm.js'
import { MemoryBuckets } from './memory-store.js'
import type { Clock } from '../shared/clock.js'

export interface Budget { rate: { perSecond: number; text: string }; burst: number }

export class AddressBudget {
  readonly #buckets: MemoryBuckets
  readonly #name: string
  #params: BucketParams | undefined
  #of: Budget | undefined

  /** `name` is the budget's name in the 429's message and the bucket keys */
  constructor (name: string, opts: { maxKeys?: number; clock?: Clock } = {}) {
    this.#name = name
    this.#buckets = new MemoryBuckets({ ...(opts.maxKeys !== undefined ? { maxKeys: opts.maxKeys } : {}), ...(opts.clock !== undefined ? { clock: opts.clock } : {}) })
  }

  #paramsOf (budget: Budget): BucketParams {
    // the policy's object is the same until a reload: compute the bucket's numbers once per policy
    if (this.#of !== budget) { this.#params = bucketParams(budget.rate.perSecond, budget.burst); this.#of = budget }
    return this.#params!
  }

  /** Takes one token of `net`'s bucket: undefined when there was one, else the 429 to answer (`why` says what was counted). */
  take (net: string, budget: Budget, why: string): GatewayError | undefined {
    const d = this.#buckets.take([{ key: net, params: this.#paramsOf(budget) }])
    if (d.allowed) return undefined
    const retryAfter = Math.max(1, Math.ceil(d.limits[0]!.retryAfterMs / 1000))
    return new GatewayError('FLAGGATE_RATE_LIMITED',
      `Rate limit '${this.#name}' exceeded: ${why} (${budget.rate.text}, burst ${budget.burst}, per client address); retry after ${retryAfter} s.`,
      { 'retry-after': String(retryAfter) })
  }

  get size (): number { return this.#buckets.size }

  close (): void { this.#buckets.close() }
}
