/**
 * What survives a restart, in one local JSON file (`localEvaluation.stateFile`): the outbox
 * (identity writes and analytics sums not yet delivered) and the last document of each listed
 * environment, so a gateway restarted while Core is down still answers. Written whole to a
 * temporary file and renamed (a crash mid-write leaves the previous file), at most once a second
 * while something changed, and on close. Environments and writes are named by digests of their
 * server keys, never the keys.
 */
import { readFileSync } from 'node:fs'
import { mkdir, rename, writeFile } from 'node:fs/promises'
import { dirname } from 'node:path'
import type { OutboxSnapshot } from './outbox.js'

export interface SavedDocument { raw: string; lastModified: string | undefined; confirmedAt: number }
export interface LocalState { v: 1; outbox: OutboxSnapshot; documents: Record<string, SavedDocument> }

export function loadState (file: string): { state?: LocalState; error?: string } {
  let text: string
  try { text = readFileSync(file, 'utf8') } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ENOENT' ? {} : { error: (err as Error).message }
  }
  try {
    const s = JSON.parse(text) as LocalState
    if (s.v !== 1 || typeof s.outbox !== 'object' || !Array.isArray(s.outbox.writes) || typeof s.documents !== 'object') return { error: 'not a flaggate local-evaluation state file (v1)' }
    return { state: s }
  } catch (err) {
    return { error: (err as Error).message }
  }
}

export class StateSaver {
  #dirty = false
  #writing: Promise<void> | undefined
  #timer: NodeJS.Timeout | undefined
  lastError: string | undefined

  constructor (readonly file: string, private readonly snapshot: () => LocalState, everyMs = 1000) {
    this.#timer = setInterval(() => { if (this.#dirty) void this.save() }, everyMs)
    this.#timer.unref()
  }

  changed (): void { this.#dirty = true }

  async save (): Promise<void> {
    if (this.#writing !== undefined) { this.#dirty = true; await this.#writing; return }
    this.#dirty = false
    this.#writing = (async () => {
      const tmp = `${this.file}.${process.pid}.tmp`
      try {
        await mkdir(dirname(this.file), { recursive: true })
        await writeFile(tmp, JSON.stringify(this.snapshot()), { mode: 0o600 })
        await rename(tmp, this.file)
        this.lastError = undefined
      } catch (err) {
        this.lastError = (err as Error).message
        this.#dirty = true
      }
    })()
    try { await this.#writing } finally { this.#writing = undefined }
  }

  async close (): Promise<void> {
    clearInterval(this.#timer)
    await this.#writing
    await this.save()
  }
}
