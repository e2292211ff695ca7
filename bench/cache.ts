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
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { autocannonCli, Children, parseAutocannon, runNode, type LoadResult } from './support.js'

const { values } = parseArgs({ options: { duration: { type: 'string', default: '10' }, connections: { type: 'string', default: '50' }, 'query-latency': { type: 'string', default: '1' }, 'miss-load': { type: 'string' } } })
const DURATION = Number(values.duration)
const CONNECTIONS = Number(values.connections)
const KEY = 'ser.dev_server_key'
const ENV_DOC = '/api/v1/environment-document/'
const children = new Children()
type Result = LoadResult

/** autocannon's CLI, in its own process. */
async function load (url: string): Promise<Result> {
  return await autocannonCli(url, { connections: CONNECTIONS, durationS: DURATION, headers: { 'x-environment-key': KEY } })
}

/**
 * The miss path needs a new cache key per request, which the CLI cannot do (it rejects
 * `[<id>]` in a URL), so this file runs itself in a child process with autocannon's API.
 */
async function loadMisses (base: string): Promise<Result> {
  return parseAutocannon(await runNode(['--import', 'tsx', 'bench/cache.ts', '--miss-load', base, '--duration', String(DURATION), '--connections', String(CONNECTIONS)]))
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
    const coreUrl = await children.start(['--import', 'tsx', 'bench/upstream.ts'], { QUERY_LATENCY_MS: values['query-latency'], POOL_SIZE: '20' }, (l) => l.url as string)
    const dir = mkdtempSync(join(tmpdir(), 'flaggate-bench-cache-'))
    writeFileSync(join(dir, 'gateway.yaml'), policy(coreUrl))
    const gateUrl = await children.startFlaggate(join(dir, 'gateway.yaml'))

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
    children.stopAll()
  }
}

if (values['miss-load'] !== undefined) await missLoadChild(values['miss-load'])
else await main()
