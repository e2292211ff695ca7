/**
 * Each field of the per-request record (`request.gateway`, src/contracts/request.ts) has one
 * writer: the files its "Writer:" note names, and no other. Found by the type checker, not by
 * variable names: every assignment in src/ (`=`, `??=`, `+=`, `++`, `delete`, …) to a property of
 * a value typed `RequestGateway`, and every creation of the record (`request.gateway = {…}`),
 * which only routing does.
 */
import { fileURLToPath } from 'node:url'
import path from 'node:path'
import ts from 'typescript'
import { describe, expect, it } from 'vitest'

const root = fileURLToPath(new URL('..', import.meta.url))
const src = path.join(root, 'src')
const RECORD_FILE = 'contracts/request.ts'

/** field → the files (relative to src/) its Writer: note names */
function declaredWriters (program: ts.Program): Map<string, string[]> {
  const file = program.getSourceFile(path.join(src, RECORD_FILE))!
  const out = new Map<string, string[]>()
  file.forEachChild((node) => {
    if (!ts.isInterfaceDeclaration(node) || node.name.text !== 'RequestGateway') return
    for (const m of node.members) {
      const name = (m.name as ts.Identifier).text
      // the doc comment: the member's leading trivia
      const doc = m.getFullText(file).slice(0, m.getStart(file) - m.getFullStart())
      const note = doc.slice(doc.indexOf('Writer:') === -1 ? doc.length : doc.indexOf('Writer:'))
      out.set(name, [...new Set(note.match(/[\w-]+(?:\/[\w-]+)*\.ts/g) ?? [])].sort())
    }
  })
  return out
}

/** field → the files of src/ that write it; `(creation)` → the files that create the record */
function actualWriters (program: ts.Program): Map<string, string[]> {
  const checker = program.getTypeChecker()
  const found = new Map<string, Set<string>>()
  const note = (field: string, file: string): void => {
    const s = found.get(field) ?? new Set<string>()
    s.add(file)
    found.set(field, s)
  }
  const isRecord = (e: ts.Expression): boolean => {
    const t = checker.getNonNullableType(checker.getTypeAtLocation(e))
    return (t.aliasSymbol ?? t.getSymbol())?.getName() === 'RequestGateway'
  }
  const written = (target: ts.Expression, file: string): void => {
    let e = target
    while (ts.isParenthesizedExpression(e) || ts.isNonNullExpression(e)) e = e.expression
    if (ts.isPropertyAccessExpression(e) || ts.isElementAccessExpression(e)) {
      const name = ts.isPropertyAccessExpression(e) ? e.name.text : e.argumentExpression.getText()
      if (isRecord(e.expression)) note(name, file)
      else if (name === 'gateway' && isRecord(e)) note('(creation)', file)
    }
  }
  for (const sf of program.getSourceFiles()) {
    if (!sf.fileName.startsWith(src + path.sep) || sf.isDeclarationFile) continue
    const file = path.relative(src, sf.fileName).split(path.sep).join('/')
    const visit = (node: ts.Node): void => {
      if (ts.isBinaryExpression(node) && node.operatorToken.kind >= ts.SyntaxKind.FirstAssignment && node.operatorToken.kind <= ts.SyntaxKind.LastAssignment) written(node.left, file)
      else if ((ts.isPrefixUnaryExpression(node) || ts.isPostfixUnaryExpression(node)) && (node.operator === ts.SyntaxKind.PlusPlusToken || node.operator === ts.SyntaxKind.MinusMinusToken)) written(node.operand, file)
      else if (ts.isDeleteExpression(node)) written(node.expression, file)
      node.forEachChild(visit)
    }
    visit(sf)
  }
  return new Map([...found].map(([k, v]) => [k, [...v].sort()]))
}

describe('the per-request record', () => {
  const program = ts.createProgram([path.join(src, 'gateway.ts'), path.join(src, 'cli.ts')], {
    target: ts.ScriptTarget.ES2023, module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext, strict: true, skipLibCheck: true, noEmit: true, types: ['node']
  })
  const declared = declaredWriters(program)
  const actual = actualWriters(program)

  it('every field names the file(s) of its one writer', () => {
    expect(declared.size).toBeGreaterThan(10)
    for (const [field, files] of declared) {
      expect(files, `${field}: its Writer: note names no file`).not.toEqual([])
      // one writer: one step, so its files are in one component (a folder of src/, or app.ts)
      expect(new Set(files.map((f) => f.split('/')[0])).size, `${field}: ${files.join(', ')}`).toBe(1)
      for (const f of files) expect(program.getSourceFile(path.join(src, f)), `${field}: no file src/${f}`).toBeDefined()
    }
  })

  it('only routing creates the record', () => {
    expect(actual.get('(creation)')).toEqual(['routing/plugin.ts'])
  })

  it('each field is written by exactly the files its Writer: note names', () => {
    const problems: string[] = []
    for (const [field, files] of actual) {
      if (field === '(creation)') continue
      const named = declared.get(field)
      if (named === undefined) { problems.push(`${field}: written by ${files.join(', ')}, but not a field of RequestGateway`); continue }
      const extra = files.filter((f) => !named.includes(f))
      if (extra.length > 0) problems.push(`${field}: written by ${extra.join(', ')}, not named in its Writer: note (${named.join(', ')})`)
    }
    for (const [field, named] of declared) {
      const files = actual.get(field) ?? []
      const idle = named.filter((f) => !files.includes(f) && f !== 'routing/plugin.ts')
      if (idle.length > 0) problems.push(`${field}: its Writer: note names ${idle.join(', ')}, which never write it`)
    }
    expect(problems).toEqual([])
  })
})
