/**
 * Where Flagsmith's two engines read a trait value differently, the gateway answers as Core
 * does: Core evaluates with the Python engine (`flag_engine/segments/evaluator.py`), we with the
 * Node one. The Node engine still decides every condition; this module only shows it the value
 * the Python engine would have compared, so both come to the same verdict:
 *
 * - at compile time (once per document), each condition whose operator reads values differently
 *   is pointed at a trait of its own, `__flaggate_<n>` (and a REGEX pattern is anchored at the
 *   start: Python's `re.match` only matches there, JavaScript's `match` anywhere);
 * - per request, that trait is set to the Python view of the original trait's value, or left
 *   out where Python's verdict is "no match" (the Node engine never matches a missing trait for
 *   these operators).
 *
 * The cases, with Python's reading:
 * - REGEX: `re.match(pattern, str(value))`: anchored at the start; booleans read `True`/`False`.
 * - MODULO: only int, float or bool values (a string never matches, `"7abc"` included);
 *   Python's remainder has the divisor's sign (`-3 % 2 == 1`).
 * - IN: an int is compared as its string, a string as is; floats and booleans never match.
 * - EQUAL, NOT_EQUAL, GREATER_THAN(_INCLUSIVE), LESS_THAN(_INCLUSIVE), CONTAINS: the condition
 *   is cast to the trait's type with `int()` or `float()`; when that fails (`"29.5"` or `"abc"`
 *   against an int, `"abc"` against a float) nothing matches, NOT_EQUAL included.
 * - the same operators with a `:semver` condition: a string trait must parse as strict semver
 *   (no `v`, no spaces), else nothing matches.
 * - PERCENTAGE_SPLIT on a trait: Python hashes `[segment key, str(value)]`; the Node engine
 *   only follows `$.` paths and writes booleans `true`.
 *
 * Not recoverable from JSON in JavaScript, hence not handled: a float that is a whole number
 * (`30.0` is a float in Python, the number 30 here, read as an int).
 */
import type { EngineContext, EngineTraitValue } from './engine.js'

export const SYNTHETIC_PREFIX = '__flaggate_'

type Kind = 'regex' | 'modulo' | 'in' | 'typed' | 'semver' | 'split'

export interface Probe {
  /** the synthetic trait the rewritten condition reads */
  readonly key: string
  /** the trait the condition named */
  readonly trait: string
  readonly kind: Kind
  readonly value: string
}

const TYPED = new Set(['EQUAL', 'NOT_EQUAL', 'GREATER_THAN', 'GREATER_THAN_INCLUSIVE', 'LESS_THAN', 'LESS_THAN_INCLUSIVE', 'CONTAINS'])
const TRAIT_PATH = /^\$\.identity\.traits\.([A-Za-z_][A-Za-z0-9_]*)$/

/** Python's `int(str)`: optional sign and spaces, digits with single underscores between them. */
const PY_INT = /^\s*[+-]?\d+(?:_\d+)*\s*$/
/** Python's `float(str)`, for the finite decimal forms (and inf / nan spelled out). */
const PY_FLOAT = /^\s*[+-]?(?:(?:\d+(?:_\d+)*)?\.?\d+(?:_\d+)*(?:[eE][+-]?\d+(?:_\d+)*)?|\d+(?:_\d+)*\.|inf(?:inity)?|nan)\s*$/i
/** strict semver 2.0.0, as python-semver's Version.parse reads it */
const SEMVER = /^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$/

function kindOf (operator: string, property: string, value: string): Kind | undefined {
  if (operator === 'REGEX') return 'regex'
  if (operator === 'MODULO') return 'modulo'
  if (operator === 'IN') return 'in'
  if (operator === 'PERCENTAGE_SPLIT') return property === '' ? undefined : 'split'
  if (TYPED.has(operator)) return value.endsWith(':semver') ? 'semver' : 'typed'
  return undefined
}

interface Condition { property?: string | null; operator: string; value?: unknown }
interface Rule { conditions?: Condition[]; rules?: Rule[] }

/** Rewrites the context's segment conditions in place (once per document); returns what each request must fill in. */
export function rewriteConditions (context: EngineContext): Probe[] {
  const probes: Probe[] = []
  const visit = (rule: Rule): void => {
    for (const c of rule.conditions ?? []) {
      const property = typeof c.property === 'string' ? c.property : ''
      const value = c.value === null || c.value === undefined ? '' : String(c.value)
      // a plain trait name, or its `$.identity.traits.<name>` path; other paths are left alone
      const trait = property.startsWith('$.') ? TRAIT_PATH.exec(property)?.[1] : property
      const kind = kindOf(c.operator, property, value)
      if (kind === undefined || trait === undefined || trait === '') continue
      const key = `${SYNTHETIC_PREFIX}${probes.length}`
      probes.push({ key, trait, kind, value })
      c.property = kind === 'split' ? `$.identity.traits.${key}` : key
      if (kind === 'regex') c.value = `^(?:${value})`
    }
    for (const r of rule.rules ?? []) visit(r)
  }
  for (const id in context.segments) for (const r of context.segments[id]!.rules as Rule[]) visit(r)
  return probes
}

/** Python's `str()` of a JSON value. */
function pyStr (v: string | number | boolean): string {
  if (typeof v === 'boolean') return v ? 'True' : 'False'
  return String(v)
}

/** The value the Node engine must see for this condition to decide as Python does; undefined: no match. */
export function pythonView (p: Probe, v: EngineTraitValue | undefined): EngineTraitValue | undefined {
  if (v === null || v === undefined) return undefined
  switch (p.kind) {
    case 'regex':
    case 'split':
      return pyStr(v)
    case 'modulo': {
      if (typeof v === 'string') return undefined
      const n = Number(v)
      const parts = p.value.split('|')
      if (parts.length !== 2 || !PY_FLOAT.test(parts[0]!) || !PY_FLOAT.test(parts[1]!)) return undefined
      const d = parseFloat(parts[0]!.replace(/_/g, ''))
      if (d === 0 || !Number.isFinite(d)) return undefined
      // Python's remainder (the divisor's sign); smaller than the divisor, so JavaScript's % keeps it
      return n - d * Math.floor(n / d)
    }
    case 'in':
      if (typeof v === 'string') return v
      if (typeof v === 'number' && Number.isInteger(v)) return String(v)
      return undefined
    case 'typed':
      if (typeof v !== 'number') return v
      if (Number.isInteger(v)) return PY_INT.test(p.value) ? v : undefined
      return PY_FLOAT.test(p.value) ? v : undefined
    case 'semver':
      // Python compares only a string parsed as strict semver; anything else fails its cast
      return typeof v === 'string' && SEMVER.test(v) ? v : undefined
  }
}

/** The request's traits with the Python view of each rewritten condition's trait added. */
export function withPythonViews (traits: Record<string, EngineTraitValue>, probes: readonly Probe[]): Record<string, EngineTraitValue> {
  for (const p of probes) {
    const v = pythonView(p, traits[p.trait])
    if (v !== undefined) traits[p.key] = v
  }
  return traits
}
