/**
 * Redis hung (SIGSTOP) or dead (SIGKILL) under load: decisions keep flowing on local state,
 * each within commandTimeout plus a margin, never an exception; back on Redis once it answers.
 * Each test owns its redis-server, so stopping it touches nobody else.
 */
import { randomUUID } from 'node:crypto'
import { monitorEventLoopDelay } from 'node:perf_hooks'
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

/**
 * The worst stall of this process's event loop (ms) while the returned stop() was pending: a
 * decision can take no less than the stall it sat through, which is the machine's load and not
 * the breaker's doing, so the bounds on decision times below allow for it on top of the timeout.
 */
function loopStalls (): () => number {
  const h = monitorEventLoopDelay({ resolution: 10 })
  h.enable()
  return () => { h.disable(); return h.max / 1e6 }
}

/** `usable`: the store's breaker was closed when the decision started (it may wait on Redis) */
interface Sample { at: number; ms: number; source: RateLimitDecision['source']; usable: boolean }

const CLIENTS = 20

/** N concurrent clients deciding in a loop until stopped; every decision timed. */
function load (decide: () => Promise<RateLimitDecision>, usable: () => boolean = () => true, clients = CLIENTS) {
  const samples: Sample[] = []
  const errors: unknown[] = []
  let running = true
  const loops = Array.from({ length: clients }, async () => {
    while (running) {
      const t = performance.now()
      const open = usable()
      try {
        const d = await decide()
        samples.push({ at: t, ms: performance.now() - t, source: d.source, usable: open })
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
    const run = load(() => limiter.decide(reqs), () => s.usable)
    await until('decisions on redis', () => run.samples.filter((x) => x.source === 'redis').length > 100, 30_000)
    expect(run.samples.at(-1)!.source).toBe('redis')

    const stoppedAt = performance.now()
    const stalls = loopStalls()
    process.kill(redis.pid, 'SIGSTOP')
    await until('local fallback', () => s.mode === 'local-fallback', 5000)
    const fallbackAt = run.samples.length
    // decisions counted, not a time slept: a busy machine gets through fewer per second
    await until('local decisions', () => run.samples.slice(fallbackAt).filter((x) => x.source === 'local-fallback').length > 100, 30_000)
    const stallMs = stalls()
    const during = run.samples.filter((x) => x.at >= stoppedAt)
    const worst = Math.max(...during.map((x) => x.ms))
    expect(worst, `no decision waits longer than one command timeout (worst event-loop stall ${stallMs.toFixed(0)} ms)`).toBeLessThan(COMMAND_TIMEOUT_MS + MARGIN_MS + stallMs)
    // The breaker makes the outage cost one timeout per request in flight, not one per request:
    // a decision that went to Redis and fell back paid a timeout, and the failure it reports opens
    // the breaker before it returns, so each client pays at most once
    const paid = during.filter((x) => x.usable && x.source === 'local-fallback').length
    expect(paid).toBeLessThanOrEqual(CLIENTS)
    // once open, nobody goes to Redis: every later decision is local
    expect(run.samples.slice(fallbackAt).filter((x) => !x.usable).every((x) => x.source === 'local-fallback')).toBe(true)
    expect(s.healthy).toBe(false)

    process.kill(redis.pid, 'SIGCONT')
    const resumedAt = performance.now()
    await until('back on redis', () => s.mode === 'redis', 30_000)
    const recoveryMs = performance.now() - resumedAt
    const backAt = run.samples.length
    await until('decisions on redis again', () => run.samples.slice(backAt).some((x) => x.source === 'redis'), 30_000)
    await run.stop()
    expect(run.errors).toEqual([])
    expect(log.lines.some((l) => l.msg.startsWith('redis unusable'))).toBe(true)
    expect(log.lines.some((l) => l.msg.startsWith('redis usable again'))).toBe(true)
    console.log(`SIGSTOP: ${during.length} decisions during the stop, worst ${worst.toFixed(1)} ms (event-loop stall ${stallMs.toFixed(0)} ms), ${paid} paid the timeout; back on Redis ${recoveryMs.toFixed(0)} ms after SIGCONT`)
  })

  it('SIGKILL mid-load: local decisions at once, back to Redis when a server listens again', async () => {
    const redis = await ownRedis()
    const s = store(redis.url)
    await until('redis ready', () => s.usable)
    const limiter = createRedisLimiter(s)
    const reqs = [{ key: 'k', params: bucketParams(1000, 1000) }]
    const run = load(() => limiter.decide(reqs), () => s.usable)
    await until('decisions on redis', () => run.samples.filter((x) => x.source === 'redis').length > 100, 30_000)

    const killedAt = performance.now()
    const stalls = loopStalls()
    await redis.stop()
    await until('local fallback', () => s.mode === 'local-fallback', 5000)
    const fallbackAt = run.samples.length
    await until('local decisions', () => run.samples.slice(fallbackAt).filter((x) => x.source === 'local-fallback').length > 100, 30_000)
    const stallMs = stalls()
    const during = run.samples.filter((x) => x.at >= killedAt)
    const worst = Math.max(...during.map((x) => x.ms))
    expect(worst, `worst event-loop stall ${stallMs.toFixed(0)} ms`).toBeLessThan(COMMAND_TIMEOUT_MS + MARGIN_MS + stallMs)
    expect(during.filter((x) => x.usable && x.source === 'local-fallback').length).toBeLessThanOrEqual(CLIENTS)

    const again = await ownRedis(redis.port)
    const restartedAt = performance.now()
    await until('back on redis', () => s.mode === 'redis', 30_000)
    const recoveryMs = performance.now() - restartedAt
    const backAt = run.samples.length
    await until('decisions on redis again', () => run.samples.slice(backAt).some((x) => x.source === 'redis'), 30_000)
    await run.stop()
    expect(run.errors).toEqual([])
    expect(again.port).toBe(redis.port)
    console.log(`SIGKILL: worst decision ${worst.toFixed(1)} ms; back on Redis ${recoveryMs.toFixed(0)} ms after restart`)
  })

  it('Redis that is down at boot: local decisions from the first request, Redis once it appears', async () => {
    const { freePort } = await import('../support/redis-server.js')
    const port = await freePort()
    const s = store(`redis://127.0.0.1:${port}`)
    const limiter = createRedisLimiter(s)
    const stalls = loopStalls()
    const t = performance.now()
    const d = await limiter.decide([{ key: 'k', params: bucketParams(1, 1) }])
    const ms = performance.now() - t
    // decided at once, not after a command timeout (plus what a busy machine stalled us)
    expect(ms).toBeLessThan(20 + stalls())
    expect(d).toMatchObject({ allowed: true, source: 'local-fallback' })
    await ownRedis(port)
    await until('redis', () => s.mode === 'redis', 30_000)
    expect((await limiter.decide([{ key: 'k2', params: bucketParams(1, 1) }])).source).toBe('redis')
  })

  it('while Redis is unusable each replica takes its fair share, learned from heartbeats', async () => {
    const redis = await ownRedis()
    const a = store(redis.url, new MemoryLog(), 'replica-a')
    const b = createRedisStore({ url: redis.url, keyPrefix: a.keyPrefix, commandTimeout: COMMAND_TIMEOUT_MS }, new MemoryLog(), { heartbeatMs: 200, replicaId: 'replica-b' })
    const c = createRedisStore({ url: redis.url, keyPrefix: a.keyPrefix, commandTimeout: COMMAND_TIMEOUT_MS }, new MemoryLog(), { heartbeatMs: 200, replicaId: 'replica-c' })
    cleanups.push(() => b.close(), () => c.close())
    await until('three replicas seen', () => a.liveReplicas === 3 && b.liveReplicas === 3, 30_000)

    // a replica that leaves is no longer counted
    await c.close()
    await until('two replicas', () => a.liveReplicas === 2, 30_000)

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
