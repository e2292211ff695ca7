/**
 * The {@link UpstreamGate} the upstream client asks before every attempt: one {@link Breaker} per
 * upstream, configured from `breakers.<upstream>` on every (re)load. Breakers live as long as the
 * gateway: a reload changes their settings, never their state or their count of requests in
 * flight (requests admitted under the old policy finish against the same object).
 */
import { GatewayError } from '../errors.js'
import type { Policy } from '../policy/compile.js'
import type { Admission as GateAdmission, GateClient, UpstreamGate } from '../upstream/gate.js'
import { Breaker, type BreakerStatus, type BreakerTransition, type Clock } from './core.js'
import { breakerConfig } from './config.js'

/** Longest Retry-After whose 503 is kept ready-made (seconds); longer ones are built when needed. */
const PREBUILT_RETRY_AFTER_S = 600

export class BreakerGate implements UpstreamGate {
  readonly #breakers = new Map<string, Breaker>()
  readonly #clock: Clock
  readonly #onTransition: (t: BreakerTransition) => void
  /**
   * Shed answers, built once per upstream, state and Retry-After: an Error captures a stack when
   * built, and shedding is exactly the path that must stay cheap under overload. They are never
   * mutated (the error handler only reads them).
   */
  #shed = new Map<string, GatewayError>()

  constructor (opts: { clock: Clock; onTransition: (t: BreakerTransition) => void }) {
    this.#clock = opts.clock
    this.#onTransition = (t) => { this.#shed = new Map(); opts.onTransition(t) }
  }

  /** Every (re)load, before the policy serves requests. */
  configure (policy: Policy): void {
    for (const name of Object.keys(policy.upstreams)) {
      const config = breakerConfig(policy.data.breakers[name], policy.upstreams[name])
      const b = this.#breakers.get(name)
      if (b === undefined) this.#breakers.set(name, new Breaker(name, config, { clock: this.#clock, onTransition: this.#onTransition }))
      else b.configure(config)
    }
    // an upstream gone from the policy keeps its breaker (its requests in flight still finish
    // there) but no rule: it trips nothing and caps nothing
    for (const [name, b] of this.#breakers) {
      if (policy.upstreams[name] === undefined) b.configure(breakerConfig(undefined, undefined))
    }
    this.#shed = new Map()
  }

  admit (upstream: string, _route: string, client?: GateClient): GateAdmission | GatewayError {
    const b = this.#breakers.get(upstream)
    if (b === undefined) return UNTRACKED
    const r = b.admit(client)
    return typeof r === 'number' ? this.#shedError(b, r) : r
  }

  isOpen (upstream: string): boolean {
    return this.#breakers.get(upstream)?.isOpen() ?? false
  }

  breaker (upstream: string): Breaker | undefined { return this.#breakers.get(upstream) }

  /** `/admin/status` `breakers` section: upstreams with a `breakers` entry in the policy. */
  status (policy: Policy): Record<string, BreakerStatus> {
    const out: Record<string, BreakerStatus> = {}
    for (const name of Object.keys(policy.data.breakers)) {
      const b = this.#breakers.get(name)
      if (b !== undefined) out[name] = b.status()
    }
    return out
  }

  /** Every upstream the gate has seen, for the gauges. */
  * all (): IterableIterator<Breaker> { yield * this.#breakers.values() }

  #shedError (b: Breaker, retryAfterS: number): GatewayError {
    const state = b.state()
    const key = `${b.upstream}\n${state}\n${retryAfterS}`
    let e = this.#shed.get(key)
    if (e !== undefined) return e
    const message = state === 'closed'
      ? `Too many requests in flight to the upstream '${b.upstream}'; retry after ${retryAfterS} s.`
      : state === 'open'
        ? `The upstream '${b.upstream}' is overloaded and its circuit breaker is open; retry after ${retryAfterS} s.`
        : `The upstream '${b.upstream}' is recovering: only trial requests are let through; retry after ${retryAfterS} s.`
    e = new GatewayError('FLAGGATE_UPSTREAM_OVERLOADED', message, { 'retry-after': String(retryAfterS) })
    if (retryAfterS <= PREBUILT_RETRY_AFTER_S) this.#shed.set(key, e)
    return e
  }
}

/** An upstream the gate has not been configured with (a reload raced the request): let it through. */
const UNTRACKED: GateAdmission = Object.freeze({ finish (): void {} })
