/**
 * The compressed forms of a cached answer, made off the request path.
 *
 * node:zlib's asynchronous `brotliCompress` and `gzip` run on libuv's threadpool: the event loop
 * only hands the buffer over and gets the result back, so a 2 MB document does not stall other
 * requests while it is compressed (measured in bench/compression-levels.ts: docs/compression.md).
 * The threadpool (4 threads by default) is shared with DNS lookups and file reads, and its threads
 * with the event loop for the machine's cores, so {@link MAX_CONCURRENT_JOBS} entry is compressed at once, and at most {@link MAX_QUEUED_JOBS}
 * wait: past that a request is dropped (the entry stays identity and is asked for again by its
 * next answer).
 *
 * Forms belong to one entry version: a job is keyed by the entry object and its result is given
 * back for that object only, so a document that changed while its old version was compressed
 * never gets the old version's bytes (the cache checks that the object is still the one stored).
 */
import { promisify } from 'node:util'
import zlib from 'node:zlib'
import { brotliOptions, gzipOptions } from './levels.js'

const brotliCompress = promisify(zlib.brotliCompress)
const gzipCompress = promisify(zlib.gzip)

export type Coding = 'br' | 'gzip'

export interface CompressedBodies { readonly br: Buffer; readonly gzip: Buffer }

export const MAX_CONCURRENT_JOBS = 1
export const MAX_QUEUED_JOBS = 256

/**
 * Both forms of `body`, compressed on the threadpool at the measured levels, one after the other:
 * one threadpool thread per job, so on a small machine the compression competes with the event
 * loop for one core, not two.
 */
export async function compressForms (body: Buffer): Promise<CompressedBodies> {
  const br = await brotliCompress(body, brotliOptions(body.length))
  const gzip = await gzipCompress(body, gzipOptions)
  return { br, gzip }
}

/**
 * The strong validator of a compressed form: the identity ETag with the coding appended inside the
 * quotes (`"<sha256>.br"`), as Apache's mod_deflate does. Each representation has its own ETag
 * (RFC 9110 8.8.3: a strong validator changes with the content-coding), derived rather than hashed
 * again, and a client's If-None-Match matches only the representation it was given.
 */
export function formEtag (identityEtag: string, coding: Coding): string {
  return `${identityEtag.slice(0, -1)}.${coding === 'br' ? 'br' : 'gz'}"`
}

interface Job { readonly entry: object; readonly body: Buffer; readonly done: (forms: CompressedBodies) => void }

export interface CompressorStats { running: number; queued: number; made: number; dropped: number; failed: number }

/** Makes forms one entry at a time per slot, each entry once while its job is pending. */
export class Compressor {
  readonly #pending = new WeakSet<object>()
  readonly #queue: Job[] = []
  #running = 0
  #made = 0
  #dropped = 0
  #failed = 0
  readonly #make: (body: Buffer) => Promise<CompressedBodies>
  readonly #onError: ((err: unknown) => void) | undefined

  constructor (opts: { make?: (body: Buffer) => Promise<CompressedBodies>; onError?: (err: unknown) => void } = {}) {
    this.#make = opts.make ?? compressForms
    this.#onError = opts.onError
  }

  /**
   * Asks for `entry`'s forms; `done` gets them (later, never synchronously) unless the job is
   * dropped or fails. A second request for an entry whose job is pending does nothing.
   */
  request (entry: object, body: Buffer, done: (forms: CompressedBodies) => void): void {
    if (this.#pending.has(entry)) return
    if (this.#queue.length >= MAX_QUEUED_JOBS) { this.#dropped++; return }
    this.#pending.add(entry)
    this.#queue.push({ entry, body, done })
    this.#next()
  }

  /** Is a job for `entry` queued or running? */
  pending (entry: object): boolean { return this.#pending.has(entry) }

  stats (): CompressorStats {
    return { running: this.#running, queued: this.#queue.length, made: this.#made, dropped: this.#dropped, failed: this.#failed }
  }

  #next (): void {
    while (this.#running < MAX_CONCURRENT_JOBS && this.#queue.length > 0) {
      const job = this.#queue.shift()!
      this.#running++
      this.#make(job.body).then((forms) => {
        this.#made++
        // a throwing callback must not become an unhandled rejection (that would end the process)
        try { job.done(forms) } catch (err) { this.#onError?.(err) }
      }, (err: unknown) => {
        this.#failed++
        this.#onError?.(err)
      }).finally(() => {
        this.#running--
        this.#pending.delete(job.entry)
        this.#next()
      })
    }
  }
}
