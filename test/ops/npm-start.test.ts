/**
 * `npm start` stopped by its PID: npm forwards SIGTERM to the script's process, and the script
 * `exec`s node (npm runs scripts through sh), so that process IS the gateway: it drains and
 * exits, the port is released and no gateway is left behind, reparented to PID 1.
 */
import { spawn } from 'node:child_process'
import { mkdtempSync } from 'node:fs'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'

const alive = (pid: number): boolean => { try { process.kill(pid, 0); return true } catch { return false } }
const accepts = async (port: number): Promise<boolean> => await new Promise((resolve) => {
  const s = connect(port, '127.0.0.1', () => { s.destroy(); resolve(true) })
  s.once('error', () => resolve(false))
})

describe('npm start', () => {
  it('SIGTERM to the npm process stops the gateway: port released, no process left', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'flaggate-npm-start-'))
    const npm = spawn('npm', ['start', '--silent'], {
      env: { ...process.env, FLAGGATE_LISTEN: '127.0.0.1:0', FLAGGATE_ADMIN_LISTEN: '127.0.0.1:0', FLAGGATE_ADMIN_TOKEN: '', FLAGGATE_STATE_FILE: join(dir, 'blocks.json'), FLAGSMITH_CORE_URL: 'http://127.0.0.1:9', LOG_LEVEL: 'info' },
      stdio: ['ignore', 'pipe', 'pipe']
    })
    const exited = new Promise<number | null>((resolve) => npm.once('exit', (code) => resolve(code)))
    const serving = await new Promise<{ url: string; pid: number }>((resolve, reject) => {
      let buf = ''
      npm.stdout.on('data', (c: Buffer) => {
        buf += c.toString()
        for (const line of buf.split('\n')) {
          try {
            const e = JSON.parse(line) as { msg?: string; url?: string; pid?: number }
            if (e.msg === 'flaggate serving') resolve({ url: e.url!, pid: e.pid! })
          } catch {}
        }
      })
      void exited.then((code) => reject(new Error(`npm start exited with ${code} before serving`)))
    })
    const port = Number(new URL(serving.url).port)
    expect(await accepts(port)).toBe(true)
    // exec: the gateway is npm's own child, not a grandchild behind a shell that ignores signals
    expect(serving.pid).not.toBe(npm.pid)

    npm.kill('SIGTERM')
    await exited
    // the gateway drains (bounded by shutdownTimeout, 10 s in the shipped policy) and exits
    const deadline = Date.now() + 15_000
    while (alive(serving.pid) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100))
    expect(alive(serving.pid)).toBe(false)
    expect(await accepts(port)).toBe(false)
  }, 60_000)
})
