/**
 * Every failure to read a policy is a verdict (issue 7): whatever the bytes, loading ends in a
 * policy or a list of positioned errors, `flaggate validate` prints them (no stack trace) and exits
 * 1, and a running gateway keeps serving on its last good policy when such a file is saved under it.
 */
import { spawnSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { formatPolicyError, loadPolicy, type PolicyResult } from '../../src/policy/load.js'
import { loadPolicyBytes, loadPolicyFile } from '../../src/policy/file.js'
import { PolicyStore } from '../../src/policy/store.js'
import { policyYaml, spawnGateway, tempPolicyFile } from '../support/gateway.js'
import { json, raw } from '../support/http.js'
import { billionLaughs, HOSTILE_FILES } from './hostile-files.js'
import { useGateway } from '../support/use-gateway.js'

function expectVerdict (r: PolicyResult, file: string): asserts r is Extract<PolicyResult, { ok: false }> {
  expect(r.ok).toBe(false)
  if (r.ok) return
  expect(r.errors.length).toBeGreaterThan(0)
  for (const e of r.errors) {
    expect(e.file).toBe(file)
    expect(Number.isInteger(e.line) && e.line >= 1).toBe(true)
    expect(Number.isInteger(e.col) && e.col >= 1).toBe(true)
    expect(e.message).not.toBe('')
    expect(e.message).not.toMatch(/Maximum call stack/)
  }
}

describe('a hostile policy file is a verdict, never an exception', () => {
  it.each(HOSTILE_FILES.map((h) => [h.name, h] as const))('%s', (_name, h) => {
    const r = loadPolicyBytes('p.yaml', h.bytes, {})
    expectVerdict(r, 'p.yaml')
    // one error naming the problem, not one per level or per alias
    expect(r.errors).toHaveLength(1)
    expect(r.errors[0]!.message).toMatch(h.message)
    if (h.at !== undefined) expect({ line: r.errors[0]!.line, col: r.errors[0]!.col }).toEqual(h.at)
  })

  it('the billion laughs file no longer throws out of loadPolicy (it killed a reloading gateway)', () => {
    expect(() => loadPolicy('p.yaml', billionLaughs(), {})).not.toThrow()
  })

  it('a BOM before a valid policy is fine', () => {
    const yaml = readFileSync('config/gateway.yaml')
    const r = loadPolicyBytes('gateway.yaml', Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), yaml]), { FLAGGATE_ADMIN_TOKEN: '' })
    expect(r.ok ? 'ok' : r.errors.map(formatPolicyError)).toBe('ok')
  })

  it('__proto__ is an unknown key, not a way into the prototype', () => {
    const r = loadPolicy('p.yaml', 'upstreams: { core: { url: "http://127.0.0.1:9" } }\nroutes: [{ name: a, match: { pathPrefix: / }, upstream: core }]\n__proto__: { polluted: 1 }\n', {})
    expectVerdict(r, 'p.yaml')
    expect(r.errors.map(formatPolicyError)).toEqual(["p.yaml:3:1: __proto__: unknown key '__proto__'"])
    expect(({} as Record<string, unknown>).polluted).toBeUndefined()
  })

  it('a file with thousands of errors reports the first 100 and says how many more', () => {
    const r = loadPolicy('p.yaml', 'upstreams: { core: { url: "http://127.0.0.1:9" } }\nroutes: [' + '1,'.repeat(5000) + ']\n', {})
    expectVerdict(r, 'p.yaml')
    expect(r.errors).toHaveLength(101)
    expect(r.errors[100]!.message).toBe('4900 more errors not shown')
  })

  describe('files that are not files', () => {
    const dir = mkdtempSync(join(tmpdir(), 'flaggate-hostile-'))
    afterAll(() => rmSync(dir, { recursive: true, force: true }))

    it('a missing file', () => {
      const r = loadPolicyFile('gone.yaml', join(dir, 'gone.yaml'), {})
      expectVerdict(r, 'gone.yaml')
      expect(r.errors[0]!.message).toMatch(/cannot read the policy file: ENOENT/)
    })

    it('a directory', () => {
      mkdirSync(join(dir, 'adir'))
      const r = loadPolicyFile('adir', join(dir, 'adir'), {})
      expectVerdict(r, 'adir')
      expect(r.errors[0]!.message).toBe('cannot read the policy file: it is a directory')
    })

    it('a FIFO nobody writes to (answers at once instead of waiting for a writer)', () => {
      const fifo = join(dir, 'fifo.yaml')
      if (spawnSync('mkfifo', [fifo]).status !== 0) return // no mkfifo on this system
      const r = loadPolicyFile('fifo.yaml', fifo, {})
      expectVerdict(r, 'fifo.yaml')
      expect(r.errors[0]!.message).toBe('cannot read the policy file: it is not a regular file')
    })

    it('a file replaced again and again while it is read: each read is a verdict', () => {
      const good = readFileSync('config/gateway.yaml', 'utf8')
      const file = join(dir, 'churn.yaml')
      writeFileSync(file, good)
      const env = { FLAGGATE_ADMIN_TOKEN: '' }
      let oks = 0
      for (let i = 0; i < 200; i++) {
        // alternate a truncating rewrite (a reader can see it half written) and an atomic rename
        if (i % 2 === 0) writeFileSync(file, good.slice(0, (i * 97) % good.length))
        else { writeFileSync(file + '.tmp', good); renameSync(file + '.tmp', file) }
        const r = loadPolicyFile('churn.yaml', file, env)
        if (r.ok) oks++
        else expectVerdict(r, 'churn.yaml')
      }
      expect(oks).toBeGreaterThan(0)
    })
  })
})

describe('flaggate validate on hostile files', () => {
  const run = (file: string) => spawnSync(process.execPath, ['dist/cli.js', 'validate', file], { encoding: 'utf8', timeout: 30_000 })

  it.each(HOSTILE_FILES.map((h) => [h.name, h] as const))('%s: exit 1, FILE:LINE:COL lines, no stack trace', (_name, h) => {
    const file = tempPolicyFile('')
    writeFileSync(file, h.bytes)
    const r = run(file)
    expect(r.status).toBe(1)
    const lines = r.stderr.trimEnd().split('\n')
    expect(lines.at(-1)).toBe(`${file}: 1 error`)
    expect(lines[0]).toMatch(new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:\\d+:\\d+: `))
    expect(lines[0]).toMatch(h.message)
    expect(r.stderr).not.toMatch(/\n\s+at /)
  })

  it('a directory: exit 1 with a verdict', () => {
    const dir = mkdtempSync(join(tmpdir(), 'flaggate-hostile-'))
    const r = run(dir)
    expect(r.status).toBe(1)
    expect(r.stderr).toBe(`${dir}:1:1: (root): cannot read the policy file: it is a directory\n${dir}: 1 error\n`)
  })
})

describe('a running gateway survives each hostile file saved under it', () => {
  const t = useGateway()

  const KEY = { 'x-environment-key': 'dev_client_key' }
  const status = async () => json(await raw(t.gw.adminUrl, '/admin/status')) as { policy: { version: string; lastError: null | { at: string; errors: string[] } } }
  const replace = (bytes: Buffer) => { writeFileSync(t.gw.file + '.tmp', bytes); renameSync(t.gw.file + '.tmp', t.gw.file) }

  /** waits until the file watch has reloaded and refused the file with the expected error (a refusal newer than `since`) */
  async function refused (message: RegExp, since: string | undefined): Promise<string[]> {
    const deadline = Date.now() + 15_000
    for (;;) {
      const s = await status()
      const errors = s.policy.lastError?.errors ?? []
      if (s.policy.lastError?.at !== since && errors.some((e) => message.test(e))) return errors
      if (Date.now() > deadline) throw new Error(`no reload refused with ${message}; last error: ${JSON.stringify(s.policy.lastError)}`)
      await new Promise((resolve) => setTimeout(resolve, 25))
    }
  }

  it('keeps serving on the previous policy and shows every refusal in /admin/status', async () => {
    const good = readFileSync(t.gw.file)
    const before = (await status()).policy.version
    expect((await raw(t.gw.url, '/api/v1/flags/', { headers: KEY })).status).toBe(200)
    const lastAt = async () => (await status()).policy.lastError?.at
    for (const h of HOSTILE_FILES) {
      const since = await lastAt()
      // refusals are timestamped to the millisecond: make sure the next one is distinguishable
      await new Promise((resolve) => setTimeout(resolve, 5))
      replace(h.bytes)
      const errors = await refused(h.message, since)
      expect(errors.length, h.name).toBe(1)
      expect(errors[0], h.name).toMatch(/^gateway\.yaml:\d+:\d+: /)
      expect((await raw(t.gw.url, '/api/v1/flags/', { headers: KEY })).status, h.name).toBe(200)
      expect((await status()).policy.version, h.name).toBe(before)
    }

    // not a file at all: removed, then a directory in its place
    rmSync(t.gw.file)
    await refused(/cannot read the policy file: ENOENT/, undefined)
    mkdirSync(t.gw.file)
    await refused(/it is a directory/, undefined)
    expect((await raw(t.gw.url, '/api/v1/flags/', { headers: KEY })).status).toBe(200)
    rmSync(t.gw.file, { recursive: true })

    // and the watch still works: a good file applies
    replace(Buffer.from(good.toString().replace('bodyLimit: 1mb', 'bodyLimit: 2mb')))
    const deadline = Date.now() + 15_000
    while ((await status()).policy.version === before && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 25))
    const after = await status()
    expect(after.policy.version).not.toBe(before)
    expect(after.policy.lastError).toBeNull()
    expect(t.gw.logs.lines.filter((l) => l.msg === 'policy reload refused: the previous policy stays in force').length).toBeGreaterThanOrEqual(HOSTILE_FILES.length)
  })

  it('a gateway process survives the billion laughs on SIGHUP and keeps serving', async () => {
    const g = await spawnGateway(policyYaml({ coreUrl: t.upstream.url }))
    let exited = false
    g.process.once('exit', () => { exited = true })
    try {
      writeFileSync(g.file, billionLaughs())
      g.process.kill('SIGHUP')
      const deadline = Date.now() + 15_000
      while (!g.logs.some((l) => l.msg === 'policy reload refused: the previous policy stays in force') && Date.now() < deadline && !exited) {
        await new Promise((resolve) => setTimeout(resolve, 25))
      }
      expect(exited).toBe(false)
      expect((await raw(g.url, '/api/v1/flags/', { headers: KEY })).status).toBe(200)
    } finally { expect(await g.stop()).toBe(0) }
  })

  it('PolicyStore.reload with no error listener does not throw (EventEmitter throws unheard errors)', () => {
    const file = tempPolicyFile(policyYaml({ coreUrl: t.upstream.url }))
    const store = PolicyStore.open(file, {})
    writeFileSync(file, billionLaughs())
    const outcome = store.reload()
    expect(outcome.ok).toBe(false)
    expect(outcome.errors[0]!.message).toMatch(/aliases expand/)
  })
})
