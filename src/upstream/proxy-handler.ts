/**
 * The proxy's side of undici's dispatch API (ProxyHandler), split from client.ts: how an
 * upstream answer is read (whole, or streamed) and how long it may keep its pool connection
 * while the client does not read (held-answers.ts).
 */
import { Readable } from 'node:stream'
import { errors as undiciErrors, type Dispatcher } from 'undici'
import { responseHeadersFromRaw } from './headers.js'
import { ANSWER_BUFFER_BYTES } from './held-answers.js'

/** A proxied answer, its headers already as the client gets them: a small one read whole, any other still streaming (see ProxyHandler). */
export interface ProxiedResponse {
  statusCode: number
  headers: Record<string, string | string[]>
  body: Buffer | Readable
  /** when the response headers arrived: the attempt's latency ends here, not when a read-whole body did */
  headersAt: bigint
}

/** What a streamed answer past ANSWER_BUFFER_BYTES asks before it waits on its client (held-answers.ts). */
export interface AnswerHold {
  /** true: this answer may hold its connection until the client reads; false: it is cut */
  tryHold: () => boolean
  release: () => void
  /** told when an answer is cut */
  cut: () => void
}

/** Answers up to this many bytes with a Content-Length are read whole before they are sent. */
export const BUFFERED_BODY_BYTES = 64 * 1024

/**
 * The proxy's side of undici's dispatch API, in place of `dispatcher.request()`.
 *
 * A small answer of known length (most SDK answers: flags, identities, traits) is read whole and
 * sent with its headers in one write, as NGINX's proxy_buffering does: piping a stream costs
 * listeners, end-of-stream tracking and a write per chunk. request() would wrap every answer in
 * its body stream (an AsyncResource, a Readable, the header object parsed) before we read it
 * back out; here the chunks go straight into an array (bench/results.md, fifth round). A failure
 * while reading it becomes our 502/504, since nothing has been sent yet.
 * (Only with a Content-Type: fastify gives a Buffer without one application/octet-stream, and an
 * answer must reach the client with the headers Core gave it.)
 *
 * Larger, unsized and HEAD answers stream: a Readable fed by onData. Up to ANSWER_BUFFER_BYTES
 * wait in it whatever the client's pace, so the pool connection goes back as fast as the upstream
 * sends; past that, backpressure (undici stops reading the socket until read() resumes it), which
 * holds the connection: only `hold` allows that, else the answer is cut (held-answers.ts).
 * Destroying the stream (the client went away) aborts the upstream request.
 */
export class ProxyHandler implements Dispatcher.DispatchHandler {
  #abort: ((err?: Error) => void) | undefined
  #chunks: Buffer[] | undefined
  #size = 0
  #stream: Readable | undefined
  #status = 0
  #headers: Record<string, string | string[]> | undefined
  #headersAt = 0n
  #done = false
  /** response headers (not a 1xx) have arrived */
  answered = false

  #holding = false

  constructor (
    private readonly upstream: string,
    private readonly head: boolean,
    private readonly resolve: (res: ProxiedResponse) => void,
    private readonly reject: (err: unknown) => void,
    private readonly hold?: AnswerHold
  ) {}

  onConnect (abort: (err?: Error) => void): void { this.#abort = abort }

  onHeaders (statusCode: number, rawHeaders: Buffer[] | string[] | null, resume: () => void): boolean {
    if (statusCode < 200) return true // 1xx: informational, the answer follows
    // a status no HTTP client may relay (999): the upstream is broken, a 502, never our 500
    if (statusCode > 599) { this.reject(invalidStatus(statusCode)); this.#abort?.(invalidStatus(statusCode)); return false }
    this.answered = true
    const headersAt = this.#headersAt = process.hrtime.bigint()
    // the client's headers, under the one header policy, built once from the raw pairs
    const headers = responseHeadersFromRaw(rawHeaders ?? [], this.upstream)
    const declared = headers['content-length']
    if (!this.head && typeof declared === 'string' && Number(declared) <= BUFFERED_BODY_BYTES && headers['content-type'] !== undefined) {
      this.#status = statusCode
      this.#headers = headers
      this.#chunks = []
      return true
    }
    this.#stream = new Readable({
      read: () => { resume() },
      destroy: (err, cb) => {
        this.#release()
        if (!this.#done) { this.#done = true; this.#abort?.(err ?? new undiciErrors.RequestAbortedError()) }
        cb(err)
      }
    })
    // handed over with its first bytes (or its end): a framing error before them (a bad chunk
    // size) is still the upstream's 502, not a stream that fails under fastify's 500
    this.#pending = { statusCode, headers, body: this.#stream, headersAt }
    return true
  }

  #pending: ProxiedResponse | undefined
  #handOver (): void {
    const p = this.#pending
    if (p !== undefined) { this.#pending = undefined; this.resolve(p) }
  }

  onData (chunk: Buffer): boolean {
    if (this.#chunks !== undefined) { this.#chunks.push(chunk); this.#size += chunk.length; return true }
    const stream = this.#stream
    if (stream === undefined) return true
    stream.push(chunk)
    this.#handOver()
    // within the buffer: keep reading, whatever the client's pace
    if (stream.readableLength <= ANSWER_BUFFER_BYTES) return true
    if (this.#holding || this.hold === undefined) return false
    if (this.hold.tryHold()) { this.#holding = true; return false }
    // this client already holds its share of the pool with answers it does not read
    this.hold.cut()
    stream.destroy(new Error('answer cut: its client already holds its share of upstream connections with answers it does not read'))
    return false
  }

  #release (): void {
    if (this.#holding) { this.#holding = false; this.hold?.release() }
  }

  onComplete (): void {
    this.#done = true
    this.#release()
    const chunks = this.#chunks
    if (chunks !== undefined) {
      this.resolve({ statusCode: this.#status, headers: this.#headers!, body: chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, this.#size), headersAt: this.#headersAt })
    } else {
      this.#stream?.push(null)
      this.#handOver()
    }
  }

  onError (err: Error): void {
    this.#done = true
    this.#release()
    // before the answer was handed over (or while a small one was read): the promise says it
    if (this.#stream === undefined || this.#pending !== undefined) { this.#pending = undefined; this.#stream?.on('error', () => {}); this.#stream?.destroy(); this.reject(err) } else this.#stream.destroy(err)
  }
}

/** An upstream status outside 100-599: mapped to 502 FLAGGATE_UPSTREAM_UNREACHABLE by toGatewayError. */
export function invalidStatus (status: number): Error {
  return Object.assign(new Error(`the upstream answered with an invalid status code ${status}`), { code: 'FLAGGATE_INVALID_UPSTREAM_STATUS' })
}
