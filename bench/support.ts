/**
 * What every benchmark needs: children in their own processes whose stdout goes to a file (parsing
 * a gateway's access log here would bill this process's CPU to the gateway on a two-core machine),
 * a load generator in its own process (wrk when installed, autocannon's CLI otherwise), and the
 * CPU time each process spent, read from /proc/<pid>/stat (on shared cores req/s swings from run
 * to run; CPU time per request much less).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdtempSync, openSync, readFileSync, readdirSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

export interface LoadResult {
  rps: number
  /** ms */
  p50: number
  p99: number
  non2xx: number
  errors: number
  /** bytes per second */
  bytes: number
  requests: number
  /** CPU µs per request of each watched process, by label */
  cpuUsPerReq: Record<string, number>
  /** the user-mode part of it: what a change to our code moves, without the kernel's share of the noise */
  userUsPerReq: Record<string, number>
}

export interface Started { info: Record<string, unknown>; pid: number }

const logRoot = mkdtempSync(join(tmpdir(), 'flaggate-bench-'))

export class Children {
  readonly #all: ChildProcess[] = []
  readonly logDir = logRoot

  /** Starts `node ARGS` and polls its log for the line `ready` accepts; resolves with that line and the pid. */
  async spawn (args: string[], env: NodeJS.ProcessEnv, ready: (line: Record<string, unknown>) => boolean, cwd?: string): Promise<Started> {
    const file = join(this.logDir, `child-${this.#all.length}.log`)
    const child = spawn(process.execPath, args, { env: { ...process.env, ...env }, stdio: ['ignore', openSync(file, 'w'), 'inherit'], ...(cwd !== undefined ? { cwd } : {}) })
    this.#all.push(child)
    let exited = false
    child.once('exit', () => { exited = true })
    // generous: on a shared two-core machine under load a child can take tens of seconds to start
    const deadline = Date.now() + 90_000
    while (Date.now() < deadline && !exited) {
      for (const line of readFileSync(file, 'utf8').split('\n')) {
        try { const l = JSON.parse(line) as Record<string, unknown>; if (ready(l)) return { info: l, pid: child.pid! } } catch {}
      }
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
    throw new Error(`${args.join(' ')} did not start (log: ${file})`)
  }

  /** Starts a non-node program (nginx); `ready` is polled until it resolves true. */
  async spawnCommand (cmd: string, args: string[], ready: () => Promise<boolean>): Promise<number> {
    const file = join(this.logDir, `child-${this.#all.length}.log`)
    const child = spawn(cmd, args, { stdio: ['ignore', openSync(file, 'w'), openSync(file, 'a')] })
    this.#all.push(child)
    let exited = false
    child.once('exit', () => { exited = true })
    child.once('error', () => { exited = true })
    const deadline = Date.now() + 20_000
    while (Date.now() < deadline && !exited) {
      if (await ready()) return child.pid!
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
    throw new Error(`${cmd} ${args.join(' ')} did not start (log: ${file}: ${readFileSync(file, 'utf8').slice(0, 500)})`)
  }

  /** Starts `node ARGS` and resolves with the `url` its first JSON line names (or what `ready` returns). */
  async start (args: string[], env: NodeJS.ProcessEnv, ready: (line: Record<string, unknown>) => string | undefined): Promise<string> {
    const s = await this.spawn(args, env, (l) => ready(l) !== undefined)
    return ready(s.info)!
  }

  /** A flaggate process on `dist/cli.js` with the access log on (it is on in production too). */
  async spawnFlaggate (configFile: string, nodeArgs: string[] = [], cwd?: string): Promise<Started & { url: string }> {
    const cli = join(process.cwd(), 'dist/cli.js')
    const s = await this.spawn([...nodeArgs, cli, 'serve', '--config', configFile], { LOG_LEVEL: 'info' }, (l) => l.msg === 'flaggate serving', cwd)
    return { ...s, url: s.info.url as string }
  }

  async startFlaggate (configFile: string): Promise<string> {
    return (await this.spawnFlaggate(configFile)).url
  }

  /** SIGTERM to one child; resolves when it has exited. */
  async stop (pid: number): Promise<void> {
    const c = this.#all.find((x) => x.pid === pid)
    if (c === undefined || c.exitCode !== null || c.signalCode !== null) return
    await new Promise<void>((resolve) => { c.once('exit', () => resolve()); c.kill('SIGTERM') })
  }

  stopAll (): void {
    for (const c of this.#all) if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM')
  }
}

/** `node ARGS` to completion (with `env` added to this process's environment); its stdout. */
export async function runNode (args: string[], env: NodeJS.ProcessEnv = {}): Promise<string> {
  return await run(process.execPath, args, env)
}

async function run (cmd: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<string> {
  return await new Promise<string>((resolve, reject) => {
    const child = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] })
    let s = ''
    child.stdout.on('data', (c: Buffer) => { s += c.toString() })
    child.once('error', reject)
    child.once('exit', (code) => code === 0 ? resolve(s) : reject(new Error(`${cmd} ${args.join(' ')} exited ${code}`)))
  })
}

// ---------------------------------------------------------------------------------------------
// /proc
// ---------------------------------------------------------------------------------------------

const TICK_US = 1e6 / Number(spawnSync('getconf', ['CLK_TCK']).stdout?.toString().trim() || 100)

/** utime + stime (or utime alone) of one process, in µs (clock-tick resolution). */
export function cpuUs (pid: number, which: 'all' | 'user' = 'all'): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    // the command name may contain spaces: fields are counted after its closing parenthesis
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return (Number(f[11]) + (which === 'user' ? 0 : Number(f[12]))) * TICK_US
  } catch { return NaN }
}

/** The process and all its descendants (nginx: master and worker). */
export function processTree (pid: number): number[] {
  const out = [pid]
  for (let i = 0; i < out.length; i++) {
    const p = out[i]!
    let tasks: string[] = []
    try { tasks = readdirSync(`/proc/${p}/task`) } catch { continue }
    for (const t of tasks) {
      try {
        for (const c of readFileSync(`/proc/${p}/task/${t}/children`, 'utf8').trim().split(/\s+/)) if (c !== '') out.push(Number(c))
      } catch {}
    }
  }
  return out
}

export function treeCpuUs (pid: number, which: 'all' | 'user' = 'all'): number {
  let n = 0
  for (const p of processTree(pid)) n += cpuUs(p, which)
  return n
}

/** Resident set size, bytes. */
export function rssBytes (pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
    return m === null ? NaN : Number(m[1]) * 1024
  } catch { return NaN }
}

// ---------------------------------------------------------------------------------------------
// Load generators
// ---------------------------------------------------------------------------------------------

export function wrkAvailable (): boolean {
  return spawnSync('wrk', ['-v'], { stdio: 'ignore' }).error === undefined
}

export interface LoadOptions {
  connections: number
  durationS: number
  headers: Record<string, string>
  /** rotate X-Environment-Key over `ser.bench-0 … ser.bench-<keys-1>` (wrk only) */
  keys?: number
  /** processes whose CPU time is measured around the run, by label; a pid's whole tree is counted */
  watch?: Record<string, number>
}

const luaDir = mkdtempSync(join(tmpdir(), 'flaggate-bench-lua-'))
let luaN = 0

/**
 * wrk's `done` hook prints one JSON line; with `keys`, each request takes the next key of the
 * cycle (one wrk thread, so one Lua state and one counter).
 */
function wrkScript (opts: { headers: Record<string, string>; keys?: number }): string {
  const file = join(luaDir, `s${luaN++}.lua`)
  const lines: string[] = []
  for (const [k, v] of Object.entries(opts.headers)) lines.push(`wrk.headers[${JSON.stringify(k)}] = ${JSON.stringify(v)}`)
  if (opts.keys !== undefined) {
    lines.push(`local n = 0`, `local N = ${opts.keys}`,
      `request = function()`,
      `  wrk.headers["x-environment-key"] = "ser.bench-" .. (n % N)`,
      `  n = n + 1`,
      `  return wrk.format(nil, nil)`,
      `end`)
  }
  lines.push(`done = function(s, latency, requests)`,
    `  io.write(string.format('{"requests":%d,"durationUs":%d,"bytes":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,"p50":%d,"p99":%d}\\n',`,
    `    s.requests, s.duration, s.bytes, s.errors.connect, s.errors.read, s.errors.write, s.errors.status, s.errors.timeout, latency:percentile(50), latency:percentile(99)))`,
    `end`)
  writeFileSync(file, lines.join('\n') + '\n')
  return file
}

function parseWrk (out: string): Omit<LoadResult, 'cpuUsPerReq' | 'userUsPerReq'> {
  const line = out.split('\n').find((l) => l.startsWith('{"requests"'))
  if (line === undefined) throw new Error(`wrk printed no summary:\n${out}`)
  const r = JSON.parse(line) as { requests: number; durationUs: number; bytes: number; connect: number; read: number; write: number; status: number; timeout: number; p50: number; p99: number }
  const s = r.durationUs / 1e6
  return { rps: r.requests / s, p50: r.p50 / 1000, p99: r.p99 / 1000, non2xx: r.status, errors: r.connect + r.read + r.write + r.timeout, bytes: r.bytes / s, requests: r.requests }
}

export function parseAutocannon (json: string): LoadResult {
  const r = JSON.parse(json) as { requests: { average: number; total: number }; throughput: { average: number }; latency: { p50: number; p99: number }; non2xx: number; errors: number }
  return { rps: r.requests.average, p50: r.latency.p50, p99: r.latency.p99, non2xx: r.non2xx, errors: r.errors, bytes: r.throughput.average, requests: r.requests.total, cpuUsPerReq: {}, userUsPerReq: {} }
}

/** autocannon's CLI against `url`, in its own process. */
export async function autocannonCli (url: string, opts: { connections: number; durationS: number; headers: Record<string, string> }): Promise<LoadResult> {
  const args = ['node_modules/autocannon/autocannon.js', '-c', String(opts.connections), '-d', String(opts.durationS), '-j']
  for (const [k, v] of Object.entries(opts.headers)) args.push('-H', `${k}=${v}`)
  args.push(url)
  return parseAutocannon(await runNode(args))
}

/** One run of the load generator, in its own process, with the CPU time of the watched processes. */
export async function load (url: string, opts: LoadOptions): Promise<LoadResult> {
  const watch = opts.watch ?? {}
  const before: Record<string, number> = {}
  const beforeUser: Record<string, number> = {}
  for (const [k, pid] of Object.entries(watch)) { before[k] = treeCpuUs(pid); beforeUser[k] = treeCpuUs(pid, 'user') }
  let r: Omit<LoadResult, 'cpuUsPerReq' | 'userUsPerReq'>
  if (wrkAvailable()) {
    const script = wrkScript({ headers: opts.headers, ...(opts.keys !== undefined ? { keys: opts.keys } : {}) })
    r = parseWrk(await run('wrk', ['-t1', `-c${opts.connections}`, `-d${opts.durationS}s`, '--timeout', '10s', '-s', script, url]))
  } else {
    if (opts.keys !== undefined && opts.keys > 1) throw new Error('rotating keys needs wrk')
    r = await autocannonCli(url, opts)
  }
  const cpuUsPerReq: Record<string, number> = {}
  const userUsPerReq: Record<string, number> = {}
  for (const [k, pid] of Object.entries(watch)) {
    cpuUsPerReq[k] = (treeCpuUs(pid) - before[k]!) / Math.max(1, r.requests)
    userUsPerReq[k] = (treeCpuUs(pid, 'user') - beforeUser[k]!) / Math.max(1, r.requests)
  }
  return { ...r, cpuUsPerReq, userUsPerReq }
}

/**
 * Sends one request for each of the keys `ser.bench-<from> … ser.bench-<keys-1>` (or as many as fit
 * in `maxSeconds`), in its own process.
 */
export async function warmKeys (url: string, keys: number, connections: number, maxSeconds?: number, from = 0): Promise<{ seconds: number; requests: number; non2xx: number; errors: number }> {
  const args = ['--import', 'tsx', 'bench/warm-keys.ts', url, String(keys), String(connections), maxSeconds === undefined ? '' : String(maxSeconds), String(from)]
  return JSON.parse(await runNode(args)) as { seconds: number; requests: number; non2xx: number; errors: number }
}

export function median (xs: number[]): number {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b)
  if (s.length === 0) return NaN
  const m = s.length >> 1
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2
}

/**
 * `perf record` of a process's main thread (its pid as a thread id: the event loop) for `seconds`
 * into `file`, `hz` samples a second (node --perf-basic-prof names its JavaScript frames);
 * resolves when perf has written it. Read it with
 * `node --import tsx bench/perf.ts --data FILE --requests N`.
 */
export async function recordPerf (pid: number, seconds: number, file: string, hz = 1999): Promise<void> {
  const rec = spawn('perf', ['record', '-F', String(hz), '-g', '-t', String(pid), '-o', file, '--', 'sleep', String(seconds)], { stdio: 'ignore' })
  await new Promise<void>((resolve) => { rec.once('exit', () => resolve()); rec.once('error', () => resolve()) })
}
