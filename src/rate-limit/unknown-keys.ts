/**
 * `unknownKeys`: how many distinct keys Core has not accepted one client address may send Core.
 *
 * Per-key limits start every new key with a full bucket, and the negative cache only helps with
 * keys that repeat: a client inventing a key per request made Core look up a key that does not
 * exist once per request, at whatever rate it liked. So each client address (as counted, IPv6 by
 * its prefix) has a token bucket, `rate` and `burst`, spent by each *distinct* key it sends Core
 * that Core has not accepted recently. Once Core answers 2xx for a key on an SDK path, the key is
 * known and costs nothing from any address; a 401/403 makes it unknown again. Keys the policy
 * names (overrides, probes, local evaluation) are known from the start.
 *
 * Bounded memory, least recently used dropped first: the known keys (100,000), and the pairs of
 * address and unknown key already charged within a minute (100,000), so an SDK retrying with
 * the same wrong key spends one token, not one per retry. Forgetting a known key only charges its
 * next request once more; forgetting a pair only charges it again. Per replica, even with Redis.
 */
import { LRUCache } from 'lru-cache'
import { keyDigest } from '../shared/key-digest.js'
import type { GatewayError } from '../errors.js'
import { systemClock, type Clock } from '../shared/clock.js'
import { AddressBudget, type Budget } from './address-budget.js'

export const KNOWN_KEYS_MAX = 100_000
export const KNOWN_KEY_TTL_MS = 3_600_000
export const CHARGED_MAX = 100_000
export const CHARGED_TTL_MS = 60_000

/**
 * The paths where Core authenticates the key: a 2xx there means Core accepted it. Elsewhere (a
 * health check, an admin endpoint) Core ignores `X-Environment-Key`, so a 2xx proves nothing.
 */
const SDK_PATH = /^\/api\/v[12]\/(flags|identities|environment-document|traits|analytics\/flags)(\/|$)/

export function authenticatesKey (path: string | undefined): boolean {
  return path !== undefined && SDK_PATH.test(path)
}

/** The keys a policy names: known from the start (they are the operator's own). */
export function policyKeys (data: {
  overrides: ReadonlyArray<{ key: string }>
  probes: ReadonlyArray<{ key: string }>
  localEvaluation?: { environments: ReadonlyArray<{ serverKey: string }> } | undefined
}): Set<string> {
  const keys = new Set<string>()
  for (const o of data.overrides) keys.add(o.key)
  for (const p of data.probes) keys.add(p.key)
  for (const e of data.localEvaluation?.environments ?? []) keys.add(e.serverKey)
  return keys
}

export class UnknownKeys {
  readonly #known: LRUCache<string, true>
  readonly #charged: LRUCache<string, true>
  readonly #budget: AddressBudget

  constructor (opts: { clock?: Clock; knownMax?: number; chargedMax?: number; maxAddresses?: number } = {}) {
    const perf = { now: opts.clock ?? systemClock }
    // ttlResolution 0: the clock is read at every check (lru-cache would otherwise reuse a reading
    // for a while, which a stepped clock never advances)
    this.#known = new LRUCache<string, true>({ max: opts.knownMax ?? KNOWN_KEYS_MAX, ttl: KNOWN_KEY_TTL_MS, ttlResolution: 0, perf })
    this.#charged = new LRUCache<string, true>({ max: opts.chargedMax ?? CHARGED_MAX, ttl: CHARGED_TTL_MS, ttlResolution: 0, perf })
    this.#budget = new AddressBudget('unknownKeys', { ...(opts.clock !== undefined ? { clock: opts.clock } : {}), ...(opts.maxAddresses !== undefined ? { maxKeys: opts.maxAddresses } : {}) })
  }

  /**
   * A request with `envKey` from `net` is about to reach Core: undefined to let it, or the 429.
   * `named`: the keys of the policy in force.
   */
  admit (envKey: string, net: string, budget: Budget, named: ReadonlySet<string>): GatewayError | undefined {
    if (named.has(envKey)) return undefined
    const d = keyDigest(envKey)
    if (this.#known.has(d)) return undefined
    const pair = `${net}\n${d}`
    if (this.#charged.has(pair)) return undefined
    const refused = this.#budget.take(net, budget, 'too many distinct environment keys that Core has not accepted from this address')
    if (refused === undefined) this.#charged.set(pair, true)
    return refused
  }

  /** What Core answered for this key on a path where it authenticates keys. */
  learn (envKey: string, status: number): void {
    if (status >= 200 && status < 300) this.#known.set(keyDigest(envKey), true)
    else if (status === 401 || status === 403) this.#known.delete(keyDigest(envKey))
  }

  get knownSize (): number { return this.#known.size }

  close (): void { this.#budget.close() }
}
