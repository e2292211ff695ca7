/**
 * Rate-limit benchmark: `node --import tsx bench/ratelimit.ts` (about 40 s).
 *
 * 1. decisions/s of the memory store (sync core and the async limiter);
 * 2. decisions/s of the Redis store (one EVALSHA per decision, two limits each), sequential and
 *    100 concurrent, against a private redis-server (or REDIS_URL);
 * 3. RSS after one million distinct keys through the memory limiter (bounded by maxKeys);
 *
 * Gateway throughput with each store is measured by bench/run.ts (`npm run bench`), where the load
 * generator, the gateway and the fake Core each run in their own process.
 */
import { randomUUID } from 'node:crypto'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { Redis } from 'ioredis'
import { MemoryBuckets, bucketParams, createMemoryLimiter, takeRedis, DEFAULT_MAX_KEYS, type BucketRequest } from '../src/rate-limit/core.js'
import { startPrivateRedis, redisServerAvailable, type PrivateRedis } from '../test/support/redis-server.js'

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
  for (let i = 2_000_000; i < 3_000_000; i++) await flood.decide([{ key: `rl:flags:flags.0:{k${randomKey(i)}}`, params: p }])
  gc()
  const after3 = process.memoryUsage()
  results['1M distinct keys: time'] = `${(floodMs / 1000).toFixed(1)} s`
  results['1M distinct keys: buckets held'] = `${fmt(flood.buckets.size)} (maxKeys ${fmt(DEFAULT_MAX_KEYS)})`
  // RSS keeps allocator slack after the first million; bounded means it stops growing
  results['RSS: before / after 1M / 2M / 3M keys'] = `${mb(before.rss)} / ${mb(after1.rss)} / ${mb(after2.rss)} / ${mb(after3.rss)}`
  results['V8 heap used: before / after 1M / 2M / 3M keys'] = `${mb(before.heapUsed)} / ${mb(after1.heapUsed)} / ${mb(after2.heapUsed)} / ${mb(after3.heapUsed)} (${fmt((after1.heapUsed - before.heapUsed) / flood.buckets.size)} bytes per bucket)`
  await flood.close()

  await own?.stop()

  for (const [k, v] of Object.entries(results)) console.log(`${k.padEnd(62)} ${v}`)
}

/** Distinct, key-like strings (~22 chars, as Flagsmith keys) without Math.random's cost. */
function randomKey (i: number): string {
  return (i * 2654435761 >>> 0).toString(36) + i.toString(36) + 'abcdefghij'
}

await main()
