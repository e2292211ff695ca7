/**
 * (A scenario, not part of `npm test`: a Sentinel failover and a Cluster promotion take a minute
 * each. Run it with `npm run scenario:redis-topologies`.)
 *
 * Redis misbehaving under load, against gateway processes: slow (a delaying TCP proxy), restarted
 * empty, failing over behind Sentinel, and losing a Cluster master. In every case: no 5xx, no
 * request held by Redis longer than one commandTimeout (plus scheduling slack), and decisions are
 * back on Redis once it answers again. Every Redis here is this file's own.
 */
import { randomUUID } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { startCluster, startSentinelGroup, until } from './support/redis-topologies.js'

import { COMMAND_TIMEOUT_MS, KEY, SLACK_MS, cleanups, core, expectNo5xx, gateway, gatewayOwnMs, load, policy, storeMode } from './support/redis-load.js'

describe('chaos: Redis topologies', () => {
  it('Sentinel: the master dies under load, a replica is promoted, no 5xx, decisions return to Redis', async () => {
    const group = await startSentinelGroup(`fg${randomUUID().slice(0, 8)}`)
    cleanups.push(() => group.stop())
    const c = await core()
    const redisYaml = `    sentinels: [${group.sentinelAddrs.map((a) => `"${a}"`).join(', ')}]\n    sentinelName: ${group.name}`
    const gws = [await gateway(policy(c.url, redisYaml)), await gateway(policy(c.url, redisYaml))]
    await until('both on Redis', async () => (await storeMode(gws[0]!)) === 'redis' && (await storeMode(gws[1]!)) === 'redis')

    const l = load(gws)
    await until('some load', () => l.total() > 100)
    await group.master.kill()
    await until('replica promoted', async () => (await group.currentMasterPort()) === group.replica.port, 60_000, 250)
    await until('both back on Redis', async () => (await storeMode(gws[0]!)) === 'redis' && (await storeMode(gws[1]!)) === 'redis', 30_000)
    const after = l.total()
    await until('load after failover', () => l.total() > after + 100)
    await l.stop()

    expect(l.failures).toEqual([])
    expectNo5xx(l.statuses)
  }, 120_000)

  it('Cluster: a master is killed under load, its replica takes over, no 5xx, decisions return to Redis', async () => {
    const cluster = await startCluster()
    cleanups.push(() => cluster.stop())
    const c = await core()
    const redisYaml = `    cluster: [${cluster.addrs.map((a) => `"${a}"`).join(', ')}]`
    const gws = [await gateway(policy(c.url, redisYaml)), await gateway(policy(c.url, redisYaml))]
    await until('both on Redis', async () => (await storeMode(gws[0]!)) === 'redis' && (await storeMode(gws[1]!)) === 'redis', 30_000)

    const l = load(gws)
    await until('some load', () => l.total() > 100)
    // bucket keys share one hash tag, so they live on one master: kill every master in turn would
    // be overkill; killing each of the three is what guarantees we hit the one holding them
    const masters = await cluster.masters()
    const victim = cluster.nodes.find((n) => n.port === masters[0])!
    await victim.kill()
    await until('a replica promoted', async () => {
      const now = await cluster.masters()
      return now.length === 3 && !now.includes(victim.port)
    }, 60_000, 250)
    await until('both back on Redis', async () => (await storeMode(gws[0]!)) === 'redis' && (await storeMode(gws[1]!)) === 'redis', 30_000)
    const after = l.total()
    await until('load after promotion', () => l.total() > after + 100)
    await l.stop()

    expect(l.failures).toEqual([])
    expectNo5xx(l.statuses)
  }, 120_000)
})
