/**
 * pino, written asynchronously so logging never blocks a request. Lines are batched (up to
 * 8 KiB, or every 250 ms, whichever comes first): one write per batch instead of one per request,
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
const BATCH_BYTES = 8192

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
  const destination = new LineBatcher(pino.destination({ dest: 1, sync: false }), BATCH_BYTES)
  setInterval(() => { destination.flush() }, FLUSH_INTERVAL_MS).unref()
  // whatever is still batched when the process ends is written synchronously
  process.once('exit', () => { try { destination.flushSync() } catch {} })
  const logger = pino({ level, redact, serializers, base: { service: 'flaggate' } }, destination)
  if (prettyMissing) logger.warn('LOG_PRETTY is set but pino-pretty is not installed (a devDependency): logging JSON; pipe it through `npx pino-pretty` to read it')
  return logger
}

function resolvePretty (): string | undefined {
  try { return createRequire(import.meta.url).resolve('pino-pretty') } catch { return undefined }
}

/**
 * Collects log lines in an array and hands sonic-boom one string per batch. sonic-boom's own
 * batching (`minLength`) appends each line to the pending string and measures that whole string
 * with Buffer.byteLength on every write: a copy and scan of up to 8 KiB per line, 40% of the
 * access log's cost on a cache hit (bench/results.md). Written by hand because sonic-boom has
 * no option for it; everything else (async writes, EAGAIN, flushSync) stays sonic-boom's.
 */
class LineBatcher {
  #lines: string[] = []
  #size = 0
  constructor (readonly out: pino.DestinationStream & { flush (cb?: (err?: Error) => void): void; flushSync (): void }, readonly batchChars: number) {}

  write (line: string): void {
    this.#lines.push(line)
    this.#size += line.length
    if (this.#size >= this.batchChars) this.#handOver()
  }

  #handOver (): void {
    if (this.#lines.length === 0) return
    const batch = this.#lines.join('')
    this.#lines = []
    this.#size = 0
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
