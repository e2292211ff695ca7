/**
 * Redis hung (SIGSTOP) or dead (SIGKILL) under load: decisions keep flowing on local state,
 * each within commandTimeout plus a margin, never an exception; back on Redis once it answers.
 * Each test owns its redis-server, so stopping it touches nobody else.
 */
import { randomUUID } from 'node:crypto'
import { afterEach, describe, expect, it } from 'vitest'
import { startPrivateRedis, type PrivateRedis } from '../support/redis-server.js'
import { createRedisStore, type RedisStore, type StoreLogger } from '../../src/store/redis.js'
import { bucketParams, createRedisLimiter, type RateLimitDecision } from '../../src/rate-limit/core.js'

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))
const COMMAND_TIMEOUT_MS = 50
/** event-loop and scheduling slack on a busy CI box, on top of one command timeout */
const MARGIN_MS = 150

class MemoryLog implements StoreLogger {
  readonly lines: Array<{ level: string; msg: string; obj: object }> = []
  info (obj: object, msg: string): void { this.lines.push({ level: 'info', msg, obj }) }
  warn (obj: object, msg: string): void { this.lines.push({ level: 'warn', msg, obj }) }
}

const cleanups: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
})

async function ownRedis (port?: number): Promise<PrivateRedis> {
  const r = await startPrivateRedis(port)
  cleanups.push(() => r.stop())
  return r
}

function store (url: string, log = new MemoryLog(), replicaId?: string): RedisStore {
  const s = createRedisStore({ url, keyPrefix: `test-${randomUUID()}:`, commandTimeout: COMMAND_TIMEOUT_MS }, log, {
    heartbeatMs: 200, minBackoffMs: 100, maxBackoffMs: 400, ...(replicaId !== undefined ? { replicaId } : {})
  })
  cleanups.push(() => s.close())
  return s
}

async function until (what: string, cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(10)
  }
}

interface Sample { at: number; ms: number; source: RateLimitDecision['source'] }

/** N concurrent clients deciding in a loop until stopped; every decision timed. */
function load (decide: () => Promise<RateLimitDecision>, clients = 20) {
  const samples: Sample[] = []
  const errors: unknown[] = []
  let running = true
  const loops = Array.from({ length: clients }, async () => {
    while (running) {
      const t = performance.now()
      try {
        const d = await decide()
        samples.push({ at: t, ms: performance.now() - t, source: d.source })
      } catch (err) { errors.push(err) }
      await sleep(2)
    }
  })
  return {
    samples,
    errors,
    async stop () { running = false; await Promise.all(loops) }
  }
}

describe('Redis store breaker', () => {
  it('SIGSTOP mid-load: local decisions within one timeout, back to Redis after SIGCONT', async () => {
    const redis = await ownRedis()
    const log = new MemoryLog()
    const s = store(redis.url, log)
    await until('redis ready', () => s.usable)
    const limiter = createRedisLimiter(s)
    const reqs = [{ key: 'k', params: bucketParams(1000, 1000) }]
    const run = load(() => limiter.decide(reqs))
    await sleep(300)
    expect(run.samples.at(-1)!.source).toBe('redis')

    const stoppedAt = performance.now()
    process.kill(redis.pid, 'SIGSTOP')
    await until('local fallback', () => s.mode === 'local-fallback', 2000)
    await sleep(1000)
    const during = run.samples.filter((x) => x.at >= stoppedAt)
    const worst = Math.max(...during.map((x) => x.ms))
    const slow = during.filter((x) => x.ms > COMMAND_TIMEOUT_MS + 5).length
    expect(worst, 'no decision waits longer than one command timeout').toBeLessThan(COMMAND_TIMEOUT_MS + MARGIN_MS)
    // The breaker makes the outage cost one timeout per request in flight, not one per request.
    expect(slow).toBeLessThanOrEqual(20 * 2)
    expect(during.filter((x) => x.source === 'local-fallback').length).toBeGreaterThan(100)
    expect(s.healthy).toBe(false)

    process.kill(redis.pid, 'SIGCONT')
    const resumedAt = performance.now()
    await until('back on redis', () => s.mode === 'redis', 3000)
    const recoveryMs = performance.now() - resumedAt
    await sleep(200)
    await run.stop()
    expect(run.errors).toEqual([])
    expect(run.samples.at(-1)!.source).toBe('redis')
    expect(log.lines.some((l) => l.msg.startsWith('redis unusable'))).toBe(true)
    expect(log.lines.some((l) => l.msg.startsWith('redis usable again'))).toBe(true)
    console.log(`SIGSTOP: ${during.length} decisions during the stop, worst ${worst.toFixed(1)} ms, ${slow} slower than the timeout; back on Redis ${recoveryMs.toFixed(0)} ms after SIGCONT`)
  })

  it('SIGKILL mid-load: local decisions at once, back to Redis when a server listens again', async () => {
    const redis = await ownRedis()
    const s = store(redis.url)
    await until('redis ready', () => s.usable)
    const limiter = createRedisLimiter(s)
    const reqs = [{ key: 'k', params: bucketParams(1000, 1000) }]
    const run = load(() => limiter.decide(reqs))
    await sleep(300)

    const killedAt = performance.now()
    await redis.stop()
    await until('local fallback', () => s.mode === 'local-fallback', 2000)
    await sleep(500)
    const during = run.samples.filter((x) => x.at >= killedAt)
    const worst = Math.max(...during.map((x) => x.ms))
    expect(worst).toBeLessThan(COMMAND_TIMEOUT_MS + MARGIN_MS)
    expect(during.filter((x) => x.source === 'local-fallback').length).toBeGreaterThan(100)

    const again = await ownRedis(redis.port)
    const restartedAt = performance.now()
    await until('back on redis', () => s.mode === 'redis', 5000)
    const recoveryMs = performance.now() - restartedAt
    await sleep(200)
    await run.stop()
    expect(run.errors).toEqual([])
    expect(run.samples.at(-1)!.source).toBe('redis')
    expect(again.port).toBe(redis.port)
    console.log(`SIGKILL: worst decision ${worst.toFixed(1)} ms; back on Redis ${recoveryMs.toFixed(0)} ms after restart`)
  })

  it('Redis that is down at boot: local decisions from the first request, Redis once it appears', async () => {
    const { freePort } = await import('../support/redis-server.js')
    const port = await freePort()
    const s = store(`redis://127.0.0.1:${port}`)
    const limiter = createRedisLimiter(s)
    const t = performance.now()
    const d = await limiter.decide([{ key: 'k', params: bucketParams(1, 1) }])
    expect(performance.now() - t).toBeLessThan(20)
    expect(d).toMatchObject({ allowed: true, source: 'local-fallback' })
    await ownRedis(port)
    await until('redis', () => s.mode === 'redis', 5000)
    expect((await limiter.decide([{ key: 'k2', params: bucketParams(1, 1) }])).source).toBe('redis')
  })

  it('while Redis is unusable each replica takes its fair share, learned from heartbeats', async () => {
    const redis = await ownRedis()
    const a = store(redis.url, new MemoryLog(), 'replica-a')
    const b = createRedisStore({ url: redis.url, keyPrefix: a.keyPrefix, commandTimeout: COMMAND_TIMEOUT_MS }, new MemoryLog(), { heartbeatMs: 200, replicaId: 'replica-b' })
    const c = createRedisStore({ url: redis.url, keyPrefix: a.keyPrefix, commandTimeout: COMMAND_TIMEOUT_MS }, new MemoryLog(), { heartbeatMs: 200, replicaId: 'replica-c' })
    cleanups.push(() => b.close(), () => c.close())
    await until('three replicas seen', () => a.liveReplicas === 3 && b.liveReplicas === 3, 3000)

    // a replica that leaves is no longer counted
    await c.close()
    await until('two replicas', () => a.liveReplicas === 2, 3000)

    const limiter = createRedisLimiter(a)
    const params = bucketParams(1 / 60, 10) // no refill during the test
    process.kill(redis.pid, 'SIGSTOP')
    cleanups.push(async () => { try { process.kill(redis.pid, 'SIGCONT') } catch {} })
    // the first decision pays the timeout and opens the breaker
    let allowed = 0
    for (let i = 0; i < 30; i++) if ((await limiter.decide([{ key: 'share', params }])).allowed) allowed++
    expect(a.mode).toBe('local-fallback')
    expect(a.liveReplicas).toBe(2)
    // burst 10 over 2 live replicas: 5 here (the other replica gets its own 5)
    expect(allowed).toBe(5)
  })
})
