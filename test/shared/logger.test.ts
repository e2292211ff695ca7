/**
 * LOG_PRETTY=1 in a production install (issue 7): pino-pretty is a devDependency, and the logger
 * handed its name to pino as a transport, so a production install failed to start with it set.
 * Now it is looked up first: present → pretty lines; absent → one warning and JSON.
 *
 * The "production install" is real: dist/ and package.json copied to a temporary directory whose
 * node_modules links every installed package except pino-pretty.
 */
import { spawn } from 'node:child_process'
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { describe, expect, it } from 'vitest'
import { policyYaml } from '../support/gateway.js'

/** Runs `serve` until it has logged that it serves (or died), then stops it with SIGTERM. */
async function serveOnce (cwd: string, cli: string, policy: string): Promise<{ stdout: string; code: number | null }> {
  const child = spawn(process.execPath, [cli, 'serve', '--config', policy], { cwd, env: { ...process.env, LOG_PRETTY: '1', LOG_LEVEL: 'info', NO_COLOR: '1' }, stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  await new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, 20_000)
    child.stdout!.on('data', (c: Buffer) => { stdout += c.toString(); if (stdout.includes('flaggate serving')) { clearTimeout(timer); resolve() } })
    child.stderr!.on('data', (c: Buffer) => { stdout += c.toString() })
    void exited.then(() => { clearTimeout(timer); resolve() })
  })
  child.kill('SIGTERM')
  return { stdout, code: await exited }
}

describe('LOG_PRETTY=1', () => {
  const policy = join(mkdtempSync(join(tmpdir(), 'flaggate-log-')), 'gateway.yaml')
  writeFileSync(policy, policyYaml({ coreUrl: 'http://127.0.0.1:9' }))

  it('with pino-pretty installed: human-readable lines', async () => {
    const r = await serveOnce(process.cwd(), 'dist/cli.js', policy)
    expect(r.stdout).toContain('flaggate serving')
    expect(r.stdout.trimStart().startsWith('{')).toBe(false)
    expect(r.code).toBe(0)
  })

  it('in a production install without pino-pretty: one warning, JSON logs, and it serves', async () => {
    const root = mkdtempSync(join(tmpdir(), 'flaggate-prod-'))
    cpSync('dist', join(root, 'dist'), { recursive: true })
    cpSync('package.json', join(root, 'package.json'))
    mkdirSync(join(root, 'node_modules'))
    for (const name of readdirSync('node_modules')) {
      if (name === 'pino-pretty' || name === '.bin') continue
      symlinkSync(resolve('node_modules', name), join(root, 'node_modules', name))
    }
    expect(existsSync(join(root, 'node_modules', 'pino'))).toBe(true)
    const r = await serveOnce(root, 'dist/cli.js', policy)
    const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { level: number; msg: string })
    expect(lines.filter((l) => l.msg.startsWith('LOG_PRETTY is set but pino-pretty is not installed'))).toHaveLength(1)
    expect(lines.some((l) => l.msg === 'flaggate serving')).toBe(true)
    expect(r.code).toBe(0)
  })
})
