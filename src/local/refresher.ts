/**
 * Keeps each listed environment's document fresh: once at start, then every `refresh`, and at
 * once when a signed Flagsmith webhook names the environment (refresh-ahead). One refresh per
 * key at a time (single flight). Conditional: `If-Modified-Since` with Core's last
 * `Last-Modified`, and a 304 keeps what we hold, so a quiet environment costs Core one cheap
 * query per interval.
 *
 * With Redis, replicas share the work: before asking Core, a replica adopts a newer document
 * another replica stored, and only the replica that wins a short claim (one per key per
 * interval) asks Core. Core then sees one document request per environment per interval,
 * whatever the number of replicas. Redis unusable: each replica asks Core itself.
 *
 * A key Core refuses, an unreachable Core or an unreadable document is a result in the status
 * and a log line when the result changes, never an exception: the previous document stays.
 */
import { GatewayError } from '../errors.js'
import { DocumentRejected } from './environment.js'
import type { EnvironmentState, LocalDocuments, RefreshResult } from './documents.js'
import { redactKey } from '../shared/redact.js'

export interface FetchedDocument { status: number; lastModified: string | undefined; body: Buffer }

/** GET environment-document/ for this server key, through the upstream module (gate, breaker). */
export type DocumentFetch = (serverKey: string, ifModifiedSince: string | undefined) => Promise<FetchedDocument>

export interface SharedEntry { raw: Buffer; lastModified: string | undefined; confirmedAt: number }

/** Where replicas share documents (shared.ts, on Redis). Every method may throw: Redis is optional. */
export interface SharedDocuments {
  read: (serverKey: string) => Promise<SharedEntry | undefined>
  write: (serverKey: string, entry: SharedEntry) => Promise<void>
  /** true: this replica asks Core for this key now; false: another one does */
  claim: (serverKey: string, forMs: number) => Promise<boolean>
}

export interface RefresherLogger { info (obj: object, msg: string): void; warn (obj: object, msg: string): void }

export interface RefresherOptions {
  docs: LocalDocuments
  fetch: DocumentFetch
  shared?: SharedDocuments
  refreshMs: () => number
  logger: RefresherLogger
  onResult?: (result: RefreshResult) => void
  now?: () => number
}

export class Refresher {
  readonly #o: RefresherOptions
  readonly #inflight = new Map<string, Promise<void>>()
  /** a forced refresh waiting for the running one of its key (at most one per key) */
  readonly #queued = new Map<string, Promise<void>>()
  readonly #now: () => number
  #timer: NodeJS.Timeout | undefined
  #closed = false

  constructor (opts: RefresherOptions) {
    this.#o = opts
    this.#now = opts.now ?? Date.now
  }

  /** The first refresh of every key, in the background, then one per interval. */
  start (): void {
    void this.refreshAll()
    this.#schedule()
  }

  #schedule (): void {
    if (this.#closed) return
    this.#timer = setTimeout(() => { void this.refreshAll().finally(() => { this.#schedule() }) }, this.#o.refreshMs())
    this.#timer.unref()
  }

  async refreshAll (force = false): Promise<void> {
    await Promise.all([...this.#o.docs.states.keys()].map(async (k) => { await this.refresh(k, force) }))
  }

  /**
   * Single flight per key: a refresh asked for while one runs joins it. `force`: skip the shared
   * copy and If-Modified-Since (a webhook said it changed). A forced refresh asked for while one
   * runs cannot just join it: the change it announces may be newer than the document that
   * request is fetching. It queues one forced refresh after the running one; any further ones
   * join that (so a burst of webhooks costs Core at most two fetches, and none is lost).
   */
  async refresh (serverKey: string, force = false): Promise<void> {
    const state = this.#o.docs.states.get(serverKey)
    if (state === undefined || this.#closed) return
    const running = this.#inflight.get(serverKey)
    if (running === undefined) {
      const p = this.#refreshOne(state, force).finally(() => { if (this.#inflight.get(serverKey) === p) this.#inflight.delete(serverKey) })
      this.#inflight.set(serverKey, p)
      await p
      return
    }
    if (!force) { await running; return }
    let next = this.#queued.get(serverKey)
    if (next === undefined) {
      next = running.catch(() => {}).then(async () => {
        this.#queued.delete(serverKey)
        await this.refresh(serverKey, true)
      })
      this.#queued.set(serverKey, next)
    }
    await next
  }

  #record (state: EnvironmentState, result: RefreshResult, detail?: string): void {
    const previous = state.last?.result
    state.last = { at: this.#now(), result, ...(detail !== undefined ? { detail } : {}) }
    this.#o.onResult?.(result)
    const key = redactKey(state.serverKey)
    const failed = result === 'refused' || result === 'error' || result === 'rejected'
    // once per change of outcome, not once per interval
    if (failed && previous !== result) this.#o.logger.warn({ key, result, detail }, 'local evaluation: the environment document could not be refreshed; the previous one (if any) stays')
    else if (!failed && (previous === undefined || previous === 'refused' || previous === 'error' || previous === 'rejected')) this.#o.logger.info({ key, result, updatedAt: state.env?.updatedAt }, 'local evaluation: environment document loaded')
  }

  #install (state: EnvironmentState, raw: Buffer, lastModified: string | undefined, confirmedAt: number): boolean {
    try {
      this.#o.docs.install(state, raw, lastModified, confirmedAt)
      return true
    } catch (err) {
      this.#record(state, 'rejected', err instanceof DocumentRejected || err instanceof SyntaxError ? err.message : String(err))
      return false
    }
  }

  async #refreshOne (state: EnvironmentState, force: boolean): Promise<void> {
    const shared = this.#o.shared
    const refreshMs = this.#o.refreshMs()
    if (shared !== undefined && !force) {
      const entry = await shared.read(state.serverKey).catch(() => undefined)
      if (entry !== undefined && entry.confirmedAt > (state.confirmedAt ?? 0)) {
        if (state.raw !== undefined && entry.raw.equals(state.raw)) {
          state.confirmedAt = entry.confirmedAt
          state.lastModified = entry.lastModified
          this.#record(state, 'shared')
        } else if (this.#install(state, entry.raw, entry.lastModified, entry.confirmedAt)) {
          this.#record(state, 'shared')
        }
      }
      // another replica asked Core within this interval: nothing to do
      if (entry !== undefined && this.#now() - entry.confirmedAt < refreshMs && state.env !== undefined) return
      const mine = await shared.claim(state.serverKey, refreshMs).catch(() => true)
      if (!mine) return
    }
    let res: FetchedDocument
    try {
      res = await this.#o.fetch(state.serverKey, force ? undefined : state.lastModified)
    } catch (err) {
      this.#record(state, 'error', err instanceof GatewayError ? err.code : (err as Error).message)
      return
    }
    const now = this.#now()
    if (res.status === 304 && state.raw !== undefined) {
      state.confirmedAt = now
      this.#record(state, 'not-modified')
    } else if (res.status === 200) {
      if (!this.#install(state, res.body, res.lastModified, now)) return
      this.#record(state, 'ok')
    } else if (res.status === 401 || res.status === 403 || res.status === 404) {
      this.#record(state, 'refused', `Core answered ${res.status}: is this a valid server-side key of this Core?`)
      return
    } else {
      this.#record(state, 'error', `Core answered ${res.status}`)
      return
    }
    if (shared !== undefined && state.raw !== undefined) {
      await shared.write(state.serverKey, { raw: state.raw, lastModified: state.lastModified, confirmedAt: now }).catch(() => {})
    }
  }

  async close (): Promise<void> {
    this.#closed = true
    clearTimeout(this.#timer)
    await Promise.allSettled([...this.#inflight.values(), ...this.#queued.values()])
  }
}
