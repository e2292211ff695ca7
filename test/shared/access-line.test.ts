/**
 * The access line is serialised by hand (shared/access-log.ts accessLine); it must be, byte for
 * byte, what pino writes for the same fields with flaggate's logger settings, whatever a client
 * put in the values that come from it (request id, path, key, forwarded address).
 */
import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import pino from 'pino'
import { Writable } from 'node:stream'
import { accessLine, type AccessLogFields } from '../../src/observe/access-log.js'

function pinoLine (fields: AccessLogFields, time: number): string {
  let out = ''
  const dest = new Writable({ write (chunk: Buffer, _enc, cb) { out += chunk.toString(); cb() } })
  const logger = pino({ level: 'info', base: { service: 'flaggate' }, timestamp: () => `,"time":${time}` }, dest)
  // pino writes synchronously to a plain Writable
  logger.info(fields, 'request')
  return out
}

const text = fc.oneof(fc.string(), fc.string({ unit: 'binary' }), fc.constantFrom('a"b', 'a\\b', '\u2028', '\ud800', 'ser.…4f7e880d', '/api/v1/flags/?x=1'))
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/
const opt = <T>(a: fc.Arbitrary<T>) => fc.option(a, { nil: undefined })

describe('access line', () => {
  it('is what pino writes for the same fields, and valid JSON where pino writes a lone surrogate raw', () => {
    fc.assert(fc.property(
      fc.record({
        reqId: text, route: text, method: text, url: text, status: fc.integer({ min: 100, max: 599 }),
        upstream: text, decision: text, cache: opt(text), limitedBy: opt(text),
        upstreamMs: opt(fc.integer({ min: 0, max: 1e6 }).map((n) => n / 10)), totalMs: fc.integer({ min: 0, max: 1e6 }).map((n) => n / 10),
        ip: text, key: opt(text)
      }),
      fc.integer({ min: 0, max: 2 ** 45 }),
      (fields, time) => {
        const line = accessLine(fields, time)
        // a lone surrogate: pino writes it raw (it becomes U+FFFD on the way out); ours is
        // escaped, so the line stays valid JSON that reads back as exactly the value
        if (LONE_SURROGATE.test(Object.values(fields).join(''))) {
          const back = JSON.parse(line) as Record<string, unknown>
          for (const [k, v] of Object.entries(fields)) expect(back[k]).toBe(v)
          return
        }
        expect(line).toBe(pinoLine(fields, time))
      }
    ), { numRuns: 2000 })
  })
})
