/**
 * responseHeadersFromRaw: the proxy's answer headers straight from undici's raw pairs must be
 * what responseHeaders makes of the parsed object, answer after answer (its memo of the last
 * answer's names by position must never hand one answer's name to another).
 */
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { responseHeaders, responseHeadersFromRaw } from '../../src/upstream/headers.js'

/** What undici's request() gave: lower-cased names, repeats as arrays. */
function parsed (pairs: Array<[string, string]>): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {}
  for (const [n, v] of pairs) {
    const k = n.toLowerCase()
    if (k === '__proto__') continue
    const p = Object.hasOwn(out, k) ? out[k] : undefined
    out[k] = p === undefined ? v : Array.isArray(p) ? [...p, v] : [p, v]
  }
  return out
}
const raw = (pairs: Array<[string, string]>): Buffer[] => pairs.flatMap(([n, v]) => [Buffer.from(n, 'latin1'), Buffer.from(v, 'latin1')])
const plain = (h: object): Record<string, unknown> => ({ ...h })

describe('responseHeadersFromRaw', () => {
  it('names and values of the same length at the same position in consecutive answers stay each answer\'s own', () => {
    const a = responseHeadersFromRaw(raw([['Content-Type', 'application/json'], ['X-Aaaa', '1']]), 'core')
    const b = responseHeadersFromRaw(raw([['Content-Type', 'application/jsox'], ['X-Bbbb', '2']]), 'core')
    const c = responseHeadersFromRaw(raw([['X-BBBB', '3'], ['X-Aaaa', '4']]), 'edge')
    expect(plain(a)).toEqual({ 'content-type': 'application/json', 'x-aaaa': '1', 'x-flaggate-upstream': 'core' })
    expect(plain(b)).toEqual({ 'content-type': 'application/jsox', 'x-bbbb': '2', 'x-flaggate-upstream': 'core' })
    expect(plain(c)).toEqual({ 'x-bbbb': '3', 'x-aaaa': '4', 'x-flaggate-upstream': 'edge' })
  })

  it('hop-by-hop and Connection-listed headers go, repeats stay apart, Object\'s method names are plain headers', () => {
    const h = responseHeadersFromRaw(raw([['Connection', 'close, X-Secret'], ['Keep-Alive', 'timeout=5'], ['X-Secret', 's'], ['Set-Cookie', 'a=1'], ['set-cookie', 'b=2'], ['constructor', 'c'], ['__proto__', 'p'], ['Transfer-Encoding', 'chunked']]), 'core')
    expect(plain(h)).toEqual({ 'set-cookie': ['a=1', 'b=2'], constructor: 'c', 'x-flaggate-upstream': 'core' })
  })

  it('is responseHeaders of the parsed pairs, for any answers in a row', () => {
    const name = fc.oneof(
      fc.constantFrom('Content-Type', 'content-length', 'Set-Cookie', 'Vary', 'Connection', 'Keep-Alive', 'X-A', 'X-B', 'x-a', 'constructor', 'toString', 'Transfer-Encoding'),
      fc.stringMatching(/^[A-Za-z][A-Za-z0-9-]{0,12}$/))
    const value = fc.stringMatching(/^[ -~]{0,20}$/)
    const answer = fc.array(fc.tuple(name, value), { maxLength: 12 })
    fc.assert(fc.property(fc.array(answer, { minLength: 1, maxLength: 6 }), (answers) => {
      for (const pairs of answers) {
        expect(plain(responseHeadersFromRaw(raw(pairs), 'core'))).toEqual(plain(responseHeaders(parsed(pairs), 'core')))
      }
    }), { numRuns: 300 })
  })
})
