/**
 * pino, written asynchronously so logging never blocks a request. Lines are batched (up to
 * 64 KiB, or every 250 ms, whichever comes first): one write per batch instead of one per request,
 * while a quiet gateway still logs within a quarter of a second. `LOG_PRETTY=1` pipes through
 * pino-pretty for humans, `LOG_LEVEL` sets the level.
 *
 * pino-pretty stays a devDependency (a production install ships JSON logs and does not need its
 * seven dependencies): it is looked up only when LOG_PRETTY asks for it, and when it is not
 * installed the gateway says so once and logs JSON rather than failing to start.
 */
import { createRequire } from 'node:module'
import pino, { type Logger } from 'pino'
import { loggableError } from './redact.js'

const FLUSH_INTERVAL_MS = 250
const BATCH_BYTES = 64 * 1024

export function createLogger (env: NodeJS.ProcessEnv = process.env): Logger {
  const level = env.LOG_LEVEL ?? 'info'
  // any `err` (or Error logged first) goes through this: no command arguments, which may hold keys
  const serializers = { err: (e: unknown) => pino.stdSerializers.err(loggableError(e) as Error) }
  const redact = { paths: ['req.headers.authorization', 'req.headers["x-environment-key"]', 'headers.authorization', 'headers["x-environment-key"]'], censor: '[redacted]' }
  let prettyMissing = false
  if (env.LOG_PRETTY === '1' || env.LOG_PRETTY === 'true') {
    const target = resolvePretty()
    if (target !== undefined) return pino({ level, redact, serializers, transport: { target, options: { colorize: true } } })
    prettyMissing = true
  }
  const destination = new LineBatcher(pino.destination({ dest: 1, sync: false, contentMode: 'buffer' }) as never, BATCH_BYTES)
  setInterval(() => { destination.flush() }, FLUSH_INTERVAL_MS).unref()
  // whatever is still batched when the process ends is written synchronously
  process.once('exit', () => { try { destination.flushSync() } catch {} })
  const logger = pino({ level, redact, serializers, base: { service: 'flaggate' } }, destination)
  lineSinks.set(logger, (line) => { destination.write(line) })
  if (prettyMissing) logger.warn('LOG_PRETTY is set but pino-pretty is not installed (a devDependency): logging JSON; pipe it through `npx pino-pretty` to read it')
  return logger
}

const lineSinks = new WeakMap<Logger, (line: string) => void>()

/**
 * Where a logger made by createLogger writes its lines, for the one line that is written on every
 * request (the access log, shared/access-log.ts), which serialises its fixed shape itself rather
 * than through pino's generic object walk. Undefined for any other logger (pretty, tests).
 */
export function lineSinkOf (logger: Logger): ((line: string) => void) | undefined {
  return lineSinks.get(logger)
}

function resolvePretty (): string | undefined {
  try { return createRequire(import.meta.url).resolve('pino-pretty') } catch { return undefined }
}

/**
 * Encodes log lines straight into a Buffer and hands sonic-boom (in buffer mode) one Buffer per
 * batch. Lines kept as strings cost a join into one batch string, then its UTF-8 conversion on
 * the way to write(2), and a young-generation full of 8 KiB strings: about 4 µs of CPU per
 * request on a cache hit, an eighth of it (bench/results.md, "access log"). sonic-boom has no
 * option for this; everything else (async writes, partial writes, EAGAIN, flushSync) stays its.
 */
class LineBatcher {
  #buf: Buffer
  #used = 0
  constructor (readonly out: pino.DestinationStream & { write (b: Buffer): boolean; flush (cb?: (err?: Error) => void): void; flushSync (): void }, readonly batchBytes: number) {
    this.#buf = Buffer.allocUnsafe(batchBytes)
  }

  write (line: string): void {
    // a UTF-16 unit is at most 3 bytes of UTF-8; measure exactly only when that might not fit
    if (this.#used + line.length * 3 > this.batchBytes) {
      const bytes = Buffer.byteLength(line)
      if (this.#used + bytes > this.batchBytes) {
        this.#handOver()
        if (bytes > this.batchBytes) { this.out.write(Buffer.from(line)); return }
      }
    }
    this.#used += this.#buf.write(line, this.#used)
    if (this.#used >= this.batchBytes) this.#handOver()
  }

  #handOver (): void {
    if (this.#used === 0) return
    // sonic-boom keeps the Buffer until written: the next batch gets a new one
    const batch = this.#buf.subarray(0, this.#used)
    this.#buf = Buffer.allocUnsafe(this.batchBytes)
    this.#used = 0
    this.out.write(batch)
  }

  flush (cb?: (err?: Error) => void): void {
    this.#handOver()
    this.out.flush(cb)
  }

  flushSync (): void {
    this.#handOver()
    this.out.flushSync()
  }
}

export type { Logger }

/**
 * The one logger interface of a component: the subset of pino (and fastify's logger) that the
 * gateway's components write to, so a test can hand in a recording one.
 */
export interface ComponentLogger {
  info (obj: object, msg: string): void
  warn (obj: object, msg: string): void
  error (obj: object, msg: string): void
}

const LOG_METHODS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace'] as const

/**
 * fastify's per-request logger (`request.log`), made only when a request logs something. fastify
 * asks for a pino child carrying the request id on every request; the gateway logs from a request
 * only on errors and shadow limits, and making that child (its bindings serialised, a new object
 * on pino's prototype chain) was about a microsecond of every cache hit. Pass as fastify's
 * `childLoggerFactory`.
 */
export function lazyChildLogger (logger: Logger, bindings: pino.Bindings, opts: pino.ChildLoggerOptions): Logger {
  return new LazyChild(logger, bindings, opts) as unknown as Logger
}

class LazyChild {
  #child: Logger | undefined
  constructor (readonly parent: Logger, readonly bindings: pino.Bindings, readonly opts: pino.ChildLoggerOptions) {}
  get real (): Logger { return (this.#child ??= this.parent.child(this.bindings, this.opts)) }
  get level (): string { return this.#child?.level ?? this.opts.level ?? this.parent.level }
  set level (v: string) { this.real.level = v }
  isLevelEnabled (level: string): boolean { return this.real.isLevelEnabled(level) }
  child (bindings: pino.Bindings, opts?: pino.ChildLoggerOptions): Logger { return this.real.child(bindings, opts) }
  silent (): void {}
}
for (const m of LOG_METHODS) {
  Object.defineProperty(LazyChild.prototype, m, {
    value: function (this: LazyChild, ...args: unknown[]): void { (this.real[m] as (...a: unknown[]) => void)(...args) },
    writable: true,
    configurable: true
  })
}
