/**
 * Holds the policy in force and swaps it atomically on reload (envoy's SetConfig): a request
 * reads `current` once, in the routing hook, and keeps that snapshot to the end, so a reload
 * never changes the rules under a request in flight. A file that fails validation changes
 * nothing: the last good policy stays and the error is kept for /admin/status.
 */
import { EventEmitter } from 'node:events'
import { watch, type FSWatcher } from 'node:fs'
import { basename, dirname, resolve } from 'node:path'
import { PolicyInvalidError, formatPolicyError, type PolicyError } from './load.js'
import { loadPolicyFile } from './file.js'
import { LOOPBACK, type Policy } from './compile.js'

export interface ReloadOutcome { ok: boolean; version: string; errors: PolicyError[]; restartRequired: string[] }

export interface PolicyStoreEvents { reload: [policy: Policy, previous: Policy]; error: [errors: PolicyError[]] }

export class PolicyStore extends EventEmitter<PolicyStoreEvents> {
  readonly file: string
  readonly #env: NodeJS.ProcessEnv
  #current: Policy
  /** what the process listens on; changing it in the file needs a restart */
  readonly #boot: Policy
  #lastError: { at: string; errors: PolicyError[] } | null = null
  #restartRequired: string[] = []
  #watcher: FSWatcher | undefined
  #debounce: NodeJS.Timeout | undefined

  private constructor (file: string, env: NodeJS.ProcessEnv, policy: Policy) {
    super()
    this.file = file
    this.#env = env
    this.#current = policy
    this.#boot = policy
  }

  /** Loads the file or throws PolicyInvalidError: at boot there is no last good policy to keep. */
  static open (file: string, env: NodeJS.ProcessEnv = process.env): PolicyStore {
    const path = resolve(file)
    const result = loadPolicyFile(file, path, env)
    if (!result.ok) throw new PolicyInvalidError(result.errors)
    return new PolicyStore(path, env, result.policy)
  }

  get current (): Policy { return this.#current }
  get lastError (): { at: string; errors: PolicyError[] } | null { return this.#lastError }
  get restartRequired (): readonly string[] { return this.#restartRequired }

  /**
   * Never throws: it runs from a file watch, a signal and an admin call inside the serving
   * process, where an exception would stop the gateway. Whatever happens ends in an outcome.
   */
  reload (): ReloadOutcome {
    try {
      return this.#reload()
    } catch (err) {
      return this.#fail([{ file: basename(this.file), line: 1, col: 1, path: '', message: `reload failed: ${(err as Error).message}` }])
    }
  }

  #reload (): ReloadOutcome {
    const result = loadPolicyFile(basename(this.file), this.file, this.#env)
    if (!result.ok) return this.#fail(result.errors)
    // The admin listener stays where it was bound until a restart, so the token rule is that
    // of the bound address: a reload must not turn auth off on a public admin port.
    const bound = this.#boot.data.admin.listen.host
    if (result.policy.data.admin.token === undefined && !LOOPBACK.has(bound)) {
      return this.#fail([{ file: basename(this.file), line: 1, col: 1, path: 'admin.token', message: `the admin API is bound to non-loopback ${bound} until a restart, so admin.token stays required` }])
    }
    const previous = this.#current
    this.#lastError = null
    if (result.policy.version === previous.version) {
      return { ok: true, version: previous.version, errors: [], restartRequired: this.#restartRequired }
    }
    this.#restartRequired = restartNeeded(this.#boot, result.policy)
    this.#current = result.policy
    try {
      this.emit('reload', result.policy, previous)
    } catch (err) {
      // The new policy is in force for routing; a part that failed to follow it is reported
      // rather than allowed to unwind into the watcher (which would end the process).
      return this.#fail([{ file: basename(this.file), line: 1, col: 1, path: '', message: `the policy was loaded but applying it failed: ${(err as Error).message}` }])
    }
    return { ok: true, version: result.policy.version, errors: [], restartRequired: this.#restartRequired }
  }

  #fail (errors: PolicyError[]): ReloadOutcome {
    this.#lastError = { at: new Date().toISOString(), errors }
    // an 'error' event nobody listens to is thrown by EventEmitter: only tell listeners
    if (this.listenerCount('error') > 0) try { this.emit('error', errors) } catch {}
    return { ok: false, version: this.#current.version, errors, restartRequired: this.#restartRequired }
  }

  /**
   * Reloads when the file changes. Watches the directory, not the file: editors and
   * ConfigMap updates replace the file by rename, which a file watch would lose.
   */
  watch (): void {
    if (this.#watcher !== undefined) return
    const name = basename(this.file)
    this.#watcher = watch(dirname(this.file), { persistent: false }, (_event, changed) => {
      if (changed !== null && changed !== name && !String(changed).startsWith('..data')) return
      clearTimeout(this.#debounce)
      // editors write in several steps; wait for the last one
      this.#debounce = setTimeout(() => this.reload(), 100)
      this.#debounce.unref()
    })
    this.#watcher.on('error', () => { /* the directory went away; SIGHUP and the admin API still reload */ })
  }

  close (): void {
    clearTimeout(this.#debounce)
    this.#watcher?.close()
    this.#watcher = undefined
  }
}

function restartNeeded (boot: Policy, next: Policy): string[] {
  const out: string[] = []
  const same = (a: { host: string; port: number }, b: { host: string; port: number }) => a.host === b.host && a.port === b.port
  if (!same(boot.data.server.listen, next.data.server.listen)) out.push('server.listen')
  if (!same(boot.data.admin.listen, next.data.admin.listen)) out.push('admin.listen')
  if (JSON.stringify(boot.data.store) !== JSON.stringify(next.data.store)) out.push('store')
  // tracing is loaded at start or not at all (nothing of it is loaded without the section), and
  // its exporter keeps its collector URL; only sampleRatio follows a reload
  if (boot.data.tracing?.otlp !== next.data.tracing?.otlp) out.push('tracing')
  return out
}

export { formatPolicyError }
