/**
 * Keeps the documentation honest where a machine can: README.md and docs/*.md against the code.
 *
 * - every `flaggate <command> --flag` the docs show is a command and a flag of the CLI, and every
 *   command of the CLI's usage is in docs/operations.md;
 * - docs/policy.md's reference has a row for every key of the policy schema and no row for a key
 *   the schema does not have, and the defaults it states are the schema's;
 * - every error code of src/errors.ts has a row (status and code) in docs/operations.md, and the docs
 *   name no code that does not exist; every metric src/ registers is documented and every metric the
 *   docs name is registered; every shipped alert is in docs/operations.md;
 * - every relative link (and its #anchor) resolves; every `npm run X` exists in package.json; every
 *   .md file a source, test, deploy or config file names exists;
 * - no doc, source or test file points at a document outside the repository;
 * - the demo's numbers are not quoted as fixed facts (each run prints its own);
 * - the README stays short and keeps the two commands CI runs.
 *
 * The schema is walked through zod's own definitions, so a key added to src/policy/schema.ts
 * without a row in docs/policy.md fails here by name. If the schema module moves, fix the import.
 */
import { spawnSync } from 'node:child_process'
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs'
import { dirname, join, normalize, relative } from 'node:path'
import { describe, expect, it } from 'vitest'
import { PolicySchema } from '../../src/policy/schema.js'
import { ERRORS } from '../../src/errors.js'
import { parseDuration, parseListen, parsePercent, parseSize } from '../../src/shared/units.js'

const ROOT = join(import.meta.dirname, '..', '..')
const read = (file: string): string => readFileSync(join(ROOT, file), 'utf8')

function filesUnder (dir: string, test: (f: string) => boolean): string[] {
  const abs = join(ROOT, dir)
  if (!existsSync(abs)) return []
  const out: string[] = []
  for (const name of readdirSync(abs)) {
    if (name === 'node_modules' || name.startsWith('.')) continue
    const rel = join(dir, name)
    if (statSync(join(ROOT, rel)).isDirectory()) out.push(...filesUnder(rel, test))
    else if (test(rel)) out.push(rel)
  }
  return out
}

const DOCS = ['README.md', ...filesUnder('docs', (f) => f.endsWith('.md'))]
const docText = new Map(DOCS.map((f) => [f, read(f)]))

/** A fenced code block, indented or not (inside a list item): its info string and its body. */
const FENCE = /^[ \t]*```([^\n]*)\n([\s\S]*?)^[ \t]*```[ \t]*$/gm
const withoutFences = (md: string): string => md.replace(FENCE, '')

/**
 * Where a markdown text shows commands: inline code spans, shell blocks (```sh, ```bash, ```shell)
 * and the `$ ` prompt lines of other blocks. The output lines of a text block are not commands
 * (a benchmark's output may well begin with the word flaggate).
 */
function codeOf (md: string): string[] {
  const blocks = [...md.matchAll(FENCE)].map((m) => ({ lang: m[1]!.trim(), body: m[2]! }))
  const fenced = blocks.map((b) => /^(sh|bash|shell)$/.test(b.lang)
    ? b.body
    : b.body.split('\n').filter((l) => /^\s*\$ /.test(l)).map((l) => l.replace(/^\s*\$ /, '')).join('\n'))
  // a span may wrap onto the next line of its paragraph
  const spans = [...withoutFences(md).matchAll(/`([^`]+)`/g)].map((m) => m[1]!.replace(/\s*\n\s*/g, ' '))
  return [...fenced, ...spans]
}

// ---------------------------------------------------------------------------------------------
// The CLI
// ---------------------------------------------------------------------------------------------

/** The CLI's usage text, as a user gets it. */
const help = spawnSync(process.execPath, ['--import', 'tsx', join(ROOT, 'src/cli.ts'), '--help'], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 })
// some CLIs print their usage on stderr; the first test below says so when neither has it
const usage = `${help.stdout ?? ''}\n${help.stderr ?? ''}`
/** The CLI's sources: src/cli.ts, src/cli/…, and every capability's cli.ts. */
const cliSources = filesUnder('src', (f) => /(^|\/)cli(\.ts$|\/|-[\w-]+\.ts$)/.test(f)).map(read).join('\n')
/** Commands listed by the usage: its indented lines start with the command. */
const usageCommands = new Set([...usage.matchAll(/^ {2}([a-z][a-z-]*)\b/gm)].map((m) => m[1]!))

function flagExists (flag: string): boolean {
  return usage.includes(`--${flag}`) || cliSources.includes(`--${flag}`) ||
    cliSources.includes(`'${flag}'`) || cliSources.includes(`"${flag}"`) || new RegExp(`[{,]\\s*${flag}\\s*:`).test(cliSources)
}

interface Invocation { doc: string; command: string; flags: string[]; text: string }

/** Every `flaggate <command> …` (or `node dist/cli.js <command> …`) shown in code in the docs. */
function invocations (): Invocation[] {
  const out: Invocation[] = []
  for (const [doc, md] of docText) {
    for (const code of codeOf(md)) {
      for (const line of code.split('\n')) {
        for (const m of line.matchAll(/(?:^|[\s`$(])(?:npx\s+)?(?:flaggate|node\s+dist\/cli\.js)\s+([a-z][a-z-]*)([^|;&\n]*)/g)) {
          // a command's arguments end at a pipe, `;`, `&&` or the end of the line
          const flags = [...m[2]!.matchAll(/(?:^|\s|\[|\()--([a-z][a-z-]*)/g)].map((f) => f[1]!)
          out.push({ doc, command: m[1]!, flags, text: m[0].trim() })
        }
      }
    }
  }
  return out
}

describe('the CLI the docs show', () => {
  const shown = invocations()

  it('the usage lists commands (the test reads the right thing)', () => {
    expect(help.status, `flaggate --help exits 0:\n${usage}`).toBe(0)
    expect([...usageCommands], `the commands of the usage, read as its indented lines:\n${usage}`).toEqual(expect.arrayContaining(['serve', 'validate', 'explain', 'status']))
    expect(shown.length).toBeGreaterThan(10)
  })

  it('every command shown exists', () => {
    const unknown = shown.filter((i) => !usageCommands.has(i.command)).map((i) => `${i.doc}: ${i.text}`)
    expect(unknown, 'commands the CLI does not have (flaggate --help lists them)').toEqual([])
  })

  it('every --flag shown exists in the CLI', () => {
    const unknown = shown.flatMap((i) => i.flags.filter((f) => !flagExists(f)).map((f) => `${i.doc}: --${f} in ${i.text}`))
    expect(unknown, 'flags the CLI does not take').toEqual([])
  })

  it('docs/operations.md documents every command of the usage', () => {
    const ops = docText.get('docs/operations.md') ?? ''
    const missing = [...usageCommands].filter((c) => !new RegExp(`flaggate ${c}\\b`).test(ops))
    expect(missing, 'commands without a line in docs/operations.md').toEqual([])
  })
})

// ---------------------------------------------------------------------------------------------
// The policy reference
// ---------------------------------------------------------------------------------------------

interface ZodLike { _zod: { def: Record<string, unknown> & { type: string } } }
/** path (`routes.limit.rate`, arrays dropped, map keys as `*`) → the schema's default for a leaf */
function schemaKeys (): Map<string, unknown> {
  const keys = new Map<string, unknown>()
  const walk = (s: ZodLike, path: string, dflt?: unknown): void => {
    const def = s._zod.def as Record<string, any> & { type: string } // eslint-disable-line @typescript-eslint/no-explicit-any
    switch (def.type) {
      case 'default': case 'prefault': walk(def.innerType, path, def.defaultValue); return
      case 'optional': case 'nullable': case 'readonly': case 'catch': case 'nonoptional': walk(def.innerType, path, dflt); return
      case 'pipe':
        walk(def.in, path, dflt)
        if (def.out._zod.def.type !== 'transform') walk(def.out, path, dflt)
        return
      case 'union': for (const o of def.options) walk(o, path, dflt); return
      case 'array': walk(def.element, path); return
      case 'record': walk(def.valueType, `${path}.*`); return
      case 'lazy': walk(def.getter(), path, dflt); return
      case 'object':
        for (const [k, v] of Object.entries(def.shape as Record<string, ZodLike>)) {
          const p = path === '' ? k : `${path}.${k}`
          if (!keys.has(p)) keys.set(p, undefined)
          walk(v, p)
        }
        return
      default:
        if (path !== '' && dflt !== undefined && keys.get(path) === undefined) keys.set(path, dflt)
    }
  }
  walk(PolicySchema as unknown as ZodLike, '')
  return keys
}

/** `routes[].limit.rate` → `routes.limit.rate`; `upstreams.<name>.url` → `upstreams.*.url` */
const normaliseKey = (k: string): string => k.replace(/\[\]/g, '').replace(/<[^>]+>/g, '*')

interface Row { key: string; type: string; dflt: string; meaning: string; where: string }
/**
 * The reference: every table of docs/policy.md, plus, in any other page of docs/, the table that
 * follows a line `<!-- policy reference -->` (a capability documented in its own page lists its
 * keys there). A row is `| \`key\` | type | default | meaning |`.
 */
function referenceRows (): Row[] {
  const rows: Row[] = []
  for (const [doc, md] of docText) {
    if (!doc.startsWith('docs/')) continue
    let inReference = doc === 'docs/policy.md'
    let marked = false
    md.split('\n').forEach((line, i) => {
      if (doc !== 'docs/policy.md') {
        if (/^<!--\s*policy reference\s*-->/.test(line.trim())) { marked = true; return }
        if (marked && line.startsWith('|')) inReference = true
        else if (inReference && !line.startsWith('|')) { inReference = false; marked = false }
        else if (marked && line.trim() !== '') marked = false
      }
      if (!inReference) return
      const m = /^\|\s*`([^`]+)`\s*\|(.*)\|\s*$/.exec(line)
      if (m === null) return
      const cells = m[2]!.split(/(?<!\\)\|/).map((c) => c.trim())
      rows.push({ key: m[1]!, type: cells[0] ?? '', dflt: cells[1] ?? '', meaning: cells[2] ?? '', where: `${doc}:${i + 1}` })
    })
  }
  return rows
}

/** Whether the default written in the docs is the schema's, read with the policy's own unit parsers. */
function sameDefault (written: string, actual: unknown): boolean {
  const token = /`([^`]*)`/.exec(written)?.[1]
  if (token === undefined) return false
  if (typeof actual === 'boolean') return token === String(actual)
  if (typeof actual === 'string') return token === actual
  if (typeof actual === 'number') {
    return [Number(token), parseDuration(token), parseSize(token), parsePercent(token)].some((v) => v === actual)
  }
  if (typeof actual === 'object' && actual !== null && 'port' in actual) {
    return JSON.stringify(parseListen(token)) === JSON.stringify(actual)
  }
  return false
}

describe('docs/policy.md, the policy reference', () => {
  const schema = schemaKeys()
  const rows = referenceRows()
  const documented = new Map(rows.map((r) => [normaliseKey(r.key), r]))

  it('the walk finds the schema (the test reads the right thing)', () => {
    expect(schema.size).toBeGreaterThan(50)
    expect(schema.has('routes.limit.rate')).toBe(true)
    expect(schema.get('server.bodyLimit')).toBe(1024 * 1024)
  })

  it('has a row for every key of the schema', () => {
    const missing = [...schema.keys()].filter((k) => !documented.has(k))
    expect(missing, 'schema keys without a row in docs/policy.md, or in a table after <!-- policy reference --> in a page of docs/ (write `a.b[].c` for lists, `a.<name>.b` for maps)').toEqual([])
  })

  it('has no row for a key the schema does not have', () => {
    const extra = rows.filter((r) => !schema.has(normaliseKey(r.key))).map((r) => `${r.where}: ${r.key}`)
    expect(extra, 'rows naming keys the schema does not accept').toEqual([])
  })

  it('gives every key a type and a meaning, and states the schema default of every key that has one', () => {
    const problems: string[] = []
    for (const r of rows) {
      if (r.type === '' || r.meaning === '') problems.push(`${r.where}: ${r.key}: needs a type and a meaning`)
      const actual = schema.get(normaliseKey(r.key))
      if (actual !== undefined && !sameDefault(r.dflt, actual)) {
        problems.push(`${r.where}: ${r.key}: default written as "${r.dflt}", the schema's is ${JSON.stringify(actual)}`)
      }
    }
    expect(problems).toEqual([])
  })
})

// ---------------------------------------------------------------------------------------------
// Error codes and metrics
// ---------------------------------------------------------------------------------------------

describe('error codes and metrics', () => {
  it('docs/operations.md has a row with the status for every error code of src/errors.ts', () => {
    const ops = docText.get('docs/operations.md') ?? ''
    const missing = Object.entries(ERRORS)
      .filter(([code, e]) => !new RegExp(`\\|\\s*${e.status}\\s*\\|\\s*\`${code}\``).test(ops))
      .map(([code, e]) => `${e.status} ${code}`)
    expect(missing).toEqual([])
  })

  it('the docs name no error code that does not exist', () => {
    const named = new Set([...docText.values()].flatMap((md) => [...md.matchAll(/\bFLAGGATE_[A-Z_]+[A-Z]\b/g)].map((m) => m[0])))
    // environment variables share the prefix; error codes are the ones the table defines
    const unknown = [...named].filter((c) => !(c in ERRORS) && !/^FLAGGATE_(CONFIG|ADMIN_URL|ADMIN_TOKEN|LISTEN|ADMIN_LISTEN|STATE_FILE|PROBE_[A-Z_]+)$/.test(c))
    expect(unknown).toEqual([])
  })

  it('every metric src/ registers is documented in docs/', () => {
    const src = filesUnder('src', (f) => f.endsWith('.ts')).map(read).join('\n')
    const registered = new Set([...src.matchAll(/name:\s*'(flaggate_[a-z0-9_]+)'/g)].map((m) => m[1]!))
    expect(registered.size, 'the test finds the registrations').toBeGreaterThan(5)
    const docs = [...docText].filter(([d]) => d.startsWith('docs/')).map(([, md]) => md).join('\n')
    expect([...registered].filter((n) => !docs.includes(`\`${n}\``)), 'metrics without a line in docs/').toEqual([])
  })

  it('every alert of deploy/prometheus/alerts.yml is in docs/operations.md', () => {
    const alerts = [...read('deploy/prometheus/alerts.yml').matchAll(/^\s*-\s*alert:\s*(\S+)/gm)].map((m) => m[1]!)
    expect(alerts.length).toBeGreaterThan(3)
    const ops = docText.get('docs/operations.md') ?? ''
    expect(alerts.filter((a) => !ops.includes(`\`${a}\``))).toEqual([])
  })

  it('every metric the docs name is registered in src/', () => {
    const src = filesUnder('src', (f) => f.endsWith('.ts')).map(read).join('\n')
    const named = new Set([...docText.values()].flatMap((md) => [...md.matchAll(/\bflaggate_[a-z0-9_]*[a-z0-9]\b/g)].map((m) => m[0].replace(/_(bucket|sum|count)$/, ''))))
    // prom-client's default process metrics carry the prefix too
    const unknown = [...named].filter((n) => !/^flaggate_(process|nodejs)(_|$)/.test(n) && !src.includes(`'${n}'`))
    expect(unknown, 'metrics no src/ file registers').toEqual([])
  })
})

// ---------------------------------------------------------------------------------------------
// Links, scripts, references outside the repository
// ---------------------------------------------------------------------------------------------

/** GitHub's anchor for a heading. */
function slug (heading: string): string {
  return heading.trim().toLowerCase().replace(/<[^>]+>/g, '').replace(/[^\p{L}\p{N}\s_-]/gu, '').replace(/\s/g, '-')
}
function anchorsOf (md: string): Set<string> {
  const seen = new Map<string, number>()
  const out = new Set<string>()
  const noFences = withoutFences(md)
  for (const m of noFences.matchAll(/^#{1,6}\s+(.+?)\s*#*\s*$/gm)) {
    const s = slug(m[1]!)
    const n = seen.get(s) ?? 0
    out.add(n === 0 ? s : `${s}-${n}`)
    seen.set(s, n + 1)
  }
  return out
}

describe('links and references', () => {
  it('every relative link in README.md and docs/ resolves, #anchors included', () => {
    const broken: string[] = []
    for (const [doc, md] of docText) {
      const noCode = withoutFences(md).replace(/`[^`]*`/g, '')
      for (const m of noCode.matchAll(/\]\(([^)\s]+)\)/g)) {
        const target = m[1]!
        if (/^[a-z]+:/i.test(target)) continue // http(s), mailto
        const [file, anchor] = target.split('#') as [string, string | undefined]
        const path = file === '' ? doc : normalize(join(dirname(doc), file))
        if (path.startsWith('..') || !existsSync(join(ROOT, path))) { broken.push(`${doc}: ${target} (no file ${path})`); continue }
        if (anchor !== undefined && path.endsWith('.md') && !anchorsOf(read(path)).has(anchor)) broken.push(`${doc}: ${target} (no heading #${anchor} in ${path})`)
      }
    }
    expect(broken).toEqual([])
  })

  it('every `npm run X` the docs show is a script of package.json', () => {
    const scripts = Object.keys((JSON.parse(read('package.json')) as { scripts: Record<string, string> }).scripts)
    const unknown = [...docText].flatMap(([doc, md]) => codeOf(md).flatMap((c) => [...c.matchAll(/npm run (?:--silent )?([a-z][\w:-]*)/g)].map((m) => m[1]!))
      .filter((s) => !scripts.includes(s)).map((s) => `${doc}: npm run ${s}`))
    expect(unknown).toEqual([])
  })

  /**
   * The contract and style documents the project was built from live outside the repository; a
   * reader of the repository cannot open them, so nothing may point at them.
   */
  const OUTSIDE = /\b(SPEC|STYLE|FLAGSMITH|LIBRARIES|ANCHORS)\.md\b|\/work\/shared\b|\bSPEC section\b|\bsection \d+(\.\d+)? of the spec\b/

  it('every .md file a source, test, deploy or config file names exists', () => {
    const self = relative(ROOT, import.meta.filename)
    const files = [...filesUnder('src', () => true), ...filesUnder('test', (f) => f !== self), ...filesUnder('scripts', () => true),
      ...filesUnder('bench', (f) => f.endsWith('.ts')), ...filesUnder('deploy', () => true), ...filesUnder('config', () => true)]
    const missing: string[] = []
    for (const f of files) {
      for (const m of read(f).matchAll(/(?<![\w./-])((?:[\w-]+\/)*[\w-]+\.md)\b/g)) {
        const named = m[1]!
        if (OUTSIDE.test(named)) continue // the next two tests
        if (!existsSync(join(ROOT, named)) && !existsSync(join(ROOT, dirname(f), named))) missing.push(`${f}: ${named}`)
      }
    }
    expect(missing).toEqual([])
  })

  it('no doc points at a document outside the repository', () => {
    const offenders = [...docText].filter(([, md]) => OUTSIDE.test(md)).map(([doc, md]) => `${doc}: ${OUTSIDE.exec(md)![0]}`)
    expect(offenders).toEqual([])
  })

  it('no source, test, deploy or config file does either', () => {
    const self = relative(ROOT, import.meta.filename)
    const files = [
      ...filesUnder('src', () => true), ...filesUnder('test', (f) => f !== self), ...filesUnder('scripts', () => true),
      ...filesUnder('bench', (f) => f.endsWith('.ts')), ...filesUnder('deploy', () => true), ...filesUnder('config', () => true),
      'Dockerfile', 'package.json'
    ].filter((f) => existsSync(join(ROOT, f)))
    const offenders = files.filter((f) => OUTSIDE.test(read(f))).map((f) => `${f}: ${OUTSIDE.exec(read(f))![0]}`)
    expect(offenders).toEqual([])
  })
})

// ---------------------------------------------------------------------------------------------
// The demo and the README
// ---------------------------------------------------------------------------------------------

describe('the demo and the README', () => {
  it('no doc quotes the demo\'s numbers as facts: each run prints its own', () => {
    // a paragraph about the demo that gives counts of what it sent, limited, cached, absorbed...
    const QUOTED = /\b\d[\d,.]*\s*%?\s+(requests?|sent|reaching Core|absorbed|limited|cached|stale|shed|blocked)\b/
    const quoted: string[] = []
    for (const [doc, md] of docText) {
      for (const para of md.split(/\n\s*\n/)) {
        if (!/\bdemo\b/i.test(para) || /^\s*\|/.test(para)) continue
        const m = QUOTED.exec(para.replace(/`[^`\n]*`/g, ''))
        if (m !== null) quoted.push(`${doc}: "${m[0]}" in a paragraph about the demo`)
      }
    }
    expect(quoted).toEqual([])
  })

  it('README.md is under 400 lines and shows the two commands CI runs', () => {
    const readme = docText.get('README.md')!
    expect(readme.split('\n').length).toBeLessThan(400)
    expect(readme).toContain('npm ci && npm start')
    expect(readme).toContain('npm ci && npm test')
  })

  it('the docs directory has the pages the README promises', () => {
    for (const page of ['policy', 'operations', 'security', 'design', 'performance', 'benchmarks-history']) {
      expect(existsSync(join(ROOT, 'docs', `${page}.md`)), `docs/${page}.md`).toBe(true)
    }
  })
})
