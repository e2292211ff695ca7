/**
 * Nothing lost while Core cannot take writes, within bounds:
 *
 * - analytics (`analytics/flags/` v1 counts and v2 evaluations) are summed per environment and
 *   feature name, one counter each (`maxAnalyticsCounters`), and sent later as one v1 post per
 *   environment. v2's per-identity attribution of the evaluations counted during the outage is
 *   not kept: summing is what bounds the memory.
 * - identity writes (`POST identities/` with traits, not transient) are kept as the bytes the
 *   SDK sent, in arrival order (`maxQueuedWrites`, `maxQueuedBytes`), and replayed in that order.
 *
 * A pump tries every second while anything is kept (and at once when a write is added), so what
 * is kept reaches Core within about a second of Core taking requests again; a write Core refuses
 * (4xx) is dropped, since sending it again would be refused again, and does not hold up the rest.
 * Each drop beyond a bound is counted (`onDrop`) and logged once per interval.
 *
 * Entries name their environment by a digest of its server key, never the key: what is kept may
 * be written to a state file (state.ts), which must not hold secrets.
 */
import { createHash } from 'node:crypto'
import { GatewayError } from '../errors.js'

export type DropReason = 'analytics-bound' | 'writes-bound' | 'write-refused'

export interface OutboxBounds { maxQueuedWrites: number; maxQueuedBytes: number; maxAnalyticsCounters: number }

export interface OutboxSnapshot {
  v: 1
  writes: Array<{ env: string; body: string }>
  analytics: Record<string, Record<string, number>>
}

export interface OutboxOptions {
  bounds: () => OutboxBounds
  /** POSTs to Core with the environment's server key; resolves Core's status, throws GatewayError when Core cannot be asked */
  send: (serverKey: string, what: 'identities' | 'analytics', body: Buffer) => Promise<number>
  /** the listed server key with this digest (undefined: no longer listed; its entries are dropped) */
  keyOf: (digest: string) => string | undefined
  onDrop: (reason: DropReason, count: number) => void
  logger: { warn (obj: object, msg: string): void; info (obj: object, msg: string): void }
  /** called when what is kept changed (state.ts saves it) */
  onChange?: () => void
  retryMs?: number
  logEveryMs?: number
}

export function keyDigest (serverKey: string): string {
  return createHash('sha256').update(serverKey).digest('hex').slice(0, 32)
}

/** `{feature: count}` of an analytics body; what is not a count is ignored, as Core does. */
export function analyticsCounts (kind: 'analytics-v1' | 'analytics-v2', body: Buffer): Record<string, number> {
  const out: Record<string, number> = {}
  let data: unknown
  try { data = JSON.parse(body.toString('utf8')) } catch { return out }
  const add = (name: unknown, n: unknown): void => {
    if (typeof name !== 'string' || name === '' || typeof n !== 'number' || !Number.isSafeInteger(n) || n <= 0) return
    out[name] = (out[name] ?? 0) + n
  }
  if (typeof data !== 'object' || data === null) return out
  if (kind === 'analytics-v1') {
    if (Array.isArray(data)) return out
    for (const [name, n] of Object.entries(data)) add(name, n)
  } else {
    const evaluations = (data as { evaluations?: unknown }).evaluations
    if (Array.isArray(evaluations)) for (const e of evaluations) add((e as { feature_name?: unknown }).feature_name, (e as { count?: unknown }).count)
  }
  return out
}

export class Outbox {
  readonly #o: OutboxOptions
  #writes: Array<{ env: string; body: Buffer }> = []
  #writeBytes = 0
  readonly #analytics = new Map<string, Map<string, number>>()
  #counters = 0
  #pumping: Promise<void> | undefined
  #timer: NodeJS.Timeout | undefined
  #logTimer: NodeJS.Timeout | undefined
  readonly #drops = new Map<DropReason, number>()
  #closed = false

  constructor (opts: OutboxOptions) {
    this.#o = opts
    this.#timer = setInterval(() => { void this.pump() }, opts.retryMs ?? 1000)
    this.#timer.unref()
    this.#logTimer = setInterval(() => { this.#logDrops() }, opts.logEveryMs ?? 10_000)
    this.#logTimer.unref()
  }

  get size (): { writes: number; writeBytes: number; analyticsCounters: number } {
    return { writes: this.#writes.length, writeBytes: this.#writeBytes, analyticsCounters: this.#counters }
  }

  #drop (reason: DropReason, count = 1): void {
    this.#drops.set(reason, (this.#drops.get(reason) ?? 0) + count)
    this.#o.onDrop(reason, count)
  }

  #logDrops (): void {
    if (this.#drops.size === 0) return
    this.#o.logger.warn({ dropped: Object.fromEntries(this.#drops) }, 'local evaluation: writes kept for Core were dropped (bounds: localEvaluation.maxQueuedWrites, maxQueuedBytes, maxAnalyticsCounters)')
    this.#drops.clear()
  }

  addWrite (serverKey: string, body: Buffer): void {
    const b = this.#o.bounds()
    if (this.#writes.length >= b.maxQueuedWrites || this.#writeBytes + body.length > b.maxQueuedBytes) { this.#drop('writes-bound'); return }
    this.#writes.push({ env: keyDigest(serverKey), body })
    this.#writeBytes += body.length
    this.#o.onChange?.()
    void this.pump()
  }

  addAnalytics (serverKey: string, counts: Record<string, number>): void {
    const env = keyDigest(serverKey)
    let m = this.#analytics.get(env)
    for (const name in counts) {
      if (m === undefined) { m = new Map(); this.#analytics.set(env, m) }
      const had = m.get(name)
      if (had === undefined) {
        if (this.#counters >= this.#o.bounds().maxAnalyticsCounters) { this.#drop('analytics-bound', counts[name]!); continue }
        this.#counters++
      }
      m.set(name, Math.min(Number.MAX_SAFE_INTEGER, (had ?? 0) + counts[name]!))
    }
    this.#o.onChange?.()
  }

  /** Sends what is kept, writes first and in order; stops at the first answer that says Core cannot take it. Single flight. */
  async pump (): Promise<void> {
    if (this.#closed || (this.#writes.length === 0 && this.#analytics.size === 0)) return
    this.#pumping ??= this.#pumpOnce().finally(() => { this.#pumping = undefined })
    await this.#pumping
  }

  /** true: delivered or dropped; false: Core cannot take it now */
  async #deliver (env: string, what: 'identities' | 'analytics', body: Buffer): Promise<boolean> {
    const key = this.#o.keyOf(env)
    if (key === undefined) return true
    let status: number
    try { status = await this.#o.send(key, what, body) } catch (err) {
      if (err instanceof GatewayError) return false
      throw err
    }
    if (status >= 500 || status === 429) return false
    if (status >= 400) this.#drop('write-refused')
    return true
  }

  async #pumpOnce (): Promise<void> {
    while (this.#writes.length > 0 && !this.#closed) {
      const w = this.#writes[0]!
      if (!await this.#deliver(w.env, 'identities', w.body)) return
      this.#writes.shift()
      this.#writeBytes -= w.body.length
      this.#o.onChange?.()
    }
    for (const [env, counts] of [...this.#analytics]) {
      if (this.#closed) return
      const sent = new Map(counts)
      if (!await this.#deliver(env, 'analytics', Buffer.from(JSON.stringify(Object.fromEntries(sent))))) return
      // what arrived meanwhile stays for the next post
      for (const [name, n] of sent) {
        const left = (counts.get(name) ?? 0) - n
        if (left > 0) counts.set(name, left)
        else { counts.delete(name); this.#counters-- }
      }
      if (counts.size === 0) this.#analytics.delete(env)
      this.#o.onChange?.()
    }
  }

  snapshot (): OutboxSnapshot {
    const analytics: OutboxSnapshot['analytics'] = {}
    for (const [env, m] of this.#analytics) analytics[env] = Object.fromEntries(m)
    return { v: 1, writes: this.#writes.map((w) => ({ env: w.env, body: w.body.toString('base64') })), analytics }
  }

  /** What a previous run kept (state.ts), before anything new arrives; entries beyond the bounds are dropped and counted. */
  restore (s: OutboxSnapshot): void {
    for (const w of s.writes) {
      const key = this.#o.keyOf(w.env)
      if (key !== undefined) this.addWrite(key, Buffer.from(w.body, 'base64'))
    }
    for (const [env, counts] of Object.entries(s.analytics)) {
      const key = this.#o.keyOf(env)
      if (key !== undefined) this.addAnalytics(key, analyticsCounts('analytics-v1', Buffer.from(JSON.stringify(counts))))
    }
  }

  async close (): Promise<void> {
    this.#closed = true
    clearInterval(this.#timer)
    clearInterval(this.#logTimer)
    this.#logDrops()
    await this.#pumping?.catch(() => {})
  }
}
