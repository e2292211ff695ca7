/**
 * A private redis-server for the test suite: a free port, no persistence, its own pid file.
 * We only ever stop the process we started; a Redis we did not start is never touched.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { createServer, connect } from 'node:net'

export function redisServerAvailable (): boolean {
  return spawnSync('redis-server', ['--version'], { stdio: 'ignore' }).status === 0
}

export async function freePort (): Promise<number> {
  return await new Promise((resolve, reject) => {
    const s = createServer()
    s.unref()
    s.on('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const addr = s.address()
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0
      s.close(() => resolve(port))
    })
  })
}

export interface PrivateRedis { url: string; port: number; pid: number; process: ChildProcess; stop(): Promise<void> }

async function waitForPort (port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    const ok = await new Promise<boolean>((resolve) => {
      const sock = connect(port, '127.0.0.1')
      sock.once('connect', () => { sock.end('PING\r\n'); sock.destroy(); resolve(true) })
      sock.once('error', () => resolve(false))
    })
    if (ok) return
    await new Promise((r) => setTimeout(r, 25))
  }
  throw new Error(`redis-server did not listen on ${port} within ${timeoutMs} ms`)
}

/** Starts redis-server in the foreground as our child, so it dies with us and we own its pid. */
export async function startPrivateRedis (port?: number): Promise<PrivateRedis> {
  const p = port ?? await freePort()
  const child = spawn('redis-server', ['--port', String(p), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--protected-mode', 'no'], { stdio: 'ignore' })
  await waitForPort(p, 5000)
  return {
    url: `redis://127.0.0.1:${p}`,
    port: p,
    pid: child.pid!,
    process: child,
    async stop () {
      if (child.exitCode !== null || child.signalCode !== null) return
      // a SIGSTOPped server ignores SIGTERM until continued
      try { process.kill(child.pid!, 'SIGCONT') } catch {}
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
      child.kill('SIGKILL')
      await exited
    }
  }
}
