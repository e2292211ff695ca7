/**
 * Whose outcomes a trip rests on: the distinct clients (key + address) that had a slow or failed
 * request in the window. The breaker opens for everyone only when at least {@link MIN_CLIENTS}
 * distinct clients saw the trouble, so one client's slow or failing requests — a legitimate
 * heavy query, or an attacker's POSTs built to be slow — never stop everyone else's.
 *
 * Only "are there at least 3?" is ever asked, so each time slice keeps at most 3 distinct ids:
 * memory is fixed (slices × 3 strings) whatever the traffic, and the question walks at most 30
 * ids. The slices follow the same steps as the window they go with ({@link SlidingWindow}).
 *
 * The gateway's own requests that no client asked for (the active probe: a fixed health path,
 * sent only while traffic is quiet) are trusted evidence on their own: no client can make them
 * slow but Core itself, and with no traffic they are the only evidence there is.
 */
import { GATEWAY_CLIENT } from './admission.js'
import { BUCKETS } from './window.js'

export const MIN_CLIENTS = 3

export class ClientEvidence {
  readonly #sliceMs: number
  readonly #sliceOf = new Float64Array(BUCKETS).fill(NaN)
  readonly #ids: string[][] = Array.from({ length: BUCKETS }, () => [])

  constructor (windowMs: number) {
    this.#sliceMs = Math.max(1, windowMs / BUCKETS)
  }

  /** One slow or failed outcome of `client` at `now`. */
  record (now: number, client: string): void {
    const slice = Math.floor(now / this.#sliceMs)
    const slot = ((slice % BUCKETS) + BUCKETS) % BUCKETS
    if (this.#sliceOf[slot] !== slice) { this.#sliceOf[slot] = slice; this.#ids[slot]!.length = 0 }
    const ids = this.#ids[slot]!
    if (ids.length < MIN_CLIENTS && !ids.includes(client)) ids.push(client)
  }

  /** Distinct clients with slow or failed outcomes in the window ending at `now`, counted up to {@link MIN_CLIENTS}. */
  distinct (now: number): number {
    const slice = Math.floor(now / this.#sliceMs)
    const seen: string[] = []
    for (let slot = 0; slot < BUCKETS; slot++) {
      const s = this.#sliceOf[slot]!
      if (!(s > slice - BUCKETS && s <= slice)) continue
      for (const id of this.#ids[slot]!) {
        if (id === GATEWAY_CLIENT) return MIN_CLIENTS
        if (!seen.includes(id)) { seen.push(id); if (seen.length >= MIN_CLIENTS) return seen.length }
      }
    }
    return seen.length
  }

  clear (): void { this.#sliceOf.fill(NaN); for (const ids of this.#ids) ids.length = 0 }
}
