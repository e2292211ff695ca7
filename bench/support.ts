/**
 * What every benchmark needs: children in their own processes whose stdout goes to a file (parsing
 * a gateway's access log here would bill this process's CPU to the gateway on a two-core machine),
 * and autocannon's CLI in its own process.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, openSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

export interface LoadResult { rps: number; p50: number; p99: number; non2xx: number; errors: number; bytes: number }

export class Children {
  readonly #all: ChildProcess[] = []
  readonly #logDir = mkdtempSync(join(tmpdir(), 'flaggate-bench-'))

  /** Starts `node ARGS` and polls its log for the line `ready` accepts; resolves with what it returns. */
  async start (args: string[], env: NodeJS.ProcessEnv, ready: (line: Record<string, unknown>) => string | undefined): Promise<string> {
    const file = join(this.#logDir, `child-${this.#all.length}.log`)
    const child = spawn(process.execPath, args, { env: { ...process.env, ...env }, stdio: ['ignore', openSync(file, 'w'), 'inherit'] })
    this.#all.push(child)
    let exited = false
    child.once('exit', () => { exited = true })
    // generous: on a shared two-core machine under load a child can take tens of seconds to start
    const deadline = Date.now() + 90_000
    while (Date.now() < deadline && !exited) {
      for (const line of readFileSync(file, 'utf8').split('\n')) {
        try { const url = ready(JSON.parse(line) as Record<string, unknown>); if (url !== undefined) return url } catch {}
      }
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
    throw new Error(`${args.join(' ')} did not start (log: ${file})`)
  }

  /** A flaggate process on `dist/cli.js` with the access log on (it is on in production too). */
  async startFlaggate (configFile: string): Promise<string> {
    return await this.start(['dist/cli.js', 'serve', '--config', configFile], { LOG_LEVEL: 'info' }, (l) => l.msg === 'flaggate serving' ? l.url as string : undefined)
  }

  stopAll (): void {
    for (const c of this.#all) c.kill('SIGTERM')
  }
}

/** `node ARGS` to completion (with `env` added to this process's environment); its stdout. */
export async function runNode (args: string[], env: NodeJS.ProcessEnv = {}): Promise<string> {
  return await new Promise<string>((resolve, reject) => {
    const child = spawn(process.execPath, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] })
    let s = ''
    child.stdout.on('data', (c: Buffer) => { s += c.toString() })
    child.once('exit', (code) => code === 0 ? resolve(s) : reject(new Error(`${args.join(' ')} exited ${code}`)))
  })
}

export function parseAutocannon (json: string): LoadResult {
  const r = JSON.parse(json) as { requests: { average: number }; throughput: { average: number }; latency: { p50: number; p99: number }; non2xx: number; errors: number }
  return { rps: r.requests.average, p50: r.latency.p50, p99: r.latency.p99, non2xx: r.non2xx, errors: r.errors, bytes: r.throughput.average }
}

/** autocannon's CLI against `url`, in its own process. */
export async function autocannonCli (url: string, opts: { connections: number; durationS: number; headers: Record<string, string> }): Promise<LoadResult> {
  const args = ['node_modules/autocannon/autocannon.js', '-c', String(opts.connections), '-d', String(opts.durationS), '-j']
  for (const [k, v] of Object.entries(opts.headers)) args.push('-H', `${k}=${v}`)
  args.push(url)
  return parseAutocannon(await runNode(args))
}
