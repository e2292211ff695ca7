/**
 * Cached flag lists on two gateway processes sharing Redis: a Flagsmith webhook on one replica
 * purges the environment's flag lists on both (the purge names the environment id; each replica
 * finds its flag lists by the environment their flags name).
 */
import { randomUUID } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest'
import { Redis } from 'ioredis'
import { subscribed } from '../support/fleet.js'
import { startFakeCore, signWebhook, webhookBody, type FakeCore } from '../support/fake-flagsmith.js'
import { policyYaml, spawnGateway, type SpawnedGateway } from '../support/gateway.js'
import { json, raw } from '../support/http.js'
import { eventually } from '../cache/support.js'

const FLAGS = '/api/v1/flags/'
const CLIENT = 'dev_client_key'
const SECRET = 'webhook-secret-for-tests'

describe('flag-list purges reach every replica', () => {
  const keyPrefix = `test-${randomUUID()}:`
  let core: FakeCore
  let a: SpawnedGateway
  let b: SpawnedGateway
  let redis: Redis

  beforeAll(async () => {
    core = await startFakeCore()
    const yaml = policyYaml({
      coreUrl: core.url,
      redis: { url: inject('redisUrl'), keyPrefix },
      routes: `  - name: flags
    match: { methods: [GET], path: ${FLAGS} }
    upstream: core
    cache: { ttl: 10m }
  - name: default
    match: { pathPrefix: / }
    upstream: core`,
      extra: `webhooks:\n  flagsmith:\n    path: /webhooks/flagsmith\n    secret: ${SECRET}\n`
    })
    ;[a, b] = await Promise.all([spawnGateway(yaml), spawnGateway(yaml)])
    redis = new Redis(inject('redisUrl'))
    expect(await subscribed(redis, [`${keyPrefix}purge`], 2)).toBe(true)
  })

  afterAll(async () => {
    await Promise.all([a?.stop(), b?.stop()])
    redis?.disconnect()
    await core?.close()
  })

  const flags = async (gw: SpawnedGateway, q = ''): Promise<{ status: string | undefined; text: string }> => {
    const r = await raw(gw.url, FLAGS + q, { headers: { 'x-environment-key': CLIENT } })
    return { status: r.headers['x-cache-status'] as string | undefined, text: JSON.stringify(json(r)) }
  }

  it('a webhook on one replica: both serve the changed flags at their next poll', async () => {
    for (const gw of [a, b]) {
      for (const q of ['', '?feature=banner']) {
        await flags(gw, q)
        expect((await flags(gw, q)).status).toBe('HIT')
      }
    }
    const before = core.counts(FLAGS, CLIENT)
    core.envs[0]!.features[0]!.value = 'changed'
    core.touch(1)
    const body = webhookBody(1, 'banner')
    const hook = await raw(a.url, '/webhooks/flagsmith', { method: 'POST', headers: { 'content-type': 'application/json', 'x-flagsmith-signature': signWebhook(SECRET, body) }, body })
    expect(hook.status).toBe(200)
    for (const gw of [a, b]) {
      for (const q of ['', '?feature=banner']) {
        const ok = await eventually(async () => (await flags(gw, q)).text.includes('changed'), 3000, 20)
        expect(ok).toBe(true)
      }
    }
    // each replica asked Core once per list again
    expect(core.counts(FLAGS, CLIENT) - before).toBe(4)
  })
})
