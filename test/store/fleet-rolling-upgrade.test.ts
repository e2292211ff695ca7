/**
 * A rolling upgrade: replicas of the previous release and of this one share a Redis. The purge and
 * block messages an old replica publishes (written here byte for byte as it wrote them) are still
 * applied by a new one; what a new one publishes keeps the shape an old one reads (`v`, `from`, and
 * the topic's fields); and whatever else lands on the fleet channel (anyone who can write to Redis
 * can publish) is ignored without crashing or wedging the replica.
 */
import { createHash, randomUUID } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest'
import { Redis } from 'ioredis'
import { subscribed } from '../support/fleet.js'
import { startFakeCore, type FakeCore } from '../support/fake-flagsmith.js'
import { policyYaml, startTestGateway, type TestGateway } from '../support/gateway.js'
import { raw } from '../support/http.js'
import { keyDigest } from '../../src/shared/key-digest.js'
import { DEV_KEY, PROD_KEY, cachedRoutes, envDoc, eventually } from '../cache/support.js'

describe('fleet channel across a rolling upgrade', () => {
  const keyPrefix = `test-${randomUUID()}:`
  let core: FakeCore
  let gw: TestGateway
  let pub: Redis
  let sub: Redis
  const heard: Array<{ channel: string; message: string }> = []

  beforeAll(async () => {
    core = await startFakeCore()
    const yaml = policyYaml({ coreUrl: core.url, redis: { url: inject('redisUrl'), keyPrefix }, routes: cachedRoutes({ ttl: '10m' }) })
    gw = await startTestGateway(yaml, { watch: false })
    pub = new Redis(inject('redisUrl'))
    sub = new Redis(inject('redisUrl'))
    sub.on('message', (channel: string, message: string) => { heard.push({ channel, message }) })
    await sub.subscribe(`${keyPrefix}purge`, `${keyPrefix}blocks`)
    // the gateway's subscriber is on both channels (one connection) before anything is sent
    const ready = await subscribed(pub, [`${keyPrefix}purge`, `${keyPrefix}blocks`], 2)
    expect(ready).toBe(true)
  })

  afterAll(async () => {
    sub?.disconnect()
    pub?.disconnect()
    await gw?.close()
    await core?.close()
  })

  async function cachedHit (key: string): Promise<void> {
    await envDoc(gw, key)
    expect((await envDoc(gw, key)).headers['x-cache-status']).toBe('HIT')
  }

  const isMiss = async (key: string): Promise<boolean> => (await envDoc(gw, key)).headers['x-cache-status'] === 'MISS'

  it('applies an old replica\'s v1 purge (the key in clear)', async () => {
    await cachedHit(DEV_KEY)
    await cachedHit(PROD_KEY)
    await pub.publish(`${keyPrefix}purge`, `{"v":1,"from":"old-replica-1","target":{"key":"${DEV_KEY}"}}`)
    expect(await eventually(() => isMiss(DEV_KEY), 5000)).toBe(true)
    expect((await envDoc(gw, PROD_KEY)).headers['x-cache-status']).toBe('HIT')
  })

  it('applies an old replica\'s v2 purge naming the key by its full sha256 (base64url)', async () => {
    await cachedHit(DEV_KEY)
    await cachedHit(PROD_KEY)
    const fullSha256 = createHash('sha256').update(PROD_KEY).digest('base64url')
    expect(fullSha256).toHaveLength(43)
    await pub.publish(`${keyPrefix}purge`, `{"v":2,"from":"old-replica-1","target":{"keyDigest":"${fullSha256}"}}`)
    expect(await eventually(() => isMiss(PROD_KEY), 5000)).toBe(true)
    expect((await envDoc(gw, DEV_KEY)).headers['x-cache-status']).toBe('HIT')
  })

  it('applies a purge naming the key by the shared 22-character key digest', async () => {
    await cachedHit(DEV_KEY)
    await cachedHit(PROD_KEY)
    await pub.publish(`${keyPrefix}purge`, `{"v":2,"from":"new-replica-2","target":{"keyDigest":"${keyDigest(DEV_KEY)}"}}`)
    expect(await eventually(() => isMiss(DEV_KEY), 5000)).toBe(true)
    expect((await envDoc(gw, PROD_KEY)).headers['x-cache-status']).toBe('HIT')
    // a digest of another length, or a whole sha256 of another key, names nothing
    await pub.publish(`${keyPrefix}purge`, `{"v":2,"from":"x","target":{"keyDigest":"${keyDigest(PROD_KEY).slice(0, 21)}"}}`)
    await pub.publish(`${keyPrefix}purge`, `{"v":2,"from":"x","target":{"keyDigest":"${createHash('sha256').update('ser.other').digest('base64url')}"}}`)
    await cachedHit(DEV_KEY)
    await pub.publish(`${keyPrefix}purge`, `{"v":1,"from":"old-replica-1","target":{"key":"${DEV_KEY}"}}`)
    expect(await eventually(() => isMiss(DEV_KEY), 5000)).toBe(true)
    expect((await envDoc(gw, PROD_KEY)).headers['x-cache-status']).toBe('HIT')
  })

  it('applies an old replica\'s block add and remove', async () => {
    const ua = `old-replica-test-${randomUUID()}`
    const get = async (): Promise<number> => (await raw(gw.url, '/api/v1/flags/', { headers: { 'x-environment-key': 'dev_client_key', 'user-agent': ua } })).status
    expect(await get()).toBe(200)
    const block = `{"id":"r-old1","userAgent":"^${ua}$","reason":"made on an old replica","source":"runtime","createdAt":${Date.now()},"actor":"ops"}`
    await pub.publish(`${keyPrefix}blocks`, `{"v":1,"from":"old-replica-1","version":1,"op":"add","block":${block}}`)
    expect(await eventually(async () => await get() === 403, 5000)).toBe(true)
    await pub.publish(`${keyPrefix}blocks`, '{"v":1,"from":"old-replica-1","version":2,"op":"remove","id":"r-old1"}')
    expect(await eventually(async () => await get() === 200, 5000)).toBe(true)
  })

  it('publishes what an old replica reads: v, from and the topic\'s fields', async () => {
    heard.length = 0
    const r = await raw(gw.adminUrl, '/admin/cache/purge', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' })
    expect(r.status).toBe(200)
    const made = await raw(gw.adminUrl, '/admin/blocks', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ userAgent: '^nobody-new$', reason: 'from a new replica' }) })
    expect(made.status).toBeLessThan(300)
    expect(await eventually(() => heard.some((h) => h.channel.endsWith('blocks')), 5000)).toBe(true)
    expect(await eventually(() => heard.some((h) => h.channel.endsWith('purge')), 5000)).toBe(true)
    const purge = JSON.parse(heard.find((h) => h.channel === `${keyPrefix}purge`)!.message)
    expect(purge).toEqual({ v: 2, from: expect.any(String), target: { all: true } })
    const blockMsg = JSON.parse(heard.find((h) => h.channel === `${keyPrefix}blocks`)!.message)
    expect(blockMsg).toMatchObject({ v: 1, from: expect.any(String), version: expect.any(Number), op: 'add', block: { userAgent: '^nobody-new$', source: 'runtime' } })
    // one id per replica, on both topics: an old replica skips exactly its own messages
    expect(blockMsg.from).toBe(purge.from)
  })

  it('ignores what is not a message of the topic, and keeps applying the next good one', async () => {
    await cachedHit(PROD_KEY)
    await cachedHit(DEV_KEY)
    for (const junk of ['not json', 'null', '42', '{"v":9,"from":"x","target":{"all":true}}', '{"v":2,"from":"x","target":{"all":false}}',
      '{"v":1,"from":"x","op":"add","block":{"id":1}}', '{"v":1,"from":"x","op":"add","block":{"id":"b","reason":"r","source":"runtime","createdAt":1,"actor":"a","userAgent":"("}}',
      '{"v":1,"from":"x","op":"remove"}', '{"v":1,"from":"x","op":"explode","id":"b"}']) {
      await pub.publish(`${keyPrefix}purge`, junk)
      await pub.publish(`${keyPrefix}blocks`, junk)
    }
    // a good purge after the junk: once it is applied, the junk before it on the channel was read
    await pub.publish(`${keyPrefix}purge`, `{"v":1,"from":"old-replica-2","target":{"key":"${DEV_KEY}"}}`)
    expect(await eventually(() => isMiss(DEV_KEY), 5000)).toBe(true)
    // and purged nothing (`{"v":9,…,"all":true}` included)
    expect((await envDoc(gw, PROD_KEY)).headers['x-cache-status']).toBe('HIT')
    expect((await raw(gw.url, '/api/v1/flags/', { headers: { 'x-environment-key': 'dev_client_key' } })).status).toBe(200)
  })
})
