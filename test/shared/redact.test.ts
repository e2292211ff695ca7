import { describe, expect, it } from 'vitest'
import { redactKey } from '../../src/shared/redact.js'

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
