/**
 * pino, written asynchronously so logging never blocks a request. Lines are batched (up to
 * 8 KiB, or every 250 ms, whichever comes first): one write per batch instead of one per request,
 * while a quiet gateway still logs within a quarter of a second. `LOG_PRETTY=1` pipes through
 * pino-pretty for humans, `LOG_LEVEL` sets the level.
 */
import pino, { type Logger } from 'pino'
import { loggableError } from './redact.js'

const FLUSH_INTERVAL_MS = 250
const BATCH_BYTES = 8192

export function createLogger (env: NodeJS.ProcessEnv = process.env): Logger {
  const level = env.LOG_LEVEL ?? 'info'
  // any `err` (or Error logged first) goes through this: no command arguments, which may hold keys
  const serializers = { err: (e: unknown) => pino.stdSerializers.err(loggableError(e) as Error) }
  const redact = { paths: ['req.headers.authorization', 'req.headers["x-environment-key"]', 'headers.authorization', 'headers["x-environment-key"]'], censor: '[redacted]' }
  if (env.LOG_PRETTY === '1' || env.LOG_PRETTY === 'true') {
    return pino({ level, redact, serializers, transport: { target: 'pino-pretty', options: { colorize: true } } })
  }
  const destination = pino.destination({ dest: 1, sync: false, minLength: BATCH_BYTES })
  setInterval(() => { destination.flush() }, FLUSH_INTERVAL_MS).unref()
  // whatever is still batched when the process ends is written synchronously
  process.once('exit', () => { try { destination.flushSync() } catch {} })
  return pino({ level, redact, serializers, base: { service: 'flaggate' } }, destination)
}

export type { Logger }
