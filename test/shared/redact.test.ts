import { describe, expect, it } from 'vitest'
import { loggableError, redactKey } from '../../src/shared/redact.js'

describe('redactKey', () => {
  it('keeps the first 4 characters and a short hash', () => {
    expect(redactKey('ser.dev_server_key')).toMatch(/^ser\.…[0-9a-f]{8}$/)
    expect(redactKey('ser.dev_server_key')).toBe(redactKey('ser.dev_server_key'))
    expect(redactKey('ser.dev_server_kez')).not.toBe(redactKey('ser.dev_server_key'))
  })
  it('never shows more than half of a short key', () => {
    expect(redactKey('abc')).toMatch(/^a…[0-9a-f]{8}$/)
    expect(redactKey('abcdef')).toMatch(/^abc…[0-9a-f]{8}$/)
  })
  it('has nothing to redact when there is no key', () => {
    expect(redactKey(undefined)).toBeUndefined()
    expect(redactKey('')).toBeUndefined()
  })
})

describe('loggableError', () => {
  it('drops the command arguments ioredis attaches to a reply error (they hold keys)', async () => {
    const { Redis } = await import('ioredis')
    const { inject } = await import('vitest')
    const pino = (await import('pino')).default
    const { Writable } = await import('node:stream')
    const redis = new Redis(inject('redisUrl'), { lazyConnect: true })
    await redis.connect()
    try {
      const err = await redis.set('flaggate-test:{kser.secret_server_key}', 'v', 'PX', -1).catch((e: unknown) => e)
      expect(JSON.stringify((err as { command: { args: unknown } }).command.args)).toContain('ser.secret_server_key')
      const lines: string[] = []
      const sink = new Writable({ write (c: Buffer, _e, cb) { lines.push(c.toString()); cb() } })
      const log = pino({ serializers: { err: (e: unknown) => pino.stdSerializers.err(loggableError(e) as Error) } }, sink)
      log.warn({ err }, 'redis error')
      log.warn(err as Error, 'redis error as first argument')
      expect(lines).toHaveLength(2)
      expect(lines.join('')).not.toContain('ser.secret_server_key')
      expect(lines[0]).toContain('invalid expire time')
    } finally { redis.disconnect() }
  })
})
