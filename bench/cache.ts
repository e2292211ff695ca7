/**
 * Environment-document cache: hit throughput against the miss path, on the same machine, in the
 * same run. Every part has its own process: the fake Core (bench/upstream.ts), flaggate
 * (dist/cli.js; run `npm run build` first) and the load generator (autocannon's CLI).
 *
 *   hit   GET /api/v1/environment-document/                    answered from memory
 *   miss  GET /api/v1/environment-document/?page_id=<random>   every request a new cache key: one
 *                                                              fill (a Core request, 11 queries) each
 *
 * Usage: node --import tsx bench/cache.ts [--duration 10] [--connections 50] [--query-latency 1]
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, openSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'

const { values } = parseArgs({ options: { duration: { type: 'string', default: '10' }, connections: { type: 'string', default: '50' }, 'query-latency': { type: 'string', default: '1' }, 'miss-load': { type: 'string' } } })
const DURATION = Number(values.duration)
const CONNECTIONS = Number(values.connections)
const KEY = 'ser.dev_server_key'
const ENV_DOC = '/api/v1/environment-document/'
const children: ChildProcess[] = []
const logDir = mkdtempSync(join(tmpdir(), 'flaggate-bench-cache-'))

/** A child with stdout in a file (parsing its access log here would steal the gateway's CPU). */
async function start (args: string[], env: NodeJS.ProcessEnv, ready: (line: Record<string, unknown>) => string | undefined): Promise<string> {
  const file = join(logDir, `child-${children.length}.log`)
  const child = spawn(process.execPath, args, { env: { ...process.env, ...env }, stdio: ['ignore', openSync(file, 'w'), 'inherit'] })
  children.push(child)
  let exited = false
  child.once('exit', () => { exited = true })
  const deadline = Date.now() + 20_000
  while (Date.now() < deadline && !exited) {
    for (const line of readFileSync(file, 'utf8').split('\n')) {
      try { const url = ready(JSON.parse(line) as Record<string, unknown>); if (url !== undefined) return url } catch {}
    }
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  throw new Error(`${args.join(' ')} did not start (log: ${file})`)
}

interface Result { rps: number; p50: number; p99: number; non2xx: number; errors: number; bytes: number }

function parseResult (out: string): Result {
  const r = JSON.parse(out) as { requests: { average: number }; throughput: { average: number }; latency: { p50: number; p99: number }; non2xx: number; errors: number }
  return { rps: r.requests.average, p50: r.latency.p50, p99: r.latency.p99, non2xx: r.non2xx, errors: r.errors, bytes: r.throughput.average }
}

async function run (args: string[]): Promise<string> {
  return await new Promise<string>((resolve, reject) => {
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] })
    let s = ''
    child.stdout.on('data', (c: Buffer) => { s += c.toString() })
    child.once('exit', (code) => code === 0 ? resolve(s) : reject(new Error(`${args.join(' ')} exited ${code}`)))
  })
}

/** autocannon's CLI, in its own process. */
async function load (url: string): Promise<Result> {
  return parseResult(await run(['node_modules/autocannon/autocannon.js', '-c', String(CONNECTIONS), '-d', String(DURATION), '-j', '-H', `x-environment-key=${KEY}`, url]))
}

/**
 * The miss path needs a new cache key per request, which the CLI cannot do (it rejects
 * `[<id>]` in a URL), so this file runs itself in a child process with autocannon's API.
 */
async function loadMisses (base: string): Promise<Result> {
  return parseResult(await run(['--import', 'tsx', 'bench/cache.ts', '--miss-load', base, '--duration', String(DURATION), '--connections', String(CONNECTIONS)]))
}

async function missLoadChild (base: string): Promise<void> {
  const { default: autocannon } = await import('autocannon')
  let n = 0
  const result = await autocannon({
    url: base,
    connections: CONNECTIONS,
    duration: DURATION,
    headers: { 'x-environment-key': KEY },
    requests: [{ setupRequest: (req) => ({ ...req, path: `${ENV_DOC}?page_id=miss-${process.pid}-${n++}` }) }]
  })
  process.stdout.write(JSON.stringify(result) + '\n')
}

function policy (coreUrl: string): string {
  return `server: { listen: 127.0.0.1:0 }
admin: { listen: 127.0.0.1:0 }
upstreams:
  core: { url: "${coreUrl}", timeout: 10s, maxConnections: 128 }
routes:
  - name: environment-document
    match: { methods: [GET], path: ${ENV_DOC} }
    upstream: core
    cache: { ttl: 30s, staleWhileRevalidate: 60s, staleIfError: 10m }
  - name: default
    match: { pathPrefix: / }
    upstream: core
cache: { maxSize: 256mb }
`
}

async function main (): Promise<void> {
  try {
    const coreUrl = await start(['--import', 'tsx', 'bench/upstream.ts'], { QUERY_LATENCY_MS: values['query-latency'], POOL_SIZE: '20' }, (l) => l.url as string)
    const dir = mkdtempSync(join(tmpdir(), 'flaggate-bench-cache-'))
    writeFileSync(join(dir, 'gateway.yaml'), policy(coreUrl))
    const gateUrl = await start(['dist/cli.js', 'serve', '--config', join(dir, 'gateway.yaml')], { LOG_LEVEL: 'info' }, (l) => l.msg === 'flaggate serving' ? l.url as string : undefined)

    const probe = await fetch(`${gateUrl}${ENV_DOC}`, { headers: { 'x-environment-key': KEY } })
    const again = await fetch(`${gateUrl}${ENV_DOC}`, { headers: { 'x-environment-key': KEY } })
    const size = (await again.arrayBuffer()).byteLength
    await probe.arrayBuffer()
    if (again.headers.get('x-cache-status') !== 'HIT') throw new Error(`the gateway did not cache the document (X-Cache-Status: ${again.headers.get('x-cache-status')}); is the cache wired in gateway.ts?`)

    console.log(`flaggate cache bench: ${CONNECTIONS} connections, ${DURATION} s per run, document ${size} bytes, Core query latency ${values['query-latency']} ms (11 queries per document)`)
    await load(`${gateUrl}${ENV_DOC}`) // warm the JIT and the pools
    const hit = await load(`${gateUrl}${ENV_DOC}`)
    const miss = await loadMisses(gateUrl)
    const row = (name: string, r: Result): void => {
      console.log(`${name.padEnd(36)} ${r.rps.toFixed(0).padStart(8)} req/s   p50 ${String(r.p50).padStart(4)} ms   p99 ${String(r.p99).padStart(4)} ms   non-2xx ${r.non2xx}   errors ${r.errors}`)
    }
    row('hit   (answered from memory)', hit)
    row('miss  (one Core request each)', miss)
    console.log('')
    console.log(`hit/miss throughput = ${(hit.rps / Math.max(1, miss.rps)).toFixed(1)}x`)
  } finally {
    for (const c of children) c.kill('SIGTERM')
  }
}

if (values['miss-load'] !== undefined) await missLoadChild(values['miss-load'])
else await main()
