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
    out[k] = v
  }
  return out
}
