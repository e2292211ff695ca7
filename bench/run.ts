/**
 * The gateway against a bare @fastify/http-proxy, in the same run, on the same machine.
 * Every part runs in its own process: the fake Core, the bare proxy, flaggate (dist/cli.js, with
 * every built capability on: two-level token buckets on every route, the environment-document
 * cache; once with the memory store and once with Redis when redis-server is installed), and
 * the load generator
 * (autocannon's CLI). Prints absolute numbers and the ratios of the performance budget:
 *   - flags (proxied, limited): flaggate req/s ≥ 85% of bare, p99 ≤ 1.5× bare
 *   - environment document: flaggate (cached) req/s ≥ 2× bare (which fetches from Core each time)
 * Usage: npm run bench [-- --duration 10 --connections 50 --no-redis]
 */
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { autocannonCli, Children, type LoadResult } from './support.js'
import { redisServerAvailable, startPrivateRedis, type PrivateRedis } from '../test/support/redis-server.js'

const { values } = parseArgs({ options: { duration: { type: 'string', default: '10' }, connections: { type: 'string', default: '50' }, 'no-redis': { type: 'boolean', default: false } } })
const DURATION = Number(values.duration)
const CONNECTIONS = Number(values.connections)
const children = new Children()
type Result = LoadResult
const load = async (url: string, headers: Record<string, string>): Promise<Result> => await autocannonCli(url, { connections: CONNECTIONS, durationS: DURATION, headers })

function policy (fastUrl: string, slowUrl: string, redis: PrivateRedis | undefined): string {
  const fleet = '{ by: environmentKey, rate: 1000000/s, burst: 1000000 }'
  const instance = '{ by: [environmentKey, ip], rate: 1000000/s, burst: 1000000 }'
  return `server: { listen: 127.0.0.1:0 }
admin: { listen: 127.0.0.1:0 }
upstreams:
  core: { url: "${slowUrl}", timeout: 10s, maxConnections: 128 }
  fast: { url: "${fastUrl}", timeout: 10s, maxConnections: 128 }
${redis === undefined ? '' : `store:\n  redis: { url: "${redis.url}", keyPrefix: "bench:${Date.now()}:", commandTimeout: 50ms }\n`}routes:
  - name: environment-document
    match: { methods: [GET], path: /api/v1/environment-document/ }
    upstream: core
    limit: [${fleet}, ${instance}]
    cache: { ttl: 30s, staleWhileRevalidate: 60s, staleIfError: 10m }
  - name: flags
    match: { methods: [GET], path: /api/v1/flags/ }
    upstream: fast
    limit: [${fleet}, ${instance}]
  - name: default
    match: { pathPrefix: / }
    upstream: fast
    limit: { by: ip, rate: 50/s, burst: 100, shadow: true }
`
}

const row = (name: string, r: Result) => console.log(`${name.padEnd(40)} ${r.rps.toFixed(0).padStart(8)} req/s   p50 ${String(r.p50).padStart(4)} ms   p99 ${String(r.p99).padStart(4)} ms   non-2xx ${r.non2xx}   errors ${r.errors}`)
const verdict = (label: string, value: number, budget: string, ok: boolean) => console.log(`${label.padEnd(44)} ${value.toFixed(2)}  (budget ${budget}) ${ok ? 'ok' : 'OVER BUDGET'}`)

async function startFlaggate (fastUrl: string, slowUrl: string, redis: PrivateRedis | undefined): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'flaggate-bench-'))
  writeFileSync(join(dir, 'gateway.yaml'), policy(fastUrl, slowUrl, redis))
  return await children.startFlaggate(join(dir, 'gateway.yaml'))
}

async function main (): Promise<void> {
  const redis = !values['no-redis'] && redisServerAvailable() ? await startPrivateRedis() : undefined
  try {
    // The fast upstream answers at once, so the proxies are the bottleneck (their overhead is
    // what is compared). The slow one costs 1 ms per query, as a warm PostgreSQL might: Core's
    // environment document is 11 queries.
    const fastUrl = await children.start(['--import', 'tsx', 'bench/upstream.ts'], { QUERY_LATENCY_MS: '0' }, (l) => l.url as string)
    const slowUrl = await children.start(['--import', 'tsx', 'bench/upstream.ts'], { QUERY_LATENCY_MS: '1', POOL_SIZE: '20' }, (l) => l.url as string)
    const bareFast = await children.start(['--import', 'tsx', 'bench/bare-proxy.ts'], { UPSTREAM_URL: fastUrl }, (l) => l.url as string)
    const bareSlow = await children.start(['--import', 'tsx', 'bench/bare-proxy.ts'], { UPSTREAM_URL: slowUrl }, (l) => l.url as string)
    const gateMemory = await startFlaggate(fastUrl, slowUrl, undefined)
    const gateRedis = redis === undefined ? undefined : await startFlaggate(fastUrl, slowUrl, redis)
    const client = { 'x-environment-key': 'dev_client_key' }
    const server = { 'x-environment-key': 'ser.dev_server_key' }

    console.log(`flaggate bench: ${CONNECTIONS} connections, ${DURATION} s per run; every process separate (autocannon, proxies, fake Core)`)
    for (const u of [bareFast, gateMemory, gateRedis]) if (u !== undefined) await load(`${u}/api/v1/flags/`, client) // warm JIT and pools
    const bareFlags = await load(`${bareFast}/api/v1/flags/`, client)
    const memFlags = await load(`${gateMemory}/api/v1/flags/`, client)
    const redisFlags = gateRedis === undefined ? undefined : await load(`${gateRedis}/api/v1/flags/`, client)
    const bareDoc = await load(`${bareSlow}/api/v1/environment-document/`, server)
    const memDoc = await load(`${gateMemory}/api/v1/environment-document/`, server)

    row('bare proxy  GET flags', bareFlags)
    row('flaggate    GET flags, memory store', memFlags)
    if (redisFlags !== undefined) row('flaggate    GET flags, Redis store', redisFlags)
    row('bare proxy  GET environment-document', bareDoc)
    row('flaggate    GET environment-document', memDoc)
    console.log('')
    verdict('flags req/s, memory store: flaggate/bare', memFlags.rps / bareFlags.rps, '≥ 0.85', memFlags.rps / bareFlags.rps >= 0.85)
    verdict('flags p99, memory store: flaggate/bare', memFlags.p99 / Math.max(1, bareFlags.p99), '≤ 1.50', memFlags.p99 / Math.max(1, bareFlags.p99) <= 1.5)
    if (redisFlags !== undefined) {
      verdict('flags req/s, Redis store: flaggate/bare', redisFlags.rps / bareFlags.rps, '≥ 0.85', redisFlags.rps / bareFlags.rps >= 0.85)
      verdict('flags p99, Redis store: flaggate/bare', redisFlags.p99 / Math.max(1, bareFlags.p99), '≤ 1.50', redisFlags.p99 / Math.max(1, bareFlags.p99) <= 1.5)
    }
    verdict('environment document req/s: flaggate/bare', memDoc.rps / bareDoc.rps, '≥ 2.00', memDoc.rps / bareDoc.rps >= 2)
  } finally {
    children.stopAll()
    await redis?.stop()
  }
}

await main()
