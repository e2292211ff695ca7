/**
 * Rate-limit benchmark: `node --import tsx bench/ratelimit.ts` (about 40 s).
 *
 * 1. decisions/s of the memory store (sync core and the async limiter);
 * 2. decisions/s of the Redis store (one EVALSHA per decision, two limits each), sequential and
 *    100 concurrent, against a private redis-server (or REDIS_URL);
 * 3. RSS after one million distinct keys through the memory limiter (bounded by maxKeys);
 * 4. gateway throughput (autocannon, all requests allowed): no limits, memory store, Redis store.
 *    Gateway, fake Core and autocannon share one process, so compare the rows with each other,
 *    not with production figures.
 */
import { randomUUID } from 'node:crypto'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { writeFileSync, mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import autocannon from 'autocannon'
import pino from 'pino'
import { Redis } from 'ioredis'
import { MemoryBuckets, bucketParams, createMemoryLimiter, takeRedis, DEFAULT_MAX_KEYS, type BucketRequest } from '../src/rate-limit/core.js'
import { startPrivateRedis, redisServerAvailable, type PrivateRedis } from '../test/support/redis-server.js'
import { startFakeCore } from '../test/support/fake-flagsmith.js'
import { startGateway } from '../src/gateway.js'

// A real GC before reading RSS, without asking for a node flag on the command line.
setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void

const mb = (n: number) => `${(n / 2 ** 20).toFixed(1)} MB`
const fmt = (n: number) => Math.round(n).toLocaleString('en-US')

const A = bucketParams(1000, 5000)
const B = bucketParams(20, 100)
const requestFor = (i: number): BucketRequest[] => [{ key: `e${i % 1000}`, params: A }, { key: `e${i % 1000}:ip${i % 7}`, params: B }]

async function timed (ms: number, step: (i: number) => void | Promise<void>, concurrency = 1): Promise<number> {
  let n = 0
  const start = performance.now()
  const end = start + ms
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (performance.now() < end) {
      // 100 per time check keeps the clock out of the measurement
      for (let k = 0; k < 100; k++) await step(n++)
    }
  }))
  return n / ((performance.now() - start) / 1000)
}

function timedSync (ms: number, step: (i: number) => void): number {
  let n = 0
  const start = performance.now()
  const end = start + ms
  while (performance.now() < end) for (let k = 0; k < 1000; k++) step(n++)
  return n / ((performance.now() - start) / 1000)
}

async function main (): Promise<void> {
  const results: Record<string, string> = {}

  // 1. memory
  const buckets = new MemoryBuckets({ purgeIntervalMs: 0 })
  const reqs = Array.from({ length: 7000 }, (_, i) => requestFor(i))
  results['memory core, 2 limits, 1000 keys (decisions/s)'] = fmt(timedSync(2000, (i) => { buckets.take(reqs[i % 7000]!) }))
  const limiter = createMemoryLimiter()
  results['memory limiter (async decide), 2 limits (decisions/s)'] = fmt(await timed(2000, async (i) => { await limiter.decide(reqs[i % 7000]!) }))
  await limiter.close()

  // 2. redis
  let own: PrivateRedis | undefined
  let redisUrl = process.env.REDIS_URL
  if (redisUrl === undefined && redisServerAvailable()) { own = await startPrivateRedis(); redisUrl = own.url }
  if (redisUrl !== undefined) {
    const redis = new Redis(redisUrl, { enableOfflineQueue: true })
    const prefix = `bench-${randomUUID()}:`
    results['redis, sequential, 2 limits per EVALSHA (decisions/s)'] = fmt(await timed(3000, async (i) => { await takeRedis(redis, prefix, reqs[i % 7000]!) }))
    results['redis, 100 concurrent, 2 limits per EVALSHA (decisions/s)'] = fmt(await timed(3000, async (i) => { await takeRedis(redis, prefix, reqs[i % 7000]!) }, 100))
    await redis.quit()
  } else {
    results.redis = 'skipped: no redis-server and no REDIS_URL'
  }

  // 3. RSS after one million distinct keys, then after a second million: bounded means flat
  gc()
  const before = process.memoryUsage()
  const flood = createMemoryLimiter()
  const p = bucketParams(1, 10)
  const t = performance.now()
  for (let i = 0; i < 1_000_000; i++) await flood.decide([{ key: `rl:flags:flags.0:{k${randomKey(i)}}`, params: p }])
  const floodMs = performance.now() - t
  gc()
  const after1 = process.memoryUsage()
  for (let i = 1_000_000; i < 2_000_000; i++) await flood.decide([{ key: `rl:flags:flags.0:{k${randomKey(i)}}`, params: p }])
  gc()
  const after2 = process.memoryUsage()
  results['1M distinct keys: time'] = `${(floodMs / 1000).toFixed(1)} s`
  results['1M distinct keys: buckets held'] = `${fmt(flood.buckets.size)} (maxKeys ${fmt(DEFAULT_MAX_KEYS)})`
  results['RSS: before / after 1M keys / after 2M keys'] = `${mb(before.rss)} / ${mb(after1.rss)} / ${mb(after2.rss)}`
  results['V8 heap used: before / after 1M keys / after 2M keys'] = `${mb(before.heapUsed)} / ${mb(after1.heapUsed)} / ${mb(after2.heapUsed)} (${fmt((after1.heapUsed - before.heapUsed) / flood.buckets.size)} bytes per bucket)`
  await flood.close()

  // 4. gateway throughput, every request allowed (limits far above the offered load)
  const core = await startFakeCore()
  for (const kind of ['none', 'memory', 'redis'] as const) {
    if (kind === 'redis' && redisUrl === undefined) continue
    const dir = mkdtempSync(join(tmpdir(), 'flaggate-bench-'))
    const file = join(dir, 'gateway.yaml')
    writeFileSync(file, `server: { listen: 127.0.0.1:0 }
admin: { listen: 127.0.0.1:0 }
upstreams: { core: { url: "${core.url}" } }
${kind === 'redis' ? `store: { redis: { url: ${redisUrl}, keyPrefix: "bench-${randomUUID()}:", commandTimeout: 200ms } }\n` : ''}routes:
  - name: flags
    match: { methods: [GET], path: /api/v1/flags/ }
    upstream: core
${kind === 'none' ? '' : `    limit:
      - { by: environmentKey, rate: 1000000/s, burst: 1000000 }
      - { by: [environmentKey, ip], rate: 1000000/s, burst: 1000000 }
`}  - name: default
    match: { pathPrefix: / }
    upstream: core
`)
    const gw = await startGateway({ configPath: file, logger: pino({ level: 'warn' }), watch: false })
    await new Promise((r) => setTimeout(r, 500)) // the Redis store connects in the background
    const status = await (await fetch(`${gw.adminUrl}/admin/status`)).json() as { store?: { mode?: string } }
    const opts = { url: `${gw.url}/api/v1/flags/`, connections: 20, headers: { 'x-environment-key': 'dev_client_key' } }
    await autocannon({ ...opts, duration: 1 }) // warm-up: JIT, keep-alive pools
    const r = await autocannon({ ...opts, duration: 4 })
    results[kind === 'none' ? 'gateway /api/v1/flags/ without limits (baseline)' : `gateway /api/v1/flags/ with ${kind} store, 2 limits`] = `${fmt(r.requests.average)} req/s, p99 ${r.latency.p99} ms, non-2xx ${r.non2xx}, store mode ${status.store?.mode ?? 'not reported'}`
    await gw.close()
  }
  await core.close()
  await own?.stop()

  for (const [k, v] of Object.entries(results)) console.log(`${k.padEnd(62)} ${v}`)
}

/** Distinct, key-like strings (~22 chars, as Flagsmith keys) without Math.random's cost. */
function randomKey (i: number): string {
  return (i * 2654435761 >>> 0).toString(36) + i.toString(36) + 'abcdefghij'
}

await main()
