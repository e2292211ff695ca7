/**
 * A client that does not read its answer must not hold an upstream connection. A streamed
 * answer's pool connection is released only once undici has read the whole body, and undici stops
 * reading when we stop taking chunks (backpressure): so a client that never reads, relayed
 * faithfully, pins a connection of the upstream's pool for as long as its socket stays open. 140
 * such requests held 124 of 128 Core connections; every other client waited 30 s and more.
 *
 * Two bounds (the proxy's ProxyHandler applies them):
 * - an answer is taken from the upstream into memory regardless of the client's pace up to
 *   ANSWER_BUFFER_BYTES waiting to be sent, so any answer up to that size frees its connection as
 *   fast as the upstream sends it (SDK answers are far smaller; NGINX's proxy_buffering does the
 *   same, spilling to disk where we hold the line);
 * - past that, the answer holds its connection until the client reads (backpressure, so memory
 *   stays bounded), but one client (key + counted address, as for the other per-client bounds)
 *   holds at most HELD_PER_CLIENT connections of an upstream that way: a further answer that
 *   would wait on it is cut (the upstream request aborted, the client's answer ends short).
 */
import { countedAddress } from '../shared/ip-prefix.js'
import type { GateClient } from './gate.js'

/** bytes of one answer held in memory while its client does not read, before it holds the connection */
export const ANSWER_BUFFER_BYTES = 1024 * 1024
/** upstream connections one client may hold with answers it does not read (per upstream) */
export const HELD_PER_CLIENT = 2

/** Per upstream: how many connections each client holds with answers waiting on it. */
export class HeldAnswers {
  readonly #held = new Map<string, number>()

  /** The counting identity: key and counted address (an IPv6 address by its prefix). */
  static clientOf (upstream: string, client: GateClient | undefined, ipv6Prefix: number): string {
    if (client === undefined) return `${upstream}\n-`
    return `${upstream}\n${client.key ?? ''}\n${countedAddress(client.ip, ipv6Prefix)}`
  }

  /** true when `who` may hold one more connection (then counted until `release`) */
  tryHold (who: string): boolean {
    const n = this.#held.get(who) ?? 0
    if (n >= HELD_PER_CLIENT) return false
    this.#held.set(who, n + 1)
    return true
  }

  release (who: string): void {
    const n = this.#held.get(who) ?? 0
    if (n <= 1) this.#held.delete(who); else this.#held.set(who, n - 1)
  }

  /** connections held by answers waiting on their clients, all clients together */
  get total (): number {
    let sum = 0
    for (const n of this.#held.values()) sum += n
    return sum
  }
}
