/**
 * "Did you mean": the keys the schema knows at a place in the policy, and the one closest to a
 * misspelt key (`staleWhileRevalidat` → `staleWhileRevalidate`, `rotes` → `routes`). Only keys
 * of the same section are offered, never a key from elsewhere in the file.
 *
 * The known keys are read from the zod schema itself (its definitions: object shapes through
 * defaults, optionals, pipes, arrays, records and unions), so a key added to schema.ts is offered
 * without a second list to keep in step.
 */
import type { z } from 'zod'

interface Def { type: string; shape?: Record<string, z.ZodType>; innerType?: z.ZodType; in?: z.ZodType; out?: z.ZodType; element?: z.ZodType; valueType?: z.ZodType; options?: z.ZodType[] }
const defOf = (s: z.ZodType): Def => (s as unknown as { _zod: { def: Def } })._zod.def

/** The object schemas a value at `path` may be checked against (several for a union). */
function objectsAt (schema: z.ZodType, path: ReadonlyArray<string | number>): z.ZodType[] {
  const d = defOf(schema)
  switch (d.type) {
    case 'default': case 'optional': case 'nullable': case 'prefault': case 'readonly': case 'catch':
      return objectsAt(d.innerType!, path)
    case 'pipe':
      return objectsAt(d.in!, path)
    case 'union':
      return d.options!.flatMap((o) => objectsAt(o, path))
    case 'array':
      return typeof path[0] === 'number' ? objectsAt(d.element!, path.slice(1)) : []
    case 'record':
      return path.length === 0 ? [] : objectsAt(d.valueType!, path.slice(1))
    case 'object': {
      if (path.length === 0) return [schema]
      const next = d.shape![String(path[0])]
      return next === undefined ? [] : objectsAt(next, path.slice(1))
    }
    default:
      return []
  }
}

/** Every key the schema accepts in the mapping at `path`. */
export function knownKeysAt (schema: z.ZodType, path: ReadonlyArray<string | number>): string[] {
  const keys = new Set<string>()
  for (const o of objectsAt(schema, path)) for (const k of Object.keys(defOf(o).shape ?? {})) keys.add(k)
  return [...keys]
}

/** Levenshtein distance, case-insensitive (`Ttl` for `ttl` is a near miss too). */
function distance (a: string, b: string): number {
  const s = a.toLowerCase()
  const t = b.toLowerCase()
  let prev = Array.from({ length: t.length + 1 }, (_, j) => j)
  for (let i = 1; i <= s.length; i++) {
    const cur = [i]
    for (let j = 1; j <= t.length; j++) {
      cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (s[i - 1] === t[j - 1] ? 0 : 1))
    }
    prev = cur
  }
  return prev[t.length]!
}

/**
 * The known key closest to `key`, when it is close enough to be a typo: at most a third of the
 * key's letters wrong (at least 1, at most 3).
 */
export function closestKey (key: string, known: readonly string[]): string | undefined {
  let best: string | undefined
  let bestD = Infinity
  for (const k of known) {
    const d = distance(key, k)
    if (d < bestD) { best = k; bestD = d }
  }
  if (best === undefined) return undefined
  const allowed = Math.min(3, Math.max(1, Math.floor(key.length / 3)))
  return bestD <= allowed ? best : undefined
}
