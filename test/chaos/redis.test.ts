/**
 * Redis misbehaving under load, against gateway processes: slow (a delaying TCP proxy), restarted
 * empty, failing over behind Sentinel, and losing a Cluster master. In every case: no 5xx, no
 * request held by Redis longer than one commandTimeout (plus scheduling slack), and decisions are
 * back on Redis once it answers again. Every Redis here is this file's own.
 */
import { describe, expect, it } from 'vitest'
import { startPrivateRedis } from '../support/redis-server.js'
import { startTcpProxy } from './support/tcp-proxy.js'
import { until } from './support/redis-topologies.js'

import { COMMAND_TIMEOUT_MS, KEY, SLACK_MS, cleanups, core, expectNo5xx, gateway, gatewayOwnMs, load, policy, storeMode } from './support/redis-load.js'

describe('chaos: Redis', () => {
  it('slow Redis (20–200 ms per reply, commandTimeout 50 ms): no 5xx, nobody held past one timeout', async () => {
    const redis = await startPrivateRedis()
    cleanups.push(() => redis.stop())
    const proxy = await startTcpProxy(redis.port)
    cleanups.push(() => proxy.close())
    const c = await core()
    const gws = [await gateway(policy(c.url, `    url: ${proxy.url}`)), await gateway(policy(c.url, `    url: ${proxy.url}`))]
    // each in turn: on a busy machine a 50 ms heartbeat may miss now and then, so both at the same
    // poll is luck, while each getting there is the behaviour
    const onRedis = async (what: string): Promise<void> => {
      for (const [i, g] of gws.entries()) await until(`${what} (gateway ${i})`, async () => (await storeMode(g)) === 'redis', 60_000)
    }
    await onRedis('on Redis')

    const l = load(gws)
    await until('some load', () => l.total() > 100)
    proxy.setDelay(() => 20 + Math.random() * 180)
    const before = l.total()
    // counts of answers, waited for: a busy machine takes longer to get through them (hence the
    // test's long timeout), the behaviour asserted below does not change
    await until('load through the slow Redis', () => l.total() > before + 300, 60_000)
    proxy.setDelay(0)
    // the clients run in this process, as does the proxy every heartbeat crosses: stopped, they
    // no longer queue the probes' bytes behind their own on a busy machine
    await l.stop()
    await onRedis('back on Redis')
    const l2 = load(gws)
    await until('load after recovery', () => l2.total() > 100, 60_000)
    await l2.stop()

    expect([...l.failures, ...l2.failures]).toEqual([])
    expectNo5xx(l.statuses)
    expectNo5xx(l2.statuses)
    await until('access logs flushed', () => gws.every((g) => gatewayOwnMs(g).length > 100), 5000)
    const own = gws.flatMap(gatewayOwnMs).sort((a, b) => a - b)
    expect(own.at(-1)!, `slowest: ${own.slice(-10).map((x) => x.toFixed(0)).join(', ')} of ${own.length}`).toBeLessThan(COMMAND_TIMEOUT_MS + SLACK_MS)
  }, 300_000)

  it('Redis restarted empty: limits are enforced in Redis again, from a fresh bucket', async () => {
    const redis = await startPrivateRedis()
    cleanups.push(() => redis.stop())
    const c = await core()
    // this test is about the bucket's state, not about slow replies: a command timeout a busy
    // machine cannot miss keeps every decision on Redis while Redis is up, so the counts below
    // are Redis's and not a local fallback's
    const yaml = policy(c.url, `    url: ${redis.url}`).replace('rate: 200/s, burst: 400', 'rate: 1/m, burst: 5')
      .replace(`commandTimeout: ${COMMAND_TIMEOUT_MS}ms`, 'commandTimeout: 2s')
    const gw = await gateway(yaml)
    await until('on Redis', async () => (await storeMode(gw)) === 'redis')
    const hit = async (): Promise<number> => (await fetch(`${gw.url}/api/v1/flags/`, { headers: { 'x-environment-key': KEY } })).status
    const first: number[] = []
    for (let i = 0; i < 7; i++) first.push(await hit())
    expect(first.filter((s) => s === 200)).toHaveLength(5)

    await redis.stop()
    const statusesDuringOutage: number[] = []
    for (let i = 0; i < 5; i++) statusesDuringOutage.push(await hit())
    expect(statusesDuringOutage.every((s) => s < 500)).toBe(true)

    const again = await startPrivateRedis(redis.port)
    cleanups.push(() => again.stop())
    await until('back on Redis', async () => (await storeMode(gw)) === 'redis', 30_000)
    // an empty Redis starts every bucket full: five more, then refused again, fleet-wide
    const second: number[] = []
    for (let i = 0; i < 7; i++) second.push(await hit())
    expect(second.filter((s) => s === 200)).toHaveLength(5)
    expect(second.slice(5)).toEqual([429, 429])
  }, 60_000)
})
