/**
 * Honest policy (issue 7): a section whose capability is not built is a validation error, not a
 * silent no-op. Before, `blocklist`, `abuse`, `breakers`, `probes` and `edge` validated as fine.
 */
import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { formatPolicyError, loadPolicy } from '../../src/policy/load.js'
import { NOT_BUILT } from '../../src/policy/compile.js'

const BASE = `upstreams:
  core: { url: "http://127.0.0.1:9" }
  edge: { url: "http://127.0.0.1:10" }
routes:
  - name: flags
    match: { path: /api/v1/flags/ }
    upstream: core
`

const errorsOf = (yaml: string): string[] => {
  const r = loadPolicy('p.yaml', yaml, {})
  return r.ok ? [] : r.errors.map(formatPolicyError)
}

describe('a section that would do nothing is refused, naming its path', () => {
  it.each([
    ['blocklist', BASE + 'blocklist:\n  - { key: abcdef123, reason: "retry storm" }\n', 'p.yaml:9:3: blocklist: blocking is not built yet: this section would do nothing, remove it'],
    ['abuse', BASE + 'abuse: { rejections: 300 per 1m, blockFor: 15m }\n', 'p.yaml:8:8: abuse: automatic blocking is not built yet: this section would do nothing, remove it'],
    ['breakers', BASE + 'breakers:\n  core: { openFor: 15s }\n', 'p.yaml:9:3: breakers: the circuit breaker is not built yet: this section would do nothing, remove it'],
    ['probes', BASE + 'probes:\n  - { name: flags, path: /api/v1/flags/, key: k, interval: 30s }\n', 'p.yaml:9:3: probes: synthetic probes is not built yet: this section would do nothing, remove it'],
    ['edge with traffic', BASE + '    edge: { percent: 10, keys: [k1] }\n', 'p.yaml:8:11: routes[0].edge: edge routing is not built yet: this section would do nothing, remove it'],
    ['edge that sends nothing', BASE + '    edge: { percent: 0, keys: [] }\n', 'p.yaml:8:11: routes[0].edge: edge routing is not built yet: this section would do nothing, remove it']
  ])('%s', (_name, yaml, expected) => {
    expect(errorsOf(yaml)).toEqual([expected])
  })

  it('empty sections are fine: they claim nothing', () => {
    expect(errorsOf(BASE + 'blocklist: []\nbreakers: {}\nprobes: []\n')).toEqual([])
  })

  it('the table names exactly the capabilities not built', () => {
    expect(NOT_BUILT).toEqual({ blocklist: 'blocking', abuse: 'automatic blocking', breakers: 'the circuit breaker', probes: 'synthetic probes', edge: 'edge routing' })
  })

  it('the shipped config/gateway.yaml uses none of them', () => {
    const r = loadPolicy('gateway.yaml', readFileSync('config/gateway.yaml', 'utf8'), { FLAGGATE_ADMIN_TOKEN: '' })
    expect(r.ok ? [] : r.errors.map(formatPolicyError)).toEqual([])
  })
})
