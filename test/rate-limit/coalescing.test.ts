/**
 * Coalesced Redis decisions (rate-limit/fallback.ts, lua.ts): a client's requests that arrive
 * while a call for its buckets is in flight are decided together in the next call.
 *
 * - The script's batch is exactly `count` calls in a row at the same instant, and so exactly the
 *   memory store taking them one by one (a random workload, decision by decision).
 * - Through the limiter on a real Redis: 300 concurrent requests of one client with a burst of
 *   50 get exactly 50 allowed, in far fewer script calls than requests; clients with other
 *   buckets or other parameters are never mixed into one call.
 */
import { randomUUID } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { inject } from 'vitest'
import { Redis } from 'ioredis'
import { MemoryBuckets, bucketParams, createRedisLimiter, takeRedis } from '../../src/rate-limit/core.js'
import { takeRedisBatch, TOKEN_BUCKET_SCRIPT } from '../../src/rate-limit/redis-store.js'
import type { LimiterRedisStore } from '../../src/rate-limit/redis-store.js'
import { createRedisClient } from '../../src/store/redis.js'

let redis: Redis
beforeAll(async () => {
  redis = new Redis(inject('redisUrl'), { lazyConnect: true })
  await redis.connect()
})
afterAll(async () => { await redis.quit() })

async function scriptCalls (): Promise<number> {
  const info = await redis.info('commandstats')
  let n = 0
  for (const m of info.matchAll(/cmdstat_(?:evalsha|eval):calls=(\d+)/g)) n += Number(m[1])
  return n
}

describe('one script call for several requests of the same buckets', () => {
  it('decides a batch exactly as calls in a row, and as the memory store', async () => {
    let seed = 7
    const rnd = () => { seed = (seed * 1103515245 + 12345) % 2 ** 31; return seed / 2 ** 31 }
    const requests = [
      { key: 'b:0', params: bucketParams(20, 30) },
      { key: 'b:1', params: bucketParams(3, 5) },
      { key: 'b:2', params: bucketParams(1, 2, true) }
    ]
    const batched = `test-${randomUUID()}:`
    const single = `test-${randomUUID()}:`
    const memory = new MemoryBuckets({ purgeIntervalMs: 0 })
    let now = 1_763_000_000_000.417
    let allowed = 0
    for (let round = 0; round < 150; round++) {
      now += rnd() < 0.7 ? rnd() * 50 : rnd() * 3000
      const subset = rnd() < 0.3 ? requests.slice(0, 2) : requests
      const count = 1 + Math.floor(rnd() * 12)
      const batch = await takeRedisBatch(redis, batched, subset, count, now)
      expect(batch).toHaveLength(count)
      for (let i = 0; i < count; i++) {
        const one = await takeRedis(redis, single, subset, now)
        expect(batch[i], `round ${round}, request ${i}`).toEqual(one)
        expect(batch[i]).toEqual(memory.take(subset, now))
        if (one.allowed) allowed++
      }
    }
    expect(allowed).toBeGreaterThan(50)
    memory.close()
  })
})

describe('a bucket key holding something that is not a TAT', () => {
  it('is read as no bucket, in the script and in the replay alike', async () => {
    const prefix = `test-${randomUUID()}:`
    await redis.set(`${prefix}junk`, 'not-a-number')
    const reqs = [{ key: 'junk', params: bucketParams(1, 3) }]
    const now = 1_763_000_000_000.5
    const memory = new MemoryBuckets({ purgeIntervalMs: 0 })
    // the script starts a fresh bucket and spends from it; the replay must say the same
    expect(await takeRedisBatch(redis, prefix, reqs, 2, now)).toEqual([memory.take(reqs, now), memory.take(reqs, now)])
    expect(await takeRedis(redis, prefix, reqs, now)).toEqual(memory.take(reqs, now))
    memory.close()
  })
})

describe('the limiter coalesces concurrent requests per client', () => {
  const store = (): LimiterRedisStore => ({
    client: redis,
    keyPrefix: `test-${randomUUID()}:`,
    commandTimeoutMs: 1000,
    usable: true,
    healthy: true,
    liveReplicas: 1,
    reportFailure: (err) => { throw new Error(`unexpected Redis failure: ${String(err)}`) }
  })

  it('300 concurrent requests, burst 50: exactly 50 allowed, in fewer calls than requests', async () => {
    const limiter = createRedisLimiter(store())
    const reqs = [{ key: 'fleet', params: bucketParams(1, 50) }, { key: 'fleet|ip', params: bucketParams(1, 1000) }]
    const before = await scriptCalls()
    const decisions = await Promise.all(Array.from({ length: 300 }, () => limiter.decide(reqs)))
    const calls = await scriptCalls() - before
    expect(decisions.filter((d) => d.allowed)).toHaveLength(50)
    expect(decisions.every((d) => d.source === 'redis')).toBe(true)
    // the first call goes alone, the rest wait for it and go together
    expect(calls).toBeLessThanOrEqual(10)
    // remaining counts down one request at a time, as calls in a row would
    const remaining = decisions.filter((d) => d.allowed).map((d) => d.limits[0]!.remaining)
    expect(remaining).toEqual([...Array(50).keys()].reverse())
    await limiter.close()
  })

  it('never mixes clients or parameters into one call', async () => {
    const limiter = createRedisLimiter(store())
    const a = [{ key: 'a', params: bucketParams(1, 10) }]
    const b = [{ key: 'b', params: bucketParams(1, 20) }]
    const a2 = [{ key: 'a', params: bucketParams(1, 15) }] // same bucket, another limit (a reload)
    const all = await Promise.all(Array.from({ length: 90 }, (_, i) => limiter.decide(i % 3 === 0 ? a : i % 3 === 1 ? b : a2)))
    const allowedOf = (m: number) => all.filter((d, i) => i % 3 === m && d.allowed).length
    expect(allowedOf(1)).toBe(20)
    // a and a2 share the bucket "a": together no more than the larger burst, each no more than its own
    expect(allowedOf(0)).toBeLessThanOrEqual(10)
    expect(allowedOf(2)).toBeLessThanOrEqual(15)
    expect(allowedOf(0) + allowedOf(2)).toBeLessThanOrEqual(15)
    expect(allowedOf(0) + allowedOf(2)).toBeGreaterThanOrEqual(10)
    await limiter.close()
  })

  it('calls of many clients ready in one turn leave in one write to the socket', async () => {
    // the gateway's own client options (auto-pipelining off for the script on one connection)
    const client = createRedisClient({ url: inject('redisUrl'), commandTimeout: 1000 } as never, { selfBatchedCommands: [TOKEN_BUCKET_SCRIPT] })
    await new Promise<void>((resolve, reject) => { client.once('ready', resolve); client.once('error', reject) })
    const socket = (client as Redis).stream as unknown as { _write: (...a: unknown[]) => void; _writev: (...a: unknown[]) => void }
    let writes = 0
    const write = socket._write.bind(socket)
    const writev = socket._writev.bind(socket)
    socket._write = (...a) => { writes++; write(...a) }
    socket._writev = (...a) => { writes++; writev(...a) }
    const limiter = createRedisLimiter({ ...store(), client })
    const before = await scriptCalls()
    const decisions = await Promise.all(Array.from({ length: 100 }, (_, i) => limiter.decide([{ key: `client-${i}`, params: bucketParams(1, 5) }])))
    expect(decisions.every((d) => d.allowed && d.source === 'redis' && d.limits[0]!.remaining === 4)).toBe(true)
    // one call per client (nothing to coalesce), all in one write
    expect(await scriptCalls() - before).toBeGreaterThanOrEqual(100)
    expect(writes).toBe(1)
    await limiter.close()
    client.disconnect()
  })
})

