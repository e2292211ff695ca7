/**
 * Local evaluation through a real gateway on real sockets, the fake Core behind it: the
 * published server SDK (remote evaluation, pointed at the gateway) keeps getting the flags Core
 * would have given while Core is down; unlisted environments get the gateway's errors; `always`
 * mode keeps Core out of flags/ and identities/ entirely; the document follows Core's changes.
 */
import { Flagsmith } from 'flagsmith-nodejs'
import { afterEach, describe, expect, it, onTestFinished } from 'vitest'
import { signWebhook, startFakeCore, webhookBody, type FakeCore } from '../support/fake-flagsmith.js'
import { startTestGateway, type TestGateway } from '../support/gateway.js'
import { json, raw } from '../support/http.js'
import { join } from 'node:path'
import { localYaml, stateDir, untilRefreshed } from './support.js'

const CLIENT = 'dev_client_key'
const SERVER = 'ser.dev_server_key'
const PROD_CLIENT = 'prod_client_key'

const open: Array<{ close: () => Promise<void> }> = []
afterEach(async () => { for (const o of open.splice(0).reverse()) await o.close() })

async function gateway (core: FakeCore, local: string, extra = ''): Promise<TestGateway> {
  const gw = await startTestGateway(localYaml(core.url, local, extra), { watch: false })
  open.push(gw)
  return gw
}

async function fake (): Promise<FakeCore> {
  const core = await startFakeCore()
  open.push(core)
  return core
}

function sdk (gw: TestGateway, key: string): Flagsmith {
  const s = new Flagsmith({ environmentKey: key, apiUrl: `${gw.url}/api/v1/`, retries: 0, requestTimeoutSeconds: 5 })
  onTestFinished(async () => { await s.close() })
  return s
}

type Flags = Awaited<ReturnType<Flagsmith['getEnvironmentFlags']>>
function values (flags: Flags): Record<string, [boolean, unknown]> {
  const out: Record<string, [boolean, unknown]> = {}
  for (const f of flags.allFlags()) out[f.featureName] = [f.enabled, f.value]
  return out
}

describe('local evaluation, mode fallback', () => {
  it('Core down: the SDK gets from the gateway exactly the flags Core gave it; unlisted environments get the gateway\'s error', async () => {
    const core = await fake()
    const gw = await gateway(core, `  mode: fallback\n  refresh: 1h\n  stateFile: ${join(stateDir(), 'state.json')}\n  environments:\n    - serverKey: ${SERVER}`)
    await untilRefreshed(gw)
    const asked: Array<[string, Record<string, unknown> | undefined]> = [['carol', { plan: 'pro' }], ['dave', { plan: 'free' }], ['identity-override-2', undefined]]
    const want: Record<string, unknown> = {}
    for (const key of [CLIENT, SERVER]) {
      const s = sdk(gw, key)
      want[`${key} env`] = values(await s.getEnvironmentFlags())
      for (const [id, traits] of asked) want[`${key} ${id}`] = values(await s.getIdentityFlags(id, traits as never, true))
    }
    const up = await raw(gw.url, '/api/v1/flags/', { headers: { 'x-environment-key': CLIENT } })
    expect(up.headers['x-flaggate-source']).toBeUndefined()

    core.db.down = true
    const got: Record<string, unknown> = {}
    for (const key of [CLIENT, SERVER]) {
      const s = sdk(gw, key)
      got[`${key} env`] = values(await s.getEnvironmentFlags())
      for (const [id, traits] of asked) got[`${key} ${id}`] = values(await s.getIdentityFlags(id, traits as never, true))
    }
    expect(got).toEqual(want)
    // the SDK's view hides the wire: the answers said they were local
    const local = await raw(gw.url, '/api/v1/flags/?feature=banner', { headers: { 'x-environment-key': CLIENT } })
    expect(local.status).toBe(200)
    expect(local.headers['x-flaggate-source']).toBe('local')
    expect(local.headers['x-flaggate-upstream']).toBe('none')
    expect(json(local)).toMatchObject({ feature: { name: 'banner' }, feature_state_value: 'hello', enabled: true })
    const hidden = await raw(gw.url, '/api/v1/flags/?feature=secret_algo', { headers: { 'x-environment-key': CLIENT } })
    expect([hidden.status, json(hidden)]).toEqual([404, { detail: 'Given feature not found' }])
    const missing = await raw(gw.url, '/api/v1/identities/', { headers: { 'x-environment-key': CLIENT } })
    expect([missing.status, json(missing)]).toEqual([200, { detail: 'Missing identifier' }])

    // an environment nobody listed: the gateway's own error, as without local evaluation
    const unlisted = await raw(gw.url, '/api/v1/flags/', { headers: { 'x-environment-key': PROD_CLIENT } })
    expect(unlisted.status).toBe(502)
    expect((json(unlisted) as { code: string }).code).toBe('FLAGGATE_UPSTREAM_UNREACHABLE')

    const metrics = (await raw(gw.adminUrl, '/metrics')).body.toString()
    expect(metrics).toMatch(/flaggate_requests_total\{route="flags",decision="local",status="200"\} [1-9]/)
    expect(metrics).toMatch(/flaggate_local_answers_total\{kind="identity-post"\} [1-9]/)
    const logged = gw.logs.lines.filter((l) => l.decision === 'local')
    expect(logged.length).toBeGreaterThan(0)
    // readiness stays 200 while Core is down: this is when local answers matter
    expect((await raw(gw.url, '/readyz')).status).toBe(200)
  })

  it('a Core 5xx and the gate\'s shedding are answered locally too', async () => {
    const core = await fake()
    const gw = await gateway(core, `  mode: fallback\n  refresh: 1h\n  stateFile: ${join(stateDir(), 'state.json')}\n  environments:\n    - serverKey: ${SERVER}`,
      'breakers:\n  core:\n    maxInFlight: 1\n')
    await untilRefreshed(gw)
    core.db.failRate = 1
    const r = await raw(gw.url, '/api/v1/identities/?identifier=erin', { headers: { 'x-environment-key': CLIENT } })
    expect(r.status).toBe(200)
    expect(r.headers['x-flaggate-source']).toBe('local')
    expect((json(r) as { identifier: string }).identifier).toBe('erin')
    // one request holds the only slot; the next is shed by the gate and answered locally
    core.db.failRate = 0
    core.db.hang = true
    const held = raw(gw.url, '/api/v1/flags/', { headers: { 'x-environment-key': SERVER } })
    let shed: Awaited<ReturnType<typeof raw>> | undefined
    for (let i = 0; i < 100 && shed?.headers['x-flaggate-source'] !== 'local'; i++) {
      shed = await raw(gw.url, '/api/v1/flags/', { headers: { 'x-environment-key': CLIENT } })
    }
    expect(shed?.status).toBe(200)
    expect(shed?.headers['x-flaggate-source']).toBe('local')
    core.db.hang = false
    await core.close()
    await held.catch(() => {})
  })

  it('a key Core refuses is reported in the status and the log, and the gateway serves on', async () => {
    const core = await fake()
    const gw = await gateway(core, `  mode: fallback\n  refresh: 1h\n  stateFile: ${join(stateDir(), 'state.json')}\n  environments:\n    - serverKey: ser.nobody_knows_me\n    - serverKey: ${SERVER}`)
    const refused = await untilRefreshed(gw, 'refused', 0)
    expect(refused.serverKey).not.toContain('nobody')
    expect(gw.logs.lines.some((l) => typeof l.msg === 'string' && l.msg.includes('could not be refreshed') && l.result === 'refused')).toBe(true)
    await untilRefreshed(gw, 'ok', 1)
    expect((await raw(gw.url, '/api/v1/flags/', { headers: { 'x-environment-key': CLIENT } })).status).toBe(200)
  })
})

describe('local evaluation, mode always', () => {
  it('Core never sees flags/ or identities/ of a listed environment; a document change reaches answers at the next refresh, a webhook at once', async () => {
    const core = await fake()
    const gw = await gateway(core, `  mode: always\n  refresh: 1h\n  stateFile: ${join(stateDir(), 'state.json')}\n  environments:\n    - serverKey: ${SERVER}`,
      'webhooks:\n  flagsmith: { path: /webhooks/flagsmith, secret: s3cret }\n')
    core.reset()
    const s = sdk(gw, CLIENT)
    expect((await s.getEnvironmentFlags()).getFeatureValue('banner')).toBe('hello')
    expect((await s.getIdentityFlags('carol', { plan: 'pro' }, true)).getFeatureValue('banner')).toBe('pro banner')
    expect(core.counts('/api/v1/flags/')).toBe(0)
    expect(core.counts('/api/v1/identities/')).toBe(0)
    expect(core.counts('/api/v1/environment-document/')).toBe(1)

    core.envs[0]!.features[0]!.value = 'changed'
    core.touch(1)
    const body = webhookBody(1, 'banner')
    const hook = await raw(gw.url, '/webhooks/flagsmith', { method: 'POST', body, headers: { 'content-type': 'application/json', 'x-flagsmith-signature': signWebhook('s3cret', body) } })
    expect(hook.status).toBe(200)
    for (let i = 0; i < 200 && (await s.getEnvironmentFlags()).getFeatureValue('banner') !== 'changed'; i++) await new Promise((r) => setTimeout(r, 25))
    expect((await s.getEnvironmentFlags()).getFeatureValue('banner')).toBe('changed')
    expect(core.counts('/api/v1/flags/')).toBe(0)
  })

  it('before the first document, a request waits for it rather than go to Core', async () => {
    const core = await fake()
    core.db.queryLatencyMs = 150
    const gw = await gateway(core, `  mode: always\n  refresh: 1h\n  firstDocumentTimeout: 5s\n  stateFile: ${join(stateDir(), 'state.json')}\n  environments:\n    - serverKey: ${SERVER}`)
    const r = await raw(gw.url, '/api/v1/flags/', { headers: { 'x-environment-key': SERVER } })
    expect(r.status).toBe(200)
    expect(r.headers['x-flaggate-source']).toBe('local')
    expect(core.counts('/api/v1/flags/')).toBe(0)
  })
})
