/**
 * Property: for ANY bytes, loading a policy ends in `{ok:true}` or `{ok:false, errors}` where every
 * error has a file, a line and a column; it never throws, and no error is the catch-all's (which
 * would mean some input made our own pipeline throw). fast-check shrinks a failure to a small case.
 *
 * Inputs: random YAML-ish text, random bytes, and the shipped config/gateway.yaml mutated the way
 * editors, disks and attackers mutate files (byte flips, lost, doubled and swapped lines,
 * truncation, alias bombs and deep nesting pasted in).
 */
import { readFileSync } from 'node:fs'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { loadPolicyBytes } from '../../src/policy/file.js'
import type { PolicyResult } from '../../src/policy/load.js'
import { billionLaughs } from './hostile-files.js'

const SHIPPED = readFileSync('config/gateway.yaml')
const ENV = { FLAGGATE_ADMIN_TOKEN: '' }

function isVerdict (r: PolicyResult): boolean {
  if (r.ok) return typeof r.policy.version === 'string' && r.policy.routes.length > 0
  if (r.errors.length === 0) return false
  return r.errors.every((e) => e.file === 'f.yaml' && Number.isInteger(e.line) && e.line >= 1 && Number.isInteger(e.col) && e.col >= 1 &&
    typeof e.message === 'string' && e.message !== '' && !e.message.startsWith('the policy file could not be read:'))
}

function check (bytes: Uint8Array): void {
  const r = loadPolicyBytes('f.yaml', bytes, ENV)
  if (!isVerdict(r)) throw new Error(`not a verdict: ${JSON.stringify(r.ok ? { ok: true } : r.errors.slice(0, 3))}`)
}

const YAMLISH = ['[', ']', '{', '}', ':', ': ', ',', '- ', ' ', '  ', '\n', '\n  ', '\t', '&a ', '*a', '&b ', '*b', '!!str ', '!foo ', '|', '>',
  "'", '"', '#', '%YAML 1.2\n', '@', '? ', '---\n', '...\n', 'a', 'key', '1', '1.5', '-1', 'true', 'null', '~', '${X}', '${Y:-1s}', '\\',
  '<<: ', 'routes', 'upstreams', 'core', 'url', 'limit', 'rate', '10/s', 'burst', '__proto__', '\ufeff', '\u0000', '\u2028', 'é', '😀']

const lines = (b: Buffer): Buffer[] => {
  const out: Buffer[] = []
  let start = 0
  for (let i = 0; i < b.length; i++) if (b[i] === 0x0a) { out.push(b.subarray(start, i + 1)); start = i + 1 }
  if (start < b.length) out.push(b.subarray(start))
  return out
}

const PASTES = [
  billionLaughs(),
  'x: ' + '['.repeat(200) + ']'.repeat(200) + '\n',
  Array.from({ length: 100 }, (_, i) => ' '.repeat(i) + 'k:').join('\n') + '\n',
  'a: &a [1, 2]\nb: [*a, *a, *a]\n',
  '<<: *nowhere\n',
  '---\nmore: doc\n',
  '\t- tab\n'
]

type Mutation =
  | { op: 'flip'; at: number; byte: number }
  | { op: 'delete'; line: number }
  | { op: 'duplicate'; line: number }
  | { op: 'swap'; a: number; b: number }
  | { op: 'truncate'; at: number }
  | { op: 'paste'; line: number; text: number }
  | { op: 'indent'; line: number; by: number }

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ op: fc.constant('flip' as const), at: fc.nat(), byte: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ op: fc.constant('delete' as const), line: fc.nat() }),
  fc.record({ op: fc.constant('duplicate' as const), line: fc.nat() }),
  fc.record({ op: fc.constant('swap' as const), a: fc.nat(), b: fc.nat() }),
  fc.record({ op: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({ op: fc.constant('paste' as const), line: fc.nat(), text: fc.nat({ max: PASTES.length - 1 }) }),
  fc.record({ op: fc.constant('indent' as const), line: fc.nat(), by: fc.integer({ min: -4, max: 4 }) })
)

function mutate (source: Buffer, ms: readonly Mutation[]): Buffer {
  let b = Buffer.from(source)
  for (const m of ms) {
    const ls = lines(b)
    const n = Math.max(1, ls.length)
    switch (m.op) {
      case 'flip': if (b.length > 0) b[m.at % b.length] = m.byte; break
      case 'delete': ls.splice(m.line % n, 1); b = Buffer.concat(ls); break
      case 'duplicate': if (ls.length > 0) { ls.splice(m.line % n, 0, ls[m.line % n]!); b = Buffer.concat(ls) } break
      case 'swap': if (ls.length > 1) { const i = m.a % n; const j = m.b % n; [ls[i], ls[j]] = [ls[j]!, ls[i]!]; b = Buffer.concat(ls) } break
      case 'truncate': b = b.subarray(0, b.length === 0 ? 0 : m.at % b.length); break
      case 'paste': ls.splice(m.line % n, 0, Buffer.from(PASTES[m.text]!)); b = Buffer.concat(ls); break
      case 'indent': {
        const i = m.line % n
        const l = ls[i]
        if (l !== undefined) ls[i] = m.by >= 0 ? Buffer.concat([Buffer.alloc(m.by, 0x20), l]) : l.subarray(Math.min(-m.by, l.length))
        b = Buffer.concat(ls)
        break
      }
    }
  }
  return b
}

describe('fuzz: any bytes give a verdict', () => {
  it('the unmutated shipped config is valid (so mutations start from a good file)', () => {
    expect(loadPolicyBytes('f.yaml', SHIPPED, ENV).ok).toBe(true)
  })

  it('random YAML-ish text', () => {
    fc.assert(fc.property(fc.array(fc.constantFrom(...YAMLISH), { maxLength: 120 }), (parts) => { check(Buffer.from(parts.join(''))) }), { numRuns: 2500 })
  })

  it('random bytes', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 400 }), (bytes) => { check(bytes) }), { numRuns: 1000 })
  })

  it('the shipped config, mutated', () => {
    fc.assert(fc.property(fc.array(mutation, { minLength: 1, maxLength: 6 }), (ms) => { check(mutate(SHIPPED, ms)) }), { numRuns: 1500 })
  }, 120_000)
})
