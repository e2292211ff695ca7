/**
 * Trait values as Core's Python engine sees them, before the Node engine evaluates them.
 * Where the two engines read a value differently, conditions.ts shows the Node engine Python's
 * reading; see docs/local-evaluation.md.
 */
import type { EngineTraitValue } from './engine.js'
import { SYNTHETIC_PREFIX } from './conditions.js'

/**
 * A copy without null-valued traits (a null deletes a trait: it is never evaluated), on an object
 * without a prototype: the engine looks a condition's property up with `traits[property]`, and on
 * a plain object `constructor` or `__proto__` would be "set" for everyone.
 */
export function normaliseTraits (traits: Record<string, EngineTraitValue>): Record<string, EngineTraitValue> {
  const out = Object.create(null) as Record<string, EngineTraitValue>
  for (const k in traits) {
    const v = traits[k]
    // null deletes; the synthetic names are ours (conditions.ts): a request cannot set them
    if (v === null || v === undefined || k.startsWith(SYNTHETIC_PREFIX)) continue
    out[k] = typeof v === 'string' ? coreNumber(v) : v
  }
  return out
}

const INT = /^\s*[+-]?\d+(?:_\d+)*\s*$/
const FLOAT = /^\s*[+-]?(?:\d+(?:_\d+)*)?\.?\d+(?:_\d+)*(?:[eE][+-]?\d+)?\s*$/

/**
 * Core stores a trait sent as a numeric string as a number (`"030"` is the int 30, `"2.50"` the
 * float 2.5) and evaluates it as such, while echoing the value as sent; recorded on Core
 * v2.259.0 (test/fixtures/real-core). Python's `int()` then `float()` readings.
 */
function coreNumber (v: string): EngineTraitValue {
  if (INT.test(v)) { const n = Number(v.replace(/_/g, '').trim()); return Number.isSafeInteger(n) ? n : v }
  if (FLOAT.test(v)) { const n = Number(v.replace(/_/g, '').trim()); return Number.isFinite(n) ? n : v }
  return v
}
