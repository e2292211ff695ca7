/**
 * (file name, YAML text, environment) → a compiled Policy, or every error found, each located as
 * `FILE:LINE:COL: PATH: message`. Pure: no I/O, so `flaggate validate`, reload and tests share it.
 *
 * Total: whatever the text, the answer is a verdict, never an exception or a hang (a reload runs
 * inside the serving process, so a throw here would take every request down with it). Size,
 * nesting depth and aliases are bounded before the document is composed, because yaml's composer
 * and `toJS` recurse per level and resolve every alias by walking the whole document; anything
 * that still throws becomes one positioned error.
 */
import { Composer, isMap, isScalar, isSeq, Lexer, LineCounter, Parser, visit, type CST, type Document, type Node } from 'yaml'
import type { z } from 'zod'
import { PolicySchema, type PolicyData } from './schema.js'
import { compilePolicy, type Policy } from './compile.js'
import { closestKey, knownKeysAt } from './suggest.js'

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

/** A policy is a page or two of YAML; this bounds parse time and memory whatever is saved. */
export const MAX_POLICY_BYTES = 1024 * 1024
/**
 * The deepest real path is about six levels (`routes[0].limit[1].by[0]`); 64 leaves room for any
 * honest file and keeps yaml's recursive composer far from the stack limit.
 */
export const MAX_DEPTH = 64
/**
 * Aliases (`*name`) a file may hold. Anchors for shared limits are fine; each alias costs yaml a
 * walk of the whole document, and nested ones multiply (the "billion laughs" shape).
 */
export const MAX_ALIASES = 100
/**
 * YAML tokens a file may hold (the shipped policy has about 1,500). yaml's parser costs tens of
 * microseconds per token, so a megabyte of `1,1,1,…` would hold a reload for many seconds; the
 * lexer alone counts them in a fraction of that, and stops counting at the cap.
 */
export const MAX_TOKENS = 100_000
/** entries of one mapping: yaml checks duplicate keys pairwise, so this bounds that quadratic step */
export const MAX_MAP_KEYS = 1000
/** past this many, more errors only bury the first ones */
export const MAX_ERRORS = 100

export function loadPolicy (file: string, text: string, env: NodeJS.ProcessEnv = process.env, version?: string): PolicyResult {
  try {
    const result = loadPolicyUnguarded(file, text, env, version)
    if (!result.ok && result.errors.length > MAX_ERRORS) {
      const more = result.errors.length - MAX_ERRORS
      const kept = result.errors.slice(0, MAX_ERRORS)
      const last = kept[kept.length - 1]!
      kept.push({ file, line: last.line, col: last.col, path: '', message: `${more} more error${more === 1 ? '' : 's'} not shown` })
      return { ok: false, errors: kept }
    }
    return result
  } catch (err) {
    // A bug or a limit we did not foresee: still a verdict, and the last good policy stays.
    const message = err instanceof RangeError && /call stack/i.test(err.message)
      ? `the policy file is nested too deeply to read (at most ${MAX_DEPTH} levels)`
      : `the policy file could not be read: ${err instanceof Error ? err.message : String(err)}`
    return { ok: false, errors: [{ file, line: 1, col: 1, path: '', message }] }
  }
}

/** The first collection deeper than `MAX_DEPTH`, or the alias past `MAX_ALIASES`: its offset and why. Iterative: depth is what it checks. */
function structureProblem (tokens: readonly CST.Token[]): { offset: number; message: string } | undefined {
  let aliases = 0
  const stack: Array<{ token: CST.Token; depth: number }> = tokens.map((token) => ({ token, depth: 0 }))
  while (stack.length > 0) {
    const { token, depth } = stack.pop()!
    switch (token.type) {
      case 'document':
        if (token.value !== undefined) stack.push({ token: token.value, depth })
        break
      case 'alias':
        if (++aliases > MAX_ALIASES) return { offset: token.offset, message: `more than ${MAX_ALIASES} aliases: a policy file does not need this many (and many nested aliases are a known way to exhaust memory)` }
        break
      case 'block-map': case 'block-seq': case 'flow-collection':
        if (depth >= MAX_DEPTH) return { offset: token.offset, message: `nested deeper than ${MAX_DEPTH} levels` }
        if ((token.type === 'block-map' || (token.type === 'flow-collection' && token.start.source === '{')) && token.items.length > MAX_MAP_KEYS) {
          return { offset: token.offset, message: `a mapping with more than ${MAX_MAP_KEYS} keys` }
        }
        for (const item of token.items as ReadonlyArray<{ key?: CST.Token | null; value?: CST.Token }>) {
          if (item.key !== undefined && item.key !== null) stack.push({ token: item.key, depth: depth + 1 })
          if (item.value !== undefined) stack.push({ token: item.value, depth: depth + 1 })
        }
        break
    }
  }
  return undefined
}

function loadPolicyUnguarded (file: string, text: string, env: NodeJS.ProcessEnv, version: string | undefined): PolicyResult {
  const lineCounter = new LineCounter()
  const errors: PolicyError[] = []
  const at = (offset: number | undefined, path: readonly PathKey[], message: string): void => {
    const pos = lineCounter.linePos(offset ?? 0)
    errors.push({ file, line: pos.line, col: pos.col, path: formatPath(path), message })
  }
  if (text.length > MAX_POLICY_BYTES) {
    return { ok: false, errors: [{ file, line: 1, col: 1, path: '', message: `the policy file is larger than ${MAX_POLICY_BYTES / 1024 / 1024} MB` }] }
  }

  let count = 0
  for (const _token of new Lexer().lex(text)) {
    if (++count > MAX_TOKENS) {
      return { ok: false, errors: [{ file, line: 1, col: 1, path: '', message: `the policy file holds more than ${MAX_TOKENS} YAML tokens; a policy is never that large` }] }
    }
  }

  // parseDocument() in steps: the parser is iterative, so its tokens can be checked for depth
  // and aliases before the (recursive) composer sees them.
  const tokens = Array.from(new Parser(lineCounter.addNewLine).parse(text))
  const problem = structureProblem(tokens)
  if (problem !== undefined) { at(problem.offset, [], problem.message); return { ok: false, errors } }
  let doc: Document.Parsed | undefined
  for (const d of new Composer({ uniqueKeys: true, logLevel: 'error' }).compose(tokens, true, text.length)) {
    if (doc === undefined) { doc = d; continue }
    at(d.range[0], [], 'a policy file holds one YAML document; remove the second one (after ---)')
    break
  }
  if (doc === undefined) { at(0, [], 'the policy file is empty'); return { ok: false, errors } }

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

  let data: unknown
  try {
    data = doc.toJS({ maxAliasCount: MAX_ALIASES })
  } catch (err) {
    let offset: number | undefined
    visit(doc, { Alias (_key, node) { offset = node.range?.[0]; return visit.BREAK } })
    at(offset, [], `aliases expand into too much data (${(err as Error).message}); write the repeated values out instead`)
    return { ok: false, errors }
  }
  const parsed = PolicySchema.safeParse(data, { reportInput: true })
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
      const near = closestKey(key, knownKeysAt(PolicySchema, path))
      at(offset, [...path, key], `unknown key '${key}'${near === undefined ? '' : ` (did you mean '${near}'?)`}`)
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
  at((node ?? doc.contents)?.range?.[0], path, inPolicyWords(issue, path))
}

const WHAT: Record<string, string> = { number: 'a number', string: 'a string', boolean: 'true or false', array: 'a list', object: 'a mapping (key: value)' }

/** A value as the operator wrote it: `the string "10"`, `a list`. */
function described (input: unknown): string {
  if (input === null) return 'empty'
  if (Array.isArray(input)) return 'a list'
  if (typeof input === 'string') return `the string "${input.length > 40 ? input.slice(0, 40) + '…' : input}"`
  if (typeof input === 'object') return 'a mapping'
  return `${typeof input === 'number' ? 'the number ' : ''}${String(input)}`
}

/**
 * zod's message in the policy's own words, naming the key: "`burst` must be a number, not the
 * string "10"" rather than "Invalid input: expected number, received string".
 */
function inPolicyWords (issue: z.core.$ZodIssue, path: readonly PathKey[]): string {
  let message = issue.message
  if (issue.code === 'invalid_type' && issue.input === undefined) message = 'is required'
  // zod's own wording; a schema's own message (the units') is kept
  else if (issue.code === 'invalid_type' && message.startsWith('Invalid input')) message = `must be ${WHAT[issue.expected] ?? issue.expected}, not ${described(issue.input)}`
  const key = path.at(-1)
  return typeof key === 'string' && /^(must|is) /.test(message) ? `\`${key}\` ${message}` : message
}

function versionOf (text: string): string {
  // A short content hash: two replicas with the same file report the same version.
  let h = 0x811c9dc5
  for (let i = 0; i < text.length; i++) { h ^= text.charCodeAt(i); h = Math.imul(h, 0x01000193) }
  return (h >>> 0).toString(16).padStart(8, '0')
}
