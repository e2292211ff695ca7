/**
 * The purge message on Redis pub/sub carried the full server key in clear (issue 7). Now a key
 * purge travels as the key's digest: a raw subscriber on the suite's Redis sees no key, and the
 * other replica still drops exactly that key's documents (and its remembered 403s).
 */
import { randomUUID } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest'
import { Redis } from 'ioredis'
import { subscribed } from '../support/fleet.js'
import { startFakeCore, type FakeCore } from '../support/fake-flagsmith.js'
import { policyYaml, startTestGateway, type TestGateway } from '../support/gateway.js'
import { json, raw } from '../support/http.js'
import { keyDigestOf } from '../../src/cache/purge-target.js'
import { DEV_KEY, PROD_KEY, cachedRoutes, envDoc, eventually } from './support.js'

describe('purges between replicas name keys by digest', () => {
  const keyPrefix = `test-${randomUUID()}:`
  let core: FakeCore
  let a: TestGateway
  let b: TestGateway
  let sub: Redis
  const messages: string[] = []

  beforeAll(async () => {
    core = await startFakeCore()
    const yaml = policyYaml({ coreUrl: core.url, redis: { url: inject('redisUrl'), keyPrefix }, routes: cachedRoutes({ ttl: '10m' }) })
    a = await startTestGateway(yaml, { watch: false })
    b = await startTestGateway(yaml, { watch: false })
    sub = new Redis(inject('redisUrl'))
    sub.on('message', (_channel: string, message: string) => { messages.push(message) })
    await sub.subscribe(`${keyPrefix}purge`)
    const probe = new Redis(inject('redisUrl'))
    // both replicas and this test subscribed before anything is purged
    const ready = await subscribed(probe, [`${keyPrefix}purge`], 3)
    probe.disconnect()
    expect(ready).toBe(true)
  })

  afterAll(async () => {
    sub?.disconnect()
    await a?.close()
    await b?.close()
    await core?.close()
  })

  it('the message holds the digest, not the key; the other replica drops that key only', async () => {
    for (const key of [DEV_KEY, PROD_KEY]) {
      await envDoc(b, key)
      expect((await envDoc(b, key)).headers['x-cache-status']).toBe('HIT')
    }
    const r = await raw(a.adminUrl, '/admin/cache/purge', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ key: DEV_KEY }) })
    expect(r.status).toBe(200)
    expect(await eventually(() => messages.length > 0, 5000)).toBe(true)

    const wire = messages.join('\n')
    expect(wire).not.toContain(DEV_KEY)
    expect(wire).not.toContain('dev_server_key')
    expect(JSON.parse(messages[0]!)).toMatchObject({ v: 2, target: { keyDigest: keyDigestOf(DEV_KEY) } })

    expect(await eventually(async () => (await envDoc(b, DEV_KEY)).headers['x-cache-status'] === 'MISS', 5000)).toBe(true)
    expect((await envDoc(b, PROD_KEY)).headers['x-cache-status']).toBe('HIT')
  })

  it('a remembered 403 for a bad key is dropped on the other replica too', async () => {
    const bad = `ser.bad-${randomUUID()}`
    await envDoc(b, bad)
    const before = core.counts('/api/v1/environment-document/', bad)
    expect((await envDoc(b, bad)).status).toBe(403)
    expect(core.counts('/api/v1/environment-document/', bad)).toBe(before) // answered from memory
    messages.length = 0
    await raw(a.adminUrl, '/admin/cache/purge', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ key: bad }) })
    expect(await eventually(() => messages.length > 0, 5000)).toBe(true)
    expect(messages.join('\n')).not.toContain(bad)
    expect(await eventually(async () => { await envDoc(b, bad); return core.counts('/api/v1/environment-document/', bad) > before }, 5000)).toBe(true)
    expect(json(await raw(a.adminUrl, '/admin/status'))).toMatchObject({ cache: expect.any(Object) })
  })
})
