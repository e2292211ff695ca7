/**
 * Without Redis, runtime and automatic blocks survive a restart in a local JSON file, written
 * whole to a temporary file and renamed over the old one (a crash mid-write leaves the previous
 * file intact). Writes are serialised: a change during a write schedules one more write.
 *
 * Keys are stored as digests, as in Redis: the file may be backed up or copied around.
 *
 * `flush()` lets the admin API refuse a runtime block that this file cannot keep (a read-only
 * directory in a container): a block that silently vanishes at the next restart is worse than a
 * clear 503 telling the operator to set FLAGGATE_STATE_FILE to a writable path or use Redis.
 *
 * With Redis, the same file is this replica's last copy of the fleet's blocks (`mirror`): every
 * change the replica learns, its own and the others', is written here, so a replica started while
 * Redis is down enforces the blocks it last knew until Redis answers (redis-sync.ts). There a
 * file that cannot be written only loses that fallback (Redis keeps the blocks), so nothing is
 * refused for it: the status and readiness say so.
 */
import { mkdirSync, readFileSync } from 'node:fs'
import { rename, writeFile, mkdir } from 'node:fs/promises'
import { dirname } from 'node:path'
import { blockFromJson, type Block } from './core.js'
import type { BlockRegistry } from './registry.js'
import type { BlockBackend, BlockLogger } from './backend.js'

interface StateFileContent { v: 1; savedAt: string; blocks: Block[] }

export class StateFileBackend implements BlockBackend {
  readonly file: string
  readonly #registry: BlockRegistry
  readonly #log: BlockLogger
  #writing: Promise<void> | undefined
  #dirty = false
  #lastError: string | undefined
  #lastSavedAt: string | undefined
  #loading = false
  /** the blocks the file gave at start (still in force then) */
  restored: Block[] = []
  readonly #mirror: boolean

  constructor (file: string, registry: BlockRegistry, logger: BlockLogger, opts: { mirror?: boolean } = {}) {
    this.file = file
    this.#registry = registry
    this.#log = logger
    this.#mirror = opts.mirror === true
  }

  /** Loads the blocks of the previous run (synchronously, before the listener opens). */
  start (): void {
    this.#load()
    // a mirror is written at once: a directory that cannot take it shows in the status from the start
    if (this.#mirror) this.#save()
  }

  #load (): void {
    let text: string
    try {
      text = readFileSync(this.file, 'utf8')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
        this.#lastError = (err as Error).message
        this.#log.error({ file: this.file, err: (err as Error).message }, 'blocks state file unreadable: runtime blocks of the previous run are not restored')
      }
      this.#probeWritable()
      return
    }
    let dropped = 0
    // the registry tells every upsert below; rewriting the file it is being read from would only churn
    this.#loading = true
    try {
      const content = JSON.parse(text) as Partial<StateFileContent> | null
      const blocks: unknown = typeof content === 'object' && content !== null ? content.blocks : undefined
      for (const raw of Array.isArray(blocks) ? blocks : []) {
        const b = blockFromJson(raw)
        if (b !== undefined && this.#registry.upsert(b)) this.restored.push(b); else dropped++
      }
    } catch (err) {
      this.#lastError = `${this.file} is not valid JSON: ${(err as Error).message}`
      this.#log.error({ file: this.file, err: (err as Error).message }, 'blocks state file corrupt: runtime blocks of the previous run are not restored; it will be overwritten on the next change')
      return
    } finally {
      this.#loading = false
    }
    this.#log.info({ file: this.file, restored: this.restored.length, expiredOrInvalid: dropped }, this.#mirror
      ? 'blocks last known restored from the state file: in force until Redis answers'
      : 'runtime blocks restored from the state file')
  }

  /** Mirror mode: the registry changed (a block added, lifted, expired, here or from Redis). */
  changed (): void { if (!this.#loading) this.#save() }

  /** Mirror mode: why the last copy of the blocks is not kept, for readiness; undefined when it is. */
  problem (): string | undefined {
    return this.#lastError === undefined ? undefined : `blocks state file ${this.file} cannot be written (${this.#lastError}): a replica restarted while Redis is down will not enforce the blocks it last knew`
  }

  async ready (): Promise<void> {}

  added (): void { this.#save() }
  removed (): void { this.#save() }
  expired (): void { this.#save() }

  status (): Record<string, unknown> {
    return { kind: 'file', file: this.file, ...(this.#lastSavedAt !== undefined ? { savedAt: this.#lastSavedAt } : {}), ...(this.#lastError !== undefined ? { lastError: this.#lastError } : {}) }
  }

  async flush (): Promise<string | undefined> {
    while (this.#writing !== undefined) await this.#writing
    return this.#lastError === undefined ? undefined : `${this.file}: ${this.#lastError}`
  }

  async close (): Promise<void> {
    while (this.#writing !== undefined) await this.#writing
  }

  /** Says at start, not at the first block, when the directory cannot be written. */
  #probeWritable (): void {
    try { mkdirSync(dirname(this.file), { recursive: true }) } catch (err) {
      this.#lastError = (err as Error).message
      this.#log.warn({ file: this.file, err: (err as Error).message }, this.#mirror
        ? 'blocks state file directory cannot be created: a replica restarted while Redis is down will not enforce the blocks it last knew (set blocking.stateFile to a writable path)'
        : 'blocks state file directory cannot be created: runtime blocks will not survive a restart (set blocking.stateFile to a writable path, or use Redis)')
    }
  }

  #save (): void {
    if (this.#writing !== undefined) { this.#dirty = true; return }
    this.#writing = this.#write().finally(() => {
      this.#writing = undefined
      if (this.#dirty) { this.#dirty = false; this.#save() }
    })
  }

  async #write (): Promise<void> {
    const content: StateFileContent = { v: 1, savedAt: new Date(this.#registry.clock()).toISOString(), blocks: this.#registry.shared() }
    const tmp = `${this.file}.${process.pid}.tmp`
    try {
      await mkdir(dirname(this.file), { recursive: true })
      await writeFile(tmp, JSON.stringify(content, null, 1) + '\n', { mode: 0o600 })
      await rename(tmp, this.file)
      this.#lastSavedAt = content.savedAt
      if (this.#lastError !== undefined) this.#log.info({ file: this.file }, 'blocks state file written again')
      this.#lastError = undefined
    } catch (err) {
      if (this.#lastError !== (err as Error).message) {
        this.#log.error({ file: this.file, err: (err as Error).message }, this.#mirror
          ? 'blocks state file not written: Redis keeps the blocks, but a replica restarted while Redis is down will not enforce them'
          : 'blocks state file not written: blocks are in force but will not survive a restart')
      }
      this.#lastError = (err as Error).message
    }
  }
}
