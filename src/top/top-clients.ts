/**
 * `flaggate top` / `GET /admin/top`: the busiest clients of the last minute on this replica, per
 * route, by requests or by rejections (429 and 403), in bounded memory whatever the traffic.
 *
 * Two Space-Saving sketches (requests, rejections) per window; windows rotate every `intervalMs`
 * (30 s), and a query adds the current window to the previous one, so it covers the last 30 to
 * 60 s. A client is (route, environment key, IP): the unit on-call blocks.
 *
 * The sketches hold keys in full, in memory: /admin/top is admin-only and shows them, so the
 * output can be pasted into `flaggate block`. Nothing here is logged or exported as a metric.
 */
import { SpaceSaving } from './space-saving.js'
import { ClientStrings } from '../shared/client-memo.js'
import { systemClock, type Clock } from '../shared/clock.js'
import { parseCidr } from '../shared/ip-index.js'

export type TopBy = 'requests' | 'rejections'

export interface TopEntry {
  /** `KEY@IP`, or `IP` for requests without a key: what `flaggate block --client` takes */
  client: string
  key?: string
  ip: string
  route: string
  requests: number
  rejections: number
  /** how much the ranked count may over-estimate (Space-Saving's error; 0 = exact) */
  error: number
}

export interface TopResult { by: TopBy; windowMs: number; since: string; tracked: number; clients: TopEntry[] }

interface Window { start: number; requests: SpaceSaving; rejections: SpaceSaving }

const SEP = '\n'

export class TopClients {
  readonly capacity: number
  readonly intervalMs: number
  readonly #clock: Clock
  #current: Window
  #previous: Window
  // The sketch's item for a recent client, as the same string object every time, so its Map
  // lookup does not flatten and hash a fresh one (shared/client-memo.ts); bounded in bytes. A
  // client calls one or two routes.
  readonly #items = new ClientStrings({ maxBytes: 1024 * 1024, maxIpsPerKey: 64, maxNames: 8 })

  constructor (opts: { capacity?: number; intervalMs?: number; clock?: Clock } = {}) {
    this.capacity = opts.capacity ?? 1000
    this.intervalMs = opts.intervalMs ?? 30_000
    this.#clock = opts.clock ?? systemClock
    const now = this.#clock()
    this.#current = this.#window(now)
    this.#previous = this.#window(now - this.intervalMs)
  }

  /**
   * One answered request. No clock read here (it runs for every request): the owner calls
   * {@link tick} every second, so a window's edge is exact to within that second.
   */
  record (route: string, key: string | undefined, ip: string, rejected: boolean): void {
    const item = this.#item(route, key, ip)
    this.#current.requests.add(item)
    if (rejected) this.#current.rejections.add(item)
  }

  #item (route: string, key: string | undefined, ip: string): string {
    let item = this.#items.get(key, ip, route)
    if (item === undefined) {
      item = route + SEP + (key ?? '') + SEP + ip
      this.#items.set(key, ip, route, item)
    }
    return item
  }

  /** Starts a new window when the current one is over. */
  tick (): void {
    const now = this.#clock()
    if (now - this.#current.start >= this.intervalMs) this.#rotate(now)
  }

  top (by: TopBy, limit: number): TopResult {
    this.tick()
    const now = this.#clock()
    const ranked = by === 'requests' ? 'requests' : 'rejections'
    const other = by === 'requests' ? 'rejections' : 'requests'
    const sums = new Map<string, { ranked: number; error: number }>()
    for (const w of [this.#previous, this.#current]) {
      for (const e of w[ranked].entries()) {
        const s = sums.get(e.item)
        if (s === undefined) sums.set(e.item, { ranked: e.count, error: e.error }); else { s.ranked += e.count; s.error += e.error }
      }
    }
    const rows = [...sums].sort((a, b) => b[1].ranked - a[1].ranked || a[0].localeCompare(b[0])).slice(0, Math.max(0, limit))
    const clients = rows.map(([item, s]) => {
      const [route, key, ip] = item.split(SEP) as [string, string, string]
      const otherCount = (this.#previous[other].get(item)?.count ?? 0) + (this.#current[other].get(item)?.count ?? 0)
      const entry: TopEntry = {
        client: key === '' ? ip : `${key}@${ip}`,
        ...(key === '' ? {} : { key }),
        ip,
        route,
        requests: by === 'requests' ? s.ranked : otherCount,
        rejections: by === 'rejections' ? s.ranked : otherCount,
        error: s.error
      }
      return entry
    })
    return { by, windowMs: now - this.#previous.start, since: new Date(this.#previous.start).toISOString(), tracked: sums.size, clients }
  }

  #window (start: number): Window {
    return { start, requests: new SpaceSaving(this.capacity), rejections: new SpaceSaving(this.capacity) }
  }

  #rotate (now: number): void {
    // windows start on multiples of the interval after the first, so a quiet spell empties both
    const elapsed = now - this.#current.start
    const old = this.#previous
    if (elapsed >= 2 * this.intervalMs) {
      this.#current.requests.clear(); this.#current.rejections.clear()
      this.#current.start = now - this.intervalMs
    }
    old.requests.clear(); old.rejections.clear()
    old.start = elapsed >= 2 * this.intervalMs ? now : this.#current.start + this.intervalMs
    this.#previous = this.#current
    this.#current = old
  }
}

/**
 * `KEY@IP` → the key (blocking a client of `top` means its key); a bare address → the IP.
 * Anything else (an empty key, an address that is not one) is undefined: a typo, not a block.
 */
export function parseClient (client: string): { key: string } | { ip: string } | undefined {
  const at = client.lastIndexOf('@')
  const key = at === -1 ? undefined : client.slice(0, at)
  if (key === '' || parseCidr(at === -1 ? client : client.slice(at + 1)) === undefined) return undefined
  return key === undefined ? { ip: client } : { key }
}
