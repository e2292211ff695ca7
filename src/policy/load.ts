/**
 * (file name, YAML text, environment) → a compiled Policy, or every error found, each located as
 * `FILE:LINE:COL: PATH: message`. Pure: no I/O, so `flaggate validate`, reload and tests share it.
 */
import { isMap, isScalar, isSeq, LineCounter, parseDocument, visit, type Document, type Node } from 'yaml'
import type { z } from 'zod'
import { PolicySchema, type PolicyData } from './schema.js'
import { compilePolicy, type Policy } from './compile.js'

export interface PolicyError { file: string; line: number; col: number; path: string; message: string }

export class PolicyInvalidError extends Error {
  readonly errors: PolicyError[]
  constructor (errors: PolicyError[]) {
    super(errors.map(formatPolicyError).join('\n'))
    this.name = 'PolicyInvalidError'
    this.errors = errors
  }
}

export function formatPolicyError (e: PolicyError): string {
  return `${e.file}:${e.line}:${e.col}: ${e.path === '' ? '(root)' : e.path}: ${e.message}`
}

export type PolicyResult = { ok: true; policy: Policy } | { ok: false; errors: PolicyError[] }

type PathKey = string | number
function formatPath (path: readonly PathKey[]): string {
  let out = ''
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : (out === '' ? p : `.${p}`)
  return out
}

const VAR_RE = /\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g

export function loadPolicy (file: string, text: string, env: NodeJS.ProcessEnv = process.env, version?: string): PolicyResult {
  const lineCounter = new LineCounter()
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true })
  const errors: PolicyError[] = []
  const at = (offset: number | undefined, path: readonly PathKey[], message: string): void => {
    const pos = lineCounter.linePos(offset ?? 0)
    errors.push({ file, line: pos.line, col: pos.col, path: formatPath(path), message })
  }

  for (const e of doc.errors) at(e.pos[0], [], e.message.split('\n')[0] ?? e.message)
  if (errors.length > 0) return { ok: false, errors }
  if (doc.contents === null) { at(0, [], 'the policy file is empty'); return { ok: false, errors } }

  // ${VAR} is replaced in scalar values after parsing, so positions stay those of the file the
  // operator wrote and a value can never inject YAML structure.
  visit(doc, {
    Scalar (_key, node, path) {
      if (typeof node.value !== 'string' || !node.value.includes('${')) return
      node.value = node.value.replace(VAR_RE, (_m, name: string, fallback: string | undefined) => {
        const v = env[name]
        if (v !== undefined && v !== '') return v
        if (fallback !== undefined) return fallback
        at(node.range?.[0], pathOf(path, node), `environment variable ${name} is not set (use \${${name}:-default} for a default)`)
        return ''
      })
    }
  })
  if (errors.length > 0) return { ok: false, errors }

  const parsed = PolicySchema.safeParse(doc.toJS({ maxAliasCount: 100 }), { reportInput: true })
  if (!parsed.success) {
    for (const issue of parsed.error.issues) locateIssue(doc, issue, at)
    errors.sort((a, b) => a.line - b.line || a.col - b.col)
    return { ok: false, errors }
  }

  const compiled = compilePolicy(parsed.data as PolicyData, version ?? versionOf(text))
  if (!compiled.ok) {
    for (const p of compiled.problems) {
      const node = doc.getIn(p.path, true) as Node | undefined
      at(node?.range?.[0], p.path, p.message)
    }
    errors.sort((a, b) => a.line - b.line || a.col - b.col)
    return { ok: false, errors }
  }
  return { ok: true, policy: compiled.policy }
}

function pathOf (visitPath: readonly unknown[], _node: unknown): PathKey[] {
  // visit() gives the chain of ancestor nodes; turn it into keys and indices.
  const out: PathKey[] = []
  for (let i = 0; i < visitPath.length; i++) {
    const parent = visitPath[i]
    const child = visitPath[i + 1] ?? _node
    if (isSeq(parent)) out.push(parent.items.indexOf(child as never))
    else if (parent !== null && typeof parent === 'object' && 'key' in parent && 'value' in parent) {
      const k = (parent as { key: unknown }).key
      if (isScalar(k)) out.push(String(k.value))
    }
  }
  return out
}

function locateIssue (doc: Document, issue: z.core.$ZodIssue, at: (offset: number | undefined, path: readonly PathKey[], message: string) => void): void {
  const path = issue.path.filter((p): p is PathKey => typeof p !== 'symbol')
  if (issue.code === 'invalid_union' && issue.errors.length > 0) {
    // "one limit or a list": report the branch the operator meant, the one that got furthest
    // (its issues sit deepest), not zod's bare "Invalid input".
    const depth = (branch: z.core.$ZodIssue[]) => branch.some((i) => i.code === 'invalid_type' && i.path.length === 0) ? -1 : Math.max(...branch.map((i) => i.path.length))
    const best = [...issue.errors].sort((a, b) => depth(b) - depth(a))[0]!
    if (depth(best) >= 0) {
      for (const sub of best) locateIssue(doc, { ...sub, path: [...issue.path, ...sub.path] } as z.core.$ZodIssue, at)
      return
    }
  }
  if (issue.code === 'unrecognized_keys') {
    const map = path.length === 0 ? doc.contents : doc.getIn(path, true)
    for (const key of issue.keys) {
      let offset = (map as Node | undefined)?.range?.[0]
      if (isMap(map)) {
        const pair = map.items.find((p) => isScalar(p.key) && p.key.value === key)
        if (pair !== undefined && isScalar(pair.key)) offset = pair.key.range?.[0]
      }
      at(offset, [...path, key], `unknown key '${key}'`)
    }
    return
  }
  // A missing key has no node of its own: point at the object that lacks it.
  let node: Node | undefined
  let p = path
  while (node === undefined && p.length > 0) {
    node = doc.getIn(p, true) as Node | undefined
    if (node === undefined) p = p.slice(0, -1)
  }
  const message = issue.code === 'invalid_type' && issue.input === undefined ? 'is required' : issue.message
  at((node ?? doc.contents)?.range?.[0], path, message)
}

function versionOf (text: string): string {
  // A short content hash: two replicas with the same file report the same version.
  let h = 0x811c9dc5
  for (let i = 0; i < text.length; i++) { h ^= text.charCodeAt(i); h = Math.imul(h, 0x01000193) }
  return (h >>> 0).toString(16).padStart(8, '0')
}
