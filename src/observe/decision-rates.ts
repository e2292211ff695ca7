/**
 * Requests per second by decision over the last minute, for `flaggate status` (Prometheus has the
 * same from `requests_total`, but on call the first look is often the CLI, before any dashboard).
 * Sixty one-second buckets per decision, reused in a ring: recording is an array increment.
 */
import type { Decision } from '../contracts/request.js'

export const DECISIONS: readonly Decision[] = ['allowed', 'limited', 'blocked', 'shed', 'cached', 'stale']
const WINDOW_S = 60

export class DecisionRates {
  readonly #counts = new Map<string, Float64Array>()
  readonly #stamp = new Float64Array(WINDOW_S) // which second each bucket holds
  readonly #now: () => number

  constructor (now: () => number = Date.now) {
    this.#now = now
    for (const d of DECISIONS) this.#counts.set(d, new Float64Array(WINDOW_S))
  }

  record (decision: string): void {
    const second = Math.floor(this.#now() / 1000)
    const i = second % WINDOW_S
    if (this.#stamp[i] !== second) {
      // a bucket from a minute (or more) ago: start it again for every decision
      for (const c of this.#counts.values()) c[i] = 0
      this.#stamp[i] = second
    }
    let c = this.#counts.get(decision)
    if (c === undefined) { c = new Float64Array(WINDOW_S); this.#counts.set(decision, c) }
    c[i]!++
  }

  /** `{ windowSeconds, perSecond: { allowed: 12.5, ... } }` over the last full minute and the current second */
  status (): { windowSeconds: number; perSecond: Record<string, number> } {
    const now = Math.floor(this.#now() / 1000)
    const perSecond: Record<string, number> = {}
    for (const [d, c] of this.#counts) {
      let sum = 0
      for (let i = 0; i < WINDOW_S; i++) if (now - this.#stamp[i]! < WINDOW_S) sum += c[i]!
      perSecond[d] = Math.round((sum / WINDOW_S) * 100) / 100
    }
    return { windowSeconds: WINDOW_S, perSecond }
  }
}
