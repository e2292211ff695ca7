/**
 * Edge routing through a real gateway, with the fake Core and the fake Edge on real sockets:
 * where each request lands (counted on each fake), what the client sees, the metrics, live
 * reload of the split, and the Flagsmith Node SDK at 100% Edge.
 */
import { writeFileSync } from 'node:fs'
import { Flagsmith } from 'flagsmith-nodejs'
import { afterAll, beforeAll, beforeEach, describe, expect, it, onTestFinished } from 'vitest'
import { decideEdge } from '../../src/edge/core.js'
import { startFakeCore, startFakeEdge, type FakeCore, type FakeEdge } from '../support/fake-flagsmith.js'
import { policyYaml, startTestGateway, type TestGateway } from '../support/gateway.js'
import { json, raw } from '../support/http.js'
import { scrapeMetrics } from '../support/metrics.js'

const CLIENT = 'dev_client_key'
const SERVER = 'ser.dev_server_key'
const PROD = 'prod_client_key'

let core: FakeCore
let edge: FakeEdge
let gw: TestGateway

function routes (flagsEdge: string, identitiesEdge = '{ percent: 0, keys: [] }'): string {
  return `  - name: environment-document
    match: { methods: [GET], path: /api/v1/environment-document/ }
    upstream: core
  - name: flags
    match: { methods: [GET], path: /api/v1/flags/ }
    upstream: core
    edge: ${flagsEdge}
  - name: identities
    match: { methods: [GET, POST], path: /api/v1/identities/ }
    upstream: core
    edge: ${identitiesEdge}
  - name: traits
    match: { methods: [POST], pathPrefix: /api/v1/traits/ }
    upstream: core
  - name: default
    match: { pathPrefix: / }
    upstream: core`
}

function policy (flagsEdge: string, identitiesEdge?: string): string {
  return policyYaml({ coreUrl: core.url, edgeUrl: edge.url, routes: routes(flagsEdge, identitiesEdge) })
}

/** Rewrites the policy file and reloads it (as SIGHUP or POST /admin/reload would). */
function setPolicy (yaml: string): void {
  writeFileSync(gw.file, yaml)
  expect(gw.reload().ok).toBe(true)
}

const metric = async (name: string, labels: Record<string, string>): Promise<number> => (await scrapeMetrics(gw.adminUrl)).value(name, labels)

beforeAll(async () => {
  core = await startFakeCore()
  edge = await startFakeEdge()
  gw = await startTestGateway(policy(`{ percent: 0, keys: [${SERVER}] }`, `{ percent: 0, keys: [${SERVER}] }`), { watch: false })
})
afterAll(async () => { await gw?.close(); await core?.close(); await edge?.close() })
beforeEach(() => { core.reset(); edge.reset() })

describe('edge routing through the gateway', () => {
  it('a listed key\'s flags come from Edge, in Edge\'s shape, and the header says so', async () => {
    const res = await raw(gw.url, '/api/v1/flags/', { headers: { 'x-environment-key': SERVER } })
    expect(res.status).toBe(200)
    expect(res.headers['x-flaggate-upstream']).toBe('edge')
    expect((json(res) as Array<Record<string, unknown>>)[0]).toEqual({ feature: { id: 1, name: 'banner', type: 'STANDARD' }, enabled: true, feature_state_value: 'hello' })
    expect(edge.counts('/api/v1/flags/', SERVER)).toBe(1)
    expect(core.counts()).toBe(0)
  })

  it('other keys and requests without a key stay on Core', async () => {
    const other = await raw(gw.url, '/api/v1/flags', { headers: { 'x-environment-key': CLIENT } })
    expect(other.status).toBe(200)
    expect(other.headers['x-flaggate-upstream']).toBe('core')
    expect((json(other) as Array<Record<string, unknown>>)[0]).toHaveProperty('environment', 1)
    const noKey = await raw(gw.url, '/api/v1/flags/')
    expect(noKey.status).toBe(403)
    expect(noKey.headers['x-flaggate-upstream']).toBe('core')
    expect(core.counts('/api/v1/flags/')).toBe(2)
    expect(edge.counts()).toBe(0)
  })

  it('traits/ stays on Core, even for a listed key', async () => {
    const res = await raw(gw.url, '/api/v1/traits/', {
      method: 'POST',
      headers: { 'x-environment-key': SERVER, 'content-type': 'application/json' },
      body: JSON.stringify({ identity: { identifier: 'tina' }, trait_key: 'plan', trait_value: 'pro' })
    })
    expect(res.status).toBe(200)
    expect(res.headers['x-flaggate-upstream']).toBe('core')
    expect(core.traits(1, 'tina')).toEqual({ plan: 'pro' })
    expect(edge.counts()).toBe(0)
  })

  it('a listed key\'s identity write lands on Edge only', async () => {
    const res = await raw(gw.url, '/api/v1/identities/', {
      method: 'POST',
      headers: { 'x-environment-key': SERVER, 'content-type': 'application/json' },
      body: JSON.stringify({ identifier: 'ivy', traits: [{ trait_key: 'plan', trait_value: 'pro' }] })
    })
    expect(res.status).toBe(200)
    expect(res.headers['x-flaggate-upstream']).toBe('edge')
    expect(edge.traits(1, 'ivy')).toEqual({ plan: 'pro' })
    expect(core.traits(1, 'ivy')).toBeUndefined()
  })

  it('splits distinct keys exactly as the decision function says, and counts them per upstream and reason', async () => {
    setPolicy(policy('{ percent: 30, keys: [] }'))
    onTestFinished(() => { setPolicy(policy(`{ percent: 0, keys: [${SERVER}] }`, `{ percent: 0, keys: [${SERVER}] }`)) })
    const keys = Array.from({ length: 120 }, (_, i) => `key-${i}`)
    const expectedEdge = keys.filter((k) => decideEdge({ percent: 30, keys: new Set(), whenOpen: false }, { routeUpstream: 'core', method: 'GET', key: k, upstreamOpen: false }).upstream === 'edge')
    const hashedBefore = await metric('flaggate_edge_routing_total', { route: 'flags', upstream: 'edge', reason: 'hashed' })
    for (const k of keys) {
      const res = await raw(gw.url, '/api/v1/flags/', { headers: { 'x-environment-key': k } })
      // unknown keys: each upstream answers 403 itself
      expect(res.status).toBe(403)
      expect(res.headers['x-flaggate-upstream']).toBe(expectedEdge.includes(k) ? 'edge' : 'core')
    }
    expect(expectedEdge.length).toBeGreaterThan(20)
    expect(expectedEdge.length).toBeLessThan(60)
    for (const k of keys) {
      const onEdge = expectedEdge.includes(k)
      expect({ k, edge: edge.counts('/api/v1/flags/', k), core: core.counts('/api/v1/flags/', k) }).toEqual({ k, edge: onEdge ? 1 : 0, core: onEdge ? 0 : 1 })
    }
    expect(await metric('flaggate_edge_routing_total', { route: 'flags', upstream: 'edge', reason: 'hashed' }) - hashedBefore).toBe(expectedEdge.length)
    expect(await metric('flaggate_edge_routing_total', { route: 'flags', upstream: 'core', reason: 'not-selected' })).toBeGreaterThanOrEqual(keys.length - expectedEdge.length)
  })

  it('the split reloads live: raising the percentage moves keys to Edge, editing it back returns them', async () => {
    onTestFinished(() => { setPolicy(policy(`{ percent: 0, keys: [${SERVER}] }`, `{ percent: 0, keys: [${SERVER}] }`)) })
    const upstreamOf = async (key: string): Promise<unknown> => (await raw(gw.url, '/api/v1/flags/', { headers: { 'x-environment-key': key } })).headers['x-flaggate-upstream']
    // dev_client_key is in bucket 178, prod_client_key in 8976
    setPolicy(policy('{ percent: 1, keys: [] }'))
    expect([await upstreamOf(CLIENT), await upstreamOf(PROD)]).toEqual(['core', 'core'])
    setPolicy(policy('{ percent: 1.79, keys: [] }'))
    expect([await upstreamOf(CLIENT), await upstreamOf(PROD)]).toEqual(['edge', 'core'])
    setPolicy(policy('{ percent: 100, keys: [] }'))
    expect([await upstreamOf(CLIENT), await upstreamOf(PROD)]).toEqual(['edge', 'edge'])
    // roll back by editing the YAML
    setPolicy(policy('{ percent: 0, keys: [] }'))
    expect([await upstreamOf(CLIENT), await upstreamOf(PROD)]).toEqual(['core', 'core'])
    expect(edge.counts('/api/v1/flags/')).toBe(3)
    expect(core.counts('/api/v1/flags/')).toBe(5)
  })

  it('a write to Edge that fails is not retried on Core: the client gets the 502', async () => {
    edge.db.down = true
    onTestFinished(() => { edge.db.down = false })
    const res = await raw(gw.url, '/api/v1/identities/', {
      method: 'POST',
      headers: { 'x-environment-key': SERVER, 'content-type': 'application/json' },
      body: JSON.stringify({ identifier: 'wes', traits: [{ trait_key: 'plan', trait_value: 'pro' }] })
    })
    expect(res.status).toBe(502)
    expect(json(res)).toMatchObject({ statusCode: 502, code: 'FLAGGATE_UPSTREAM_UNREACHABLE' })
    expect(edge.counts('/api/v1/identities/')).toBeGreaterThanOrEqual(1)
    expect(core.counts()).toBe(0)
    expect(core.traits(1, 'wes')).toBeUndefined()
  })
})

describe('flagsmith-nodejs 8.1.2 in remote evaluation, routes at 100% Edge', () => {
  it('environment flags and identity flags with traits all come from Edge; Core sees nothing', async () => {
    setPolicy(policy('{ percent: 100, keys: [] }', '{ percent: 100, keys: [] }'))
    onTestFinished(() => { setPolicy(policy(`{ percent: 0, keys: [${SERVER}] }`, `{ percent: 0, keys: [${SERVER}] }`)) })
    const sdk = new Flagsmith({ environmentKey: CLIENT, apiUrl: `${gw.url}/api/v1/`, retries: 0 })
    onTestFinished(async () => { await sdk.close() })
    const flags = await sdk.getEnvironmentFlags()
    expect(flags.getFeatureValue('banner')).toBe('hello')
    expect(flags.getFeatureValue('max_items')).toBe(10)
    const identity = await sdk.getIdentityFlags('carol', { plan: 'pro', age: 30 })
    expect(identity.getFeatureValue('banner')).toBe('pro banner')
    expect(edge.traits(1, 'carol')).toEqual({ plan: 'pro', age: 30 })
    expect(edge.counts('/api/v1/flags/', CLIENT)).toBe(1)
    expect(edge.counts('/api/v1/identities/', CLIENT)).toBe(1)
    expect(core.counts()).toBe(0)
  })
})
