/**
 * Nothing lost: what Core cannot take while it is down (analytics, identity writes) is kept,
 * within bounds, and reaches Core once it is back, within 15 s: analytics summed, writes in
 * order; across a restart through the state file. Real gateways, the fake Core.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { join } from 'node:path'
import { startFakeCore, type FakeCore, type RecordedRequest } from '../support/fake-flagsmith.js'
import { startTestGateway, type TestGateway } from '../support/gateway.js'
import { json, raw } from '../support/http.js'
import { localYaml, stateDir, untilRefreshed } from './support.js'

const CLIENT = 'dev_client_key'
const SERVER = 'ser.dev_server_key'
const open: Array<{ close: () => Promise<void> }> = []
afterEach(async () => { for (const o of open.splice(0).reverse()) await o.close() })

async function gateway (core: FakeCore, local: string): Promise<TestGateway> {
  const gw = await startTestGateway(localYaml(core.url, local), { watch: false })
  open.push(gw)
  return gw
}

const fromGateway = (r: RecordedRequest, path: string): boolean => r.path === path && String(r.headers['user-agent']).startsWith('flaggate/')

/** Waits until `f` is true: Core's side of the delivery, bounded by the 15 s promise. */
async function within15s (f: () => boolean): Promise<number> {
  const t0 = Date.now()
  while (!f()) {
    if (Date.now() - t0 > 15_000) throw new Error('not delivered within 15 s of Core coming back')
    await new Promise((r) => setTimeout(r, 20))
  }
  return Date.now() - t0
}

async function status (gw: TestGateway): Promise<{ kept: { writes: number; analyticsCounters: number }; environments: Array<Record<string, unknown>> }> {
  return (json(await raw(gw.adminUrl, '/admin/status', { headers: { authorization: 'Bearer a-very-long-admin-token' } })) as { localEvaluation: never }).localEvaluation
}

const post = async (gw: TestGateway, path: string, key: string, body: unknown): Promise<Awaited<ReturnType<typeof raw>>> =>
  await raw(gw.url, path, { method: 'POST', headers: { 'x-environment-key': key, 'content-type': 'application/json' }, body: JSON.stringify(body) })

describe('local evaluation: nothing lost', () => {
  it('analytics sent while Core is down reach it after, summed per environment; identity writes are replayed in order', async () => {
    const core = await startFakeCore()
    open.push(core)
    const gw = await gateway(core, `  mode: fallback\n  refresh: 1h\n  stateFile: ${join(stateDir(), 's.json')}\n  environments:\n    - serverKey: ${SERVER}`)
    await untilRefreshed(gw)
    core.db.down = true
    for (let i = 0; i < 3; i++) {
      const r = await post(gw, '/api/v1/analytics/flags/', CLIENT, { banner: 2, max_items: 1 })
      expect([r.status, r.headers['x-flaggate-source']]).toEqual([200, 'local'])
    }
    const v2 = await post(gw, '/api/v2/analytics/flags/', SERVER, { evaluations: [{ feature_name: 'banner', count: 4, enabled_when_evaluated: true }] })
    expect(v2.status).toBe(204)
    for (let n = 1; n <= 5; n++) {
      const r = await post(gw, '/api/v1/identities/', CLIENT, { identifier: 'writer', traits: [{ trait_key: 'n', trait_value: n }] })
      expect(r.status).toBe(200)
      expect(r.headers['x-flaggate-source']).toBe('local')
    }
    expect((await status(gw)).kept).toMatchObject({ writes: 5, analyticsCounters: 2 })
    expect(core.traits(1, 'writer')).toBeUndefined()

    core.reset()
    core.db.down = false
    await within15s(() => core.traits(1, 'writer')?.n === 5 && core.requests.some((r) => fromGateway(r, '/api/v1/analytics/flags/') && r.status === 200))
    const writes = core.requests.filter((r) => fromGateway(r, '/api/v1/identities/')).map((r) => (JSON.parse(r.body.toString()) as { traits: Array<{ trait_value: number }> }).traits[0]!.trait_value)
    expect(writes).toEqual([1, 2, 3, 4, 5])
    const sums = core.requests.filter((r) => fromGateway(r, '/api/v1/analytics/flags/')).map((r) => JSON.parse(r.body.toString()) as Record<string, number>)
    expect(sums).toEqual([{ banner: 10, max_items: 3 }])
    // sent with the environment's server key, whichever key the SDKs used
    expect(core.requests.filter((r) => fromGateway(r, '/api/v1/analytics/flags/'))[0]!.headers['x-environment-key']).toBe(SERVER)
    expect((await status(gw)).kept).toMatchObject({ writes: 0, analyticsCounters: 0 })
  })

  it('bounds hold under a flood: what is beyond them is counted as dropped, the rest delivered', async () => {
    const core = await startFakeCore()
    open.push(core)
    const gw = await gateway(core, `  mode: fallback\n  refresh: 1h\n  maxQueuedWrites: 3\n  maxAnalyticsCounters: 2\n  stateFile: ${join(stateDir(), 's.json')}\n  environments:\n    - serverKey: ${SERVER}`)
    await untilRefreshed(gw)
    core.db.down = true
    const answers = await Promise.all(Array.from({ length: 40 }, async (_, i) => await post(gw, '/api/v1/identities/', SERVER, { identifier: `flood-${i}`, traits: [{ trait_key: 'i', trait_value: i }] })))
    expect(answers.every((a) => a.status === 200 && a.headers['x-flaggate-source'] === 'local')).toBe(true)
    await post(gw, '/api/v1/analytics/flags/', CLIENT, { a: 1, b: 1, c: 1, d: 1 })
    expect((await status(gw)).kept).toMatchObject({ writes: 3, analyticsCounters: 2 })
    const metrics = (await raw(gw.adminUrl, '/metrics')).body.toString()
    expect(metrics).toMatch(/flaggate_local_dropped_total\{reason="writes-bound"\} 37/)
    expect(metrics).toMatch(/flaggate_local_dropped_total\{reason="analytics-bound"\} 2/)
    core.reset()
    core.db.down = false
    await within15s(() => core.requests.filter((r) => fromGateway(r, '/api/v1/identities/') && r.status === 200).length === 3)
  })

  it('a restart mid-outage keeps the documents and the kept writes (state file), and delivers them when Core is back', async () => {
    const core = await startFakeCore()
    open.push(core)
    const file = join(stateDir(), 's.json')
    const local = `  mode: fallback\n  refresh: 1h\n  stateFile: ${file}\n  environments:\n    - serverKey: ${SERVER}`
    const first = await startTestGateway(localYaml(core.url, local), { watch: false })
    await untilRefreshed(first)
    core.db.down = true
    await post(first, '/api/v1/identities/', CLIENT, { identifier: 'restarted', traits: [{ trait_key: 'step', trait_value: 'one' }] })
    await post(first, '/api/v1/identities/', CLIENT, { identifier: 'restarted', traits: [{ trait_key: 'step', trait_value: 'two' }] })
    await post(first, '/api/v1/analytics/flags/', CLIENT, { banner: 7 })
    await first.close()

    const second = await gateway(core, local)
    // Core is still down: the restored document answers, the writes wait
    const flags = await raw(second.url, '/api/v1/flags/', { headers: { 'x-environment-key': CLIENT } })
    expect([flags.status, flags.headers['x-flaggate-source']]).toEqual([200, 'local'])
    expect((await status(second)).kept).toMatchObject({ writes: 2, analyticsCounters: 1 })
    core.reset()
    core.db.down = false
    await within15s(() => core.traits(1, 'restarted')?.step === 'two' && core.requests.some((r) => fromGateway(r, '/api/v1/analytics/flags/') && r.status === 200))
    expect(core.requests.filter((r) => fromGateway(r, '/api/v1/identities/')).map((r) => (JSON.parse(r.body.toString()) as { traits: Array<{ trait_value: string }> }).traits[0]!.trait_value)).toEqual(['one', 'two'])
  })

  it('mode always: identity writes are answered locally and sent to Core behind the answer; analytics go to Core as usual', async () => {
    const core = await startFakeCore()
    open.push(core)
    const gw = await gateway(core, `  mode: always\n  refresh: 1h\n  stateFile: ${join(stateDir(), 's.json')}\n  environments:\n    - serverKey: ${SERVER}`)
    await untilRefreshed(gw)
    const r = await post(gw, '/api/v1/identities/', CLIENT, { identifier: 'behind', traits: [{ trait_key: 'plan', trait_value: 'pro' }] })
    expect(r.headers['x-flaggate-source']).toBe('local')
    expect((json(r) as { flags: Array<{ feature: { name: string }; feature_state_value: unknown }> }).flags[0]!.feature_state_value).toBe('pro banner')
    await within15s(() => core.traits(1, 'behind')?.plan === 'pro')
    const a = await post(gw, '/api/v1/analytics/flags/', CLIENT, { banner: 1 })
    expect([a.status, a.headers['x-flaggate-source']]).toEqual([200, undefined])
  })
})
