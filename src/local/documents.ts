/**
 * What the gateway holds per listed environment: its compiled document, where the document
 * came from and when, the last refresh's result, and how many answers it gave. The key index
 * finds an environment by the `X-Environment-Key` of a request: each listed server key, and the
 * client key that the server key's document names (known once the first document arrived).
 *
 * Pure state, no I/O: the refresher (refresher.ts) writes it, the plugin reads it.
 */
import { compileEnvironment, type LocalEnvironment } from './environment.js'

export type RefreshResult = 'ok' | 'not-modified' | 'shared' | 'refused' | 'error' | 'rejected'

export interface EnvironmentState {
  readonly serverKey: string
  env: LocalEnvironment | undefined
  /** the document's bytes as Core sent them (shared with other replicas through Redis) */
  raw: Buffer | undefined
  /** Core's Last-Modified, sent back as If-Modified-Since */
  lastModified: string | undefined
  /** when Core last confirmed this document (200 or 304), ms since the epoch */
  confirmedAt: number | undefined
  last: { at: number; result: RefreshResult; detail?: string } | undefined
  served: number
  /** requests waiting for the first document (always mode) */
  waiters: Set<() => void>
}

export interface KeyMatch { state: EnvironmentState; env: LocalEnvironment; isServer: boolean }

export class LocalDocuments {
  readonly states = new Map<string, EnvironmentState>()
  readonly #byKey = new Map<string, { state: EnvironmentState; isServer: boolean }>()

  constructor (serverKeys: readonly string[]) {
    for (const serverKey of serverKeys) {
      const state: EnvironmentState = { serverKey, env: undefined, raw: undefined, lastModified: undefined, confirmedAt: undefined, last: undefined, served: 0, waiters: new Set() }
      this.states.set(serverKey, state)
      this.#byKey.set(serverKey, { state, isServer: true })
    }
  }

  /** The listed environment a key belongs to, whether or not its document has arrived. */
  stateOf (key: string | undefined): { state: EnvironmentState; isServer: boolean } | undefined {
    return key === undefined ? undefined : this.#byKey.get(key)
  }

  /** The environment that can answer for this key now, or undefined. */
  match (key: string | undefined): KeyMatch | undefined {
    const m = this.stateOf(key)
    if (m === undefined || m.state.env === undefined) return undefined
    return { state: m.state, env: m.state.env, isServer: m.isServer }
  }

  /**
   * A new document for a listed key: compiled (throws DocumentRejected, keeping the old one),
   * indexed under its client key, and every waiter woken.
   */
  install (state: EnvironmentState, raw: Buffer, lastModified: string | undefined, confirmedAt: number): LocalEnvironment {
    const env = compileEnvironment(JSON.parse(raw.toString('utf8')))
    const previous = state.env
    if (previous !== undefined && previous.clientKey !== env.clientKey) {
      const old = this.#byKey.get(previous.clientKey)
      if (old?.state === state) this.#byKey.delete(previous.clientKey)
    }
    // a client key may never take over a listed server key's entry
    if (!this.#byKey.has(env.clientKey) || this.#byKey.get(env.clientKey)!.state === state) this.#byKey.set(env.clientKey, { state, isServer: false })
    state.env = env
    state.raw = raw
    state.lastModified = lastModified
    state.confirmedAt = confirmedAt
    for (const wake of state.waiters) wake()
    state.waiters.clear()
    return env
  }

  /**
   * Listed environments whose first refresh has not finished: until it has, their client keys
   * are unknown. (After a failed first attempt nobody waits on them: an unlisted key must not
   * pay for a Core that is down.)
   */
  pending (): EnvironmentState[] {
    return [...this.states.values()].filter((s) => s.env === undefined && s.last === undefined)
  }

  /** Resolves true once the state has a document, false after `timeoutMs`. */
  async waitFor (state: EnvironmentState, timeoutMs: number): Promise<boolean> {
    if (state.env !== undefined) return true
    return await new Promise<boolean>((resolve) => {
      const wake = (): void => { clearTimeout(timer); resolve(true) }
      const timer = setTimeout(() => { state.waiters.delete(wake); resolve(false) }, timeoutMs)
      state.waiters.add(wake)
    })
  }
}
