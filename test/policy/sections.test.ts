/**
 * Every capability's policy section validates (blocklist, abuse, breakers, probes, edge), and so
 * does the shipped config/gateway.yaml.
 */
import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { formatPolicyError, loadPolicy } from '../../src/policy/load.js'

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
/** Each capability's section. */
const SECTIONS: Record<Capability, { yaml: string }> = {
  blocklist: { yaml: BASE + 'blocklist:\n  - { key: abcdef123, reason: "retry storm" }\n' },
  abuse: { yaml: BASE + 'abuse: { rejections: 300 per 1m, blockFor: 15m }\n' },
  breakers: { yaml: BASE + 'breakers:\n  core: { openFor: 15s }\n' },
  probes: { yaml: BASE + 'probes:\n  - { name: flags, path: /api/v1/flags/, key: k, interval: 30s }\n' },
  edge: { yaml: BASE + '    edge: { percent: 10, keys: [k1] }\n' }
}

describe('every capability section validates', () => {
  for (const [name, { yaml }] of Object.entries(SECTIONS) as Array<[Capability, { yaml: string }]>) {
    it(`${name}: its section validates`, () => { expect(errorsOf(yaml)).toEqual([]) })
  }

  it('empty sections are fine: they claim nothing', () => {
    expect(errorsOf(BASE + 'blocklist: []\nbreakers: {}\nprobes: []\n')).toEqual([])
  })

  it('the shipped config/gateway.yaml validates', () => {
    const r = loadPolicy('gateway.yaml', readFileSync('config/gateway.yaml', 'utf8'), { FLAGGATE_ADMIN_TOKEN: '' })
    expect(r.ok ? [] : r.errors.map(formatPolicyError)).toEqual([])
  })
})
