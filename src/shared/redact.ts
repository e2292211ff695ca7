import { createHash } from 'node:crypto'

/**
 * A key as it may appear in logs and metric labels: the first 4 characters and a short hash, so
 * on-call can tell keys apart and grep for one without the secret ever being written down.
 * `ser.` server keys keep their prefix visible as their first 4 characters.
 */
export function redactKey (key: string | undefined): string | undefined {
  if (key === undefined || key === '') return undefined
  const hash = createHash('sha256').update(key).digest('hex').slice(0, 8)
  // never more than half of a key, so a short (test or malformed) key is not shown whole
  return `${key.slice(0, Math.min(4, Math.floor(key.length / 2)))}…${hash}`
}

/**
 * An error as it may be logged: ioredis attaches the failed command (`command.args`: bucket
 * keys, purge messages) to its errors, and those carry environment keys.
 */
export function loggableError (err: unknown): unknown {
  if (err === null || typeof err !== 'object') return err
  const e = err as Error & { code?: unknown; command?: unknown; args?: unknown; previousErrors?: unknown }
  if (e.command === undefined && e.args === undefined && e.previousErrors === undefined) return err
  return { type: e.name, message: e.message, code: e.code, stack: e.stack }
}
