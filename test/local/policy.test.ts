import { describe, expect, it } from 'vitest'
import { loadPolicy } from '../../src/policy/load.js'
import { BASE_POLICY, errorsOf } from '../support/policy-errors.js'

const BASE = BASE_POLICY

describe('policy: localEvaluation, checked for form without asking Core', () => {
  it('fills the defaults', () => {
    const r = loadPolicy('p.yaml', BASE + 'localEvaluation:\n  environments:\n    - serverKey: ser.abc123\n', {})
    expect(r.ok).toBe(true)
    if (!r.ok) return
    expect(r.policy.data.localEvaluation).toEqual({
      mode: 'fallback', refresh: 10_000, environments: [{ serverKey: 'ser.abc123' }], firstDocumentTimeout: 5000,
      maxQueuedWrites: 10_000, maxQueuedBytes: 16 * 1024 * 1024, maxAnalyticsCounters: 10_000, stateFile: '.flaggate/local-outbox.json'
    })
  })

  it.each([
    ['a client-side key', 'localEvaluation:\n  environments:\n    - serverKey: abc123\n', ['p.yaml:9:18: localEvaluation.environments[0].serverKey: `serverKey` must be a server-side environment key (ser. followed by letters, digits, _ or -)']],
    ['an unset variable', 'localEvaluation:\n  environments:\n    - serverKey: ${KEY:-}\n', ['p.yaml:9:18: localEvaluation.environments[0].serverKey: `serverKey` is empty (an unset variable?): needs a server-side key such as ser.abc123']],
    ['no environment', 'localEvaluation:\n  environments: []\n', ['p.yaml:8:17: localEvaluation.environments: needs at least one environment']],
    ['a key twice', 'localEvaluation:\n  environments:\n    - serverKey: ser.a\n    - serverKey: ser.a\n', ['p.yaml:9:5: localEvaluation.environments: lists a server key twice']],
    ['a bad mode', 'localEvaluation:\n  mode: sometimes\n  environments:\n    - serverKey: ser.a\n', ['p.yaml:8:9: localEvaluation.mode: `mode` must be fallback or always']],
    ['an unknown upstream', 'localEvaluation:\n  upstream: nowhere\n  environments:\n    - serverKey: ser.a\n', ["p.yaml:8:13: localEvaluation.upstream: unknown upstream 'nowhere' (defined: core)"]],
    ['a zero refresh', 'localEvaluation:\n  refresh: 0s\n  environments:\n    - serverKey: ser.a\n', ['p.yaml:8:12: localEvaluation.refresh: `refresh` must be greater than zero']]
  ])('%s', (_name, extra, expected) => {
    expect(errorsOf(BASE + extra)).toEqual(expected)
  })
})
