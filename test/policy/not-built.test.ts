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
    match: { methods: [GET], path: /api/v1/flags/ }
    upstream: core
`

const errorsOf = (yaml: string): string[] => {
  const r = loadPolicy('p.yaml', yaml, {})
  return r.ok ? [] : r.errors.map(formatPolicyError)
}

type Capability = 'blocklist' | 'abuse' | 'breakers' | 'probes' | 'edge'
/** Each capability's section, and the error it gets while the capability is not built. */
const SECTIONS: Record<Capability, { yaml: string; error: string }> = {
  blocklist: { yaml: BASE + 'blocklist:\n  - { key: abcdef123, reason: "retry storm" }\n', error: 'p.yaml:9:3: blocklist: blocking is not built yet: this section would do nothing, remove it' },
  abuse: { yaml: BASE + 'abuse: { rejections: 300 per 1m, blockFor: 15m }\n', error: 'p.yaml:8:8: abuse: automatic blocking is not built yet: this section would do nothing, remove it' },
  breakers: { yaml: BASE + 'breakers:\n  core: { openFor: 15s }\n', error: 'p.yaml:9:3: breakers: the circuit breaker is not built yet: this section would do nothing, remove it' },
  probes: { yaml: BASE + 'probes:\n  - { name: flags, path: /api/v1/flags/, key: k, interval: 30s }\n', error: 'p.yaml:9:3: probes: synthetic probes is not built yet: this section would do nothing, remove it' },
  edge: { yaml: BASE + '    edge: { percent: 10, keys: [k1] }\n', error: 'p.yaml:8:11: routes[0].edge: edge routing is not built yet: this section would do nothing, remove it' }
}

describe('a section that would do nothing is refused, naming its path', () => {
  // The branch that builds a capability deletes its NOT_BUILT entry; its section then validates.
  for (const [name, { yaml, error }] of Object.entries(SECTIONS) as Array<[Capability, { yaml: string; error: string }]>) {
    if (NOT_BUILT[name] !== undefined) {
      it(`${name}: refused while not built`, () => { expect(errorsOf(yaml)).toEqual([error]) })
    } else {
      it(`${name}: built, so its section validates`, () => { expect(errorsOf(yaml)).toEqual([]) })
    }
  }

  it('empty sections are fine: they claim nothing', () => {
    expect(errorsOf(BASE + 'blocklist: []\nbreakers: {}\nprobes: []\n')).toEqual([])
  })

  it('the table names only capabilities the schema knows', () => {
    for (const name of Object.keys(NOT_BUILT)) expect(Object.keys(SECTIONS)).toContain(name)
  })

  it('the shipped config/gateway.yaml validates', () => {
    const r = loadPolicy('gateway.yaml', readFileSync('config/gateway.yaml', 'utf8'), { FLAGGATE_ADMIN_TOKEN: '' })
    expect(r.ok ? [] : r.errors.map(formatPolicyError)).toEqual([])
  })
})
