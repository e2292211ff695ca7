/**
 * Trait values read as Core's Python engine reads them (flag_engine/segments/evaluator.py), each
 * case where the Node engine alone would answer otherwise. The expected verdicts are Python's:
 * `re.match`, Python's `%`, `int()`/`float()` casts, python-semver's strict parse, and
 * `str()` of the value in a percentage split's hash.
 */
import { describe, expect, it } from 'vitest'
import { createHash } from 'node:crypto'
import { compileEnvironment, identityFlags } from '../../src/local/environment.js'
import type { EngineTraitValue } from '../../src/local/engine.js'

let nextId = 100
function docWith (conditions: Array<{ operator: string; property_: string | null; value: string | null }>): Record<string, unknown> {
  const segments = conditions.map((c, i) => ({
    id: nextId + i,
    name: `s${i}`,
    rules: [{ type: 'ALL', conditions: [c], rules: [] }],
    feature_states: [{ feature: { id: i + 1, name: `f${i}`, type: 'STANDARD' }, enabled: true, django_id: 5000 + i, featurestate_uuid: `00000000-0000-4000-8000-${String(5000 + i).padStart(12, '0')}`, feature_state_value: 'match', feature_segment: { priority: 0 }, multivariate_feature_state_values: [] }]
  }))
  return {
    id: 1, api_key: 'k', name: 'n', hide_sensitive_data: false,
    project: { id: 1, name: 'p', hide_disabled_flags: false, server_key_only_feature_ids: [], organisation: { id: 1, name: 'o', feature_analytics: false, stop_serving_flags: false, persist_trait_data: true }, segments },
    feature_states: conditions.map((_, i) => ({ feature: { id: i + 1, name: `f${i}`, type: 'STANDARD' }, enabled: false, django_id: 100 + i, featurestate_uuid: `00000000-0000-4000-8000-${String(100 + i).padStart(12, '0')}`, feature_state_value: 'default', feature_segment: null, multivariate_feature_state_values: [] })),
    identity_overrides: []
  }
}

/** Does the one condition match this trait value, as the gateway answers? */
function matches (operator: string, value: string, trait: EngineTraitValue, property = 't'): boolean {
  const env = compileEnvironment(docWith([{ operator, property_: property, value }]))
  const flags = identityFlags(env, 'someone', trait === undefined ? {} : { t: trait }, true) as Array<{ feature_state_value: unknown }>
  return flags[0]!.feature_state_value === 'match'
}

describe('trait values read as Core (Python) reads them', () => {
  it.each([
    // REGEX: re.match anchors at the start; str(True) is "True"
    ['REGEX', 'land', 'finland', false], ['REGEX', 'land', 'landing', true], ['REGEX', '[Tt]rue', true, true], ['REGEX', '^true$', true, false],
    ['REGEX', '^[0-9]{2}$', 42, true],
    // MODULO: numbers and booleans only; Python's remainder has the divisor's sign
    ['MODULO', '2|1', -3, true], ['MODULO', '2|0', '4', true] /* Core stores "4" as the int 4 */, ['MODULO', '2|1', '7abc', false], ['MODULO', '2|1', true, true], ['MODULO', '2.5|0.5', 3, true],
    // IN: ints as strings, floats and booleans never
    ['IN', '0,18,21', 0, true], ['IN', '1.5,2.0', 1.5, false], ['IN', 'true,1', true, false], ['IN', 'uk,fr', 'fr', true],
    // typed comparisons: int() of a fractional or non-numeric condition fails, so nothing matches
    ['GREATER_THAN', '29.5', 30, false], ['NOT_EQUAL', 'abc', 5, false], ['NOT_EQUAL', 'abc', 1.5, false], ['GREATER_THAN', '18', 30, true], ['LESS_THAN_INCLUSIVE', '2.5', 1.5, true],
    ['EQUAL', 'premium', 'premium', true],
    // semver: strict parse of the trait
    ['GREATER_THAN', '1.2.3:semver', 'v1.3.0', false], ['GREATER_THAN', '1.2.3:semver', ' 1.3.0', false], ['GREATER_THAN', '1.2.3:semver', '1.3.0', true]
  ] as Array<[string, string, EngineTraitValue, boolean]>)('%s %j against %j: %s', (operator, value, trait, expected) => {
    expect(matches(operator, value, trait)).toBe(expected)
  })

  it('PERCENTAGE_SPLIT on a trait hashes [segment key, str(value)] as Python does', () => {
    const pct = (segmentKey: string, v: string): number => {
      const h = BigInt('0x' + createHash('md5').update(`${segmentKey},${v}`).digest('hex'))
      return Number(h % 9999n) / 9998 * 100
    }
    let agreed = 0
    for (const [i, v] of [true, false, 'pro', 'free', 7, 'x', 'y', 'z'].entries()) {
      nextId = 700 + i
      const want = pct(String(nextId), typeof v === 'boolean' ? (v ? 'True' : 'False') : String(v)) <= 50
      expect(matches('PERCENTAGE_SPLIT', '50', v)).toBe(want)
      agreed++
    }
    expect(agreed).toBe(8)
    nextId = 100
  })

  it('a request cannot set the synthetic traits itself', () => {
    const env = compileEnvironment(docWith([{ operator: 'REGEX', property_: 't', value: 'x' }]))
    const flags = identityFlags(env, 'someone', { __flaggate_0: 'x' }, true) as Array<{ feature_state_value: unknown }>
    expect(flags[0]!.feature_state_value).toBe('default')
  })
})
