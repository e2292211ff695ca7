/**
 * pino, written asynchronously (sonic-boom on fd 1, not buffered by size: a quiet gateway must still log promptly) so logging never blocks a
 * request; `LOG_PRETTY=1` pipes through pino-pretty for humans, `LOG_LEVEL` sets the level.
 */
import pino, { type Logger } from 'pino'

export function createLogger (env: NodeJS.ProcessEnv = process.env): Logger {
  const level = env.LOG_LEVEL ?? 'info'
  const redact = { paths: ['req.headers.authorization', 'req.headers["x-environment-key"]', 'headers.authorization', 'headers["x-environment-key"]'], censor: '[redacted]' }
  if (env.LOG_PRETTY === '1' || env.LOG_PRETTY === 'true') {
    return pino({ level, redact, transport: { target: 'pino-pretty', options: { colorize: true } } })
  }
  return pino({ level, redact, base: { service: 'flaggate' } }, pino.destination({ dest: 1, sync: false }))
}

export type { Logger }
