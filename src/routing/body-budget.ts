/**
 * One budget for the request bodies the gateway holds at once (`server.bufferedBodies`, default
 * 256 MB), and a share of it per client. Bodies are read whole before they go upstream (so what
 * Core gets is exactly what was sent, within `server.bodyLimit`); without a bound, 400
 * connections each one byte short of a 1 MB body held 400 MB, and `maxConnections` of them 10 GB.
 *
 * A body is charged as it arrives (its declared Content-Length up front, so a refused one costs
 * no reading) and released when its request is answered or abandoned. One client (a counted
 * address: shared/ip-prefix.ts) may hold at most an eighth of the budget, and never less than
 * one whole `bodyLimit`, so that one client cannot take the budget from all. A body that does not
 * fit is refused at once with 503 `FLAGGATE_OVERLOADED` and `Retry-After`, as NGINX's limit_conn
 * refuses rather than queues.
 */
export const CLIENT_SHARE = 1 / 8

export class BodyBudget {
  #used = 0
  readonly #byClient = new Map<string, number>()

  /** bytes charged now, in all */
  get used (): number { return this.#used }

  /** Charges `bytes` to `client` if they fit; false (nothing charged) when they do not. */
  charge (client: string, bytes: number, limit: number, bodyLimit: number): boolean {
    const mine = this.#byClient.get(client) ?? 0
    if (this.#used + bytes > limit || mine + bytes > Math.max(bodyLimit, limit * CLIENT_SHARE)) return false
    this.#used += bytes
    this.#byClient.set(client, mine + bytes)
    return true
  }

  release (client: string, bytes: number): void {
    this.#used = Math.max(0, this.#used - bytes)
    const left = (this.#byClient.get(client) ?? 0) - bytes
    if (left <= 0) this.#byClient.delete(client); else this.#byClient.set(client, left)
  }
}
