/**
 * Attack 6: a signed Flagsmith webhook captured once could be replayed any number of times, from
 * a blocked address too: 20 replays dropped 100 documents, which Core then rebuilt 100 times.
 * Now the same signed bytes purge once per `replayWindow`; distinct webhooks close together are
 * purged once (`coalesce`) and never lost; the route answers blocks (403) and has its own limit
 * per client address (429). Real sockets, a fake Core that records every document it builds.
 */
import { join } from 'node:path'
import { describe, expect, it, onTestFinished } from 'vitest'
import { defaultEnvironments, signWebhook, startFakeCore, webhookBody, type FakeCore } from '../support/fake-flagsmith.js'
import { policyYaml, startTestGateway, type TestGateway } from '../support/gateway.js'
import { json, raw, type RawResponse } from '../support/http.js'
import { cachedRoutes } from '../cache/support.js'
import { localYaml, stateDir } from '../local/support.js'
import { TRUST_LOOPBACK, from } from './support.js'

const SECRET = 'webhook-secret-for-the-attack'
const ENV_DOC = '/api/v1/environment-document/'
/** five server keys of environment 1: five cached documents one webhook for environment 1 drops */
const KEYS = ['ser.env1_a', 'ser.env1_b', 'ser.env1_c', 'ser.env1_d', 'ser.env1_e']

async function setup (webhook = '', extra = ''): Promise<{ core: FakeCore; gw: TestGateway }> {
  const envs = defaultEnvironments()
  envs[0]!.serverKeys = [...KEYS]
  const core = await startFakeCore({ envs })
  onTestFinished(core.close)
  const gw = await startTestGateway(policyYaml({
    coreUrl: core.url,
    server: TRUST_LOOPBACK,
    routes: cachedRoutes({ ttl: '1h' }),
    extra: `webhooks:\n  flagsmith: { path: /webhooks/flagsmith, secret: ${SECRET}${webhook} }\n${extra}`
  }), { watch: false })
  onTestFinished(gw.close)
  return { core, gw }
}

async function hook (gw: TestGateway, body: string, ip = '192.0.2.10'): Promise<RawResponse> {
  return await from(gw.url, '/webhooks/flagsmith', ip, { method: 'POST', body, headers: { 'content-type': 'application/json', 'x-flagsmith-signature': signWebhook(SECRET, body) } })
}

/** every client polls its document once; returns how many documents Core built meanwhile */
async function poll (gw: TestGateway, core: FakeCore): Promise<number> {
  const before = core.counts(ENV_DOC)
  for (const key of KEYS) expect((await raw(gw.url, ENV_DOC, { headers: { 'x-environment-key': key } })).status).toBe(200)
  return core.counts(ENV_DOC) - before
}

describe('attack 6: replayed webhooks', () => {
  it('20 replays of one signed webhook (from several addresses) cost Core nothing after the first', async () => {
    const { core, gw } = await setup()
    expect(await poll(gw, core)).toBe(5)
    const body = webhookBody(1, 'banner')

    const first = await hook(gw, body)
    expect(first.status).toBe(200)
    expect(json(first)).toMatchObject({ purged: 5 })
    expect(await poll(gw, core)).toBe(5)

    let rebuilt = 0
    for (let i = 0; i < 20; i++) {
      const r = await hook(gw, body, `198.51.100.${i + 1}`)
      expect(r.status).toBe(200)
      expect(json(r)).toEqual({ purged: 0, replayed: true })
      rebuilt += await poll(gw, core)
    }
    // before: 20 × 5 = 100 documents rebuilt
    expect(rebuilt).toBe(0)

    // a new change (other bytes) still purges
    const next = await hook(gw, webhookBody(1, 'max_items'))
    expect(json(next)).toMatchObject({ purged: 5 })
    expect(await poll(gw, core)).toBe(5)
  })

  it('a replay from a blocked address gets 403 and purges nothing', async () => {
    const { core, gw } = await setup('', 'blocklist:\n  - { ip: 203.0.113.0/24, reason: scraper }\n')
    expect(await poll(gw, core)).toBe(5)
    const r = await hook(gw, webhookBody(1, 'banner'), '203.0.113.9')
    expect(r.status).toBe(403)
    expect(json(r)).toMatchObject({ statusCode: 403, code: 'FLAGGATE_BLOCKED' })
    expect(await poll(gw, core)).toBe(0)
  })

  it('the route has its own limit per client address (429 with Retry-After); other addresses go on', async () => {
    const { core, gw } = await setup(', limit: { rate: 1/m, burst: 3 }')
    expect(await poll(gw, core)).toBe(5)
    const unsigned = async (ip: string): Promise<RawResponse> =>
      await from(gw.url, '/webhooks/flagsmith', ip, { method: 'POST', body: '{}', headers: { 'content-type': 'application/json' } })
    for (let i = 0; i < 3; i++) expect((await unsigned('198.51.100.1')).status).toBe(401)
    const limited = await unsigned('198.51.100.1')
    expect(limited.status).toBe(429)
    expect(json(limited)).toMatchObject({ statusCode: 429, code: 'FLAGGATE_RATE_LIMITED' })
    expect(Number(limited.headers['retry-after'])).toBeGreaterThanOrEqual(1)
    // a signed webhook from the flooding address is refused too; from Flagsmith's address it purges
    expect((await hook(gw, webhookBody(1, 'banner'), '198.51.100.1')).status).toBe(429)
    expect(await poll(gw, core)).toBe(0)
    const ok = await hook(gw, webhookBody(1, 'banner'), '192.0.2.10')
    expect(json(ok)).toMatchObject({ purged: 5 })
  })
})

describe('distinct webhooks close together', () => {
  it('five changes while clients keep polling: every change applied, the documents rebuilt once per window, not once per webhook', async () => {
    // a 2 s window so a busy machine cannot split the burst in many windows
    const { core, gw } = await setup(', coalesce: 2s')
    expect(await poll(gw, core)).toBe(5)
    const names = ['banner', 'max_items', 'dark_mode', 'secret_algo', 'unknown_feature']
    const answers: Array<Promise<RawResponse>> = []
    let rebuilt = 0
    const t0 = Date.now()
    for (const name of names) {
      core.touch(1)
      answers.push(hook(gw, webhookBody(1, name)))
      // give the webhook time to arrive before the clients poll again
      await new Promise((resolve) => setTimeout(resolve, 50))
      rebuilt += await poll(gw, core)
    }
    const elapsed = Date.now() - t0
    for (const r of await Promise.all(answers)) {
      expect(r.status).toBe(200)
      expect(json(r)).toMatchObject({ purged: 5 })
    }
    rebuilt += await poll(gw, core)
    // before: each webhook dropped the documents and the next poll rebuilt them: 5 × 5 = 25
    expect(rebuilt).toBeLessThanOrEqual(5 * Math.ceil(elapsed / 2000 + 1))
    expect(rebuilt).toBeGreaterThanOrEqual(5)
    // and the last change is what the clients now hold: the documents were dropped after it
    const updatedAt = new Date(core.envs[0]!.updatedAt).getTime()
    const doc = json(await raw(gw.url, ENV_DOC, { headers: { 'x-environment-key': KEYS[0]! } })) as { updated_at: string }
    expect(new Date(doc.updated_at).getTime()).toBe(updatedAt)
  })

  it('local evaluation: a change announced while the refresh for the previous one runs is not lost (one Core fetch per change at most)', async () => {
    const core = await startFakeCore()
    onTestFinished(core.close)
    const gw = await startTestGateway(localYaml(core.url, `  mode: always\n  refresh: 1h\n  stateFile: ${join(stateDir(), 'state.json')}\n  environments:\n    - serverKey: ser.dev_server_key`,
      `webhooks:\n  flagsmith: { path: /webhooks/flagsmith, secret: ${SECRET}, coalesce: 0s }\n`), { watch: false })
    onTestFinished(gw.close)
    const banner = async (): Promise<unknown> => {
      const r = await raw(gw.url, '/api/v1/flags/', { headers: { 'x-environment-key': 'dev_client_key' } })
      return (json(r) as Array<{ feature: { name: string }; feature_state_value: unknown }>).find((f) => f.feature.name === 'max_items')?.feature_state_value
    }
    expect(await banner()).toBe(10)
    core.reset()
    // Core sends its document slowly: the refresh for change A has its document (without B) but
    // is still receiving it when B is announced
    core.db.bodyChunkDelayMs = 800
    core.envs[0]!.features[0]!.value = 'changed A'
    core.touch(1)
    expect((await hook(gw, webhookBody(1, 'banner'))).status).toBe(200)
    await new Promise((resolve) => setTimeout(resolve, 200))
    core.envs[0]!.features[1]!.value = 42
    core.touch(1)
    expect((await hook(gw, webhookBody(1, 'max_items'))).status).toBe(200)
    // before: B's refresh joined A's, which had read the document before B: max_items stayed 10 until the next interval (1 h)
    const deadline = Date.now() + 10_000
    while (await banner() !== 42 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50))
    expect(await banner()).toBe(42)
    expect(core.counts(ENV_DOC)).toBeLessThanOrEqual(2)
  })
})
