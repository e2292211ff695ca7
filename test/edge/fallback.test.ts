/**
 * Edge failures through a real gateway (fake Core and fake Edge on real sockets): a read sent to
 * Edge is answered by Core when Edge is down, slow or failing; a write never is. Core's open
 * breaker sends edge-enabled reads to Edge. The environment-document cache keeps Edge's and
 * Core's documents apart, page by page.
 */
import { writeFileSync } from 'node:fs'
import { Flagsmith } from 'flagsmith-nodejs'
import { afterAll, beforeAll, beforeEach, describe, expect, it, onTestFinished } from 'vitest'
import { GatewayError } from '../../src/errors.js'
import { OPEN_GATE, type Admission, type UpstreamGate } from '../../src/upstream/index.js'
import { identityOverrideIdentifier, IDENTITY_OVERRIDE_VALUE, startFakeCore, startFakeEdge, type FakeCore, type FakeEdge } from '../support/fake-flagsmith.js'
import { policyYaml, startTestGateway, type TestGateway } from '../support/gateway.js'
import { json, raw } from '../support/http.js'
import { scrapeMetrics } from '../support/metrics.js'

const CLIENT = 'dev_client_key'
const SERVER = 'ser.dev_server_key'

let core: FakeCore
let edge: FakeEdge
let gw: TestGateway

function policy (percent: number, keys: string[] = [], whenOpen = false): string {
  const edgeRule = `{ percent: ${percent}, keys: [${keys.join(', ')}]${whenOpen ? ', whenOpen: true' : ''} }`
  return policyYaml({
    coreUrl: core.url,
    edgeUrl: edge.url,
    coreTimeout: '10s',
    routes: `  - name: environment-document
    match: { methods: [GET], path: /api/v1/environment-document/ }
    upstream: core
    edge: ${edgeRule}
    cache: { ttl: 1h }
  - name: flags
    match: { methods: [GET], path: /api/v1/flags/ }
    upstream: core
    edge: ${edgeRule}
  - name: identities
    match: { methods: [GET, POST], path: /api/v1/identities/ }
    upstream: core
    edge: ${edgeRule}
  - name: default
    match: { pathPrefix: / }
    upstream: core`
  // Edge times out well within Core's budget, so a timeout on Edge leaves time for Core
  }).replace(`edge: { url: "${edge.url}", timeout: 5s }`, `edge: { url: "${edge.url}", timeout: 1s }`)
}

function setPolicy (yaml: string): void {
  writeFileSync(gw.file, yaml)
  expect(gw.reload().ok).toBe(true)
}

const metric = async (name: string, labels: Record<string, string>): Promise<number> => (await scrapeMetrics(gw.adminUrl)).value(name, labels)

const flags = async (key: string) => await raw(gw.url, '/api/v1/flags/', { headers: { 'x-environment-key': key } })
const identify = async (key: string, identifier: string) => await raw(gw.url, '/api/v1/identities/', {
  method: 'POST',
  headers: { 'x-environment-key': key, 'content-type': 'application/json' },
  body: JSON.stringify({ identifier, traits: [{ trait_key: 'plan', trait_value: 'pro' }] })
})

beforeAll(async () => {
  core = await startFakeCore()
  edge = await startFakeEdge()
  gw = await startTestGateway(policy(0, [CLIENT, SERVER]), { watch: false })
})
afterAll(async () => { await gw?.close(); await core?.close(); await edge?.close() })
beforeEach(async () => {
  // every test starts with an empty document cache
  expect((await raw(gw.adminUrl, '/admin/cache/purge', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' })).status).toBe(200)
  core.reset()
  edge.reset()
  edge.db = { ...edge.db, down: false, hang: false, failRate: 0 }
  gw.client.gate = OPEN_GATE
  setPolicy(policy(0, [CLIENT, SERVER]))
})

describe('a read that Edge fails is answered by Core, once', () => {
  it.each([
    ['down (connection reset)', () => { edge.db.down = true }],
    ['failing (500)', () => { edge.db.failRate = 1 }],
    ['hanging (timeout)', () => { edge.db.hang = true }]
  ])('Edge %s: the flags come from Core and the header says core', async (_name, breakEdge) => {
    breakEdge()
    const before = await metric('flaggate_upstream_fallbacks_total', { route: 'flags', from: 'edge', to: 'core' })
    const res = await flags(CLIENT)
    expect(res.status).toBe(200)
    expect(res.headers['x-flaggate-upstream']).toBe('core')
    // Core's shape: the flag carries its environment
    expect((json(res) as Array<Record<string, unknown>>)[0]).toHaveProperty('environment', 1)
    // a reset GET is first retried once on a fresh connection to Edge itself (upstream module)
    expect(edge.counts('/api/v1/flags/', CLIENT)).toBeGreaterThanOrEqual(1)
    expect(core.counts('/api/v1/flags/', CLIENT)).toBe(1)
    expect(await metric('flaggate_upstream_fallbacks_total', { route: 'flags', from: 'edge', to: 'core' }) - before).toBe(1)
    expect(await metric('flaggate_edge_routing_total', { route: 'flags', upstream: 'edge', reason: 'listed' })).toBeGreaterThanOrEqual(1)
  })

  it('a healthy Edge answers itself: no fallback, Core sees nothing', async () => {
    const res = await flags(CLIENT)
    expect(res.headers['x-flaggate-upstream']).toBe('edge')
    expect(core.counts()).toBe(0)
  })

  it('a GET of identities falls back too (the read creates nothing on Edge that Core lacks)', async () => {
    edge.db.down = true
    const res = await raw(gw.url, '/api/v1/identities/?identifier=gus', { headers: { 'x-environment-key': CLIENT } })
    expect(res.status).toBe(200)
    expect(res.headers['x-flaggate-upstream']).toBe('core')
  })
})

describe('a write that Edge fails is never sent to Core', () => {
  it('Edge 500: the client gets Edge\'s 500; Core sees nothing', async () => {
    edge.db.failRate = 1
    const res = await identify(CLIENT, 'walt')
    expect(res.status).toBe(500)
    expect(res.headers['x-flaggate-upstream']).toBe('edge')
    expect(core.counts()).toBe(0)
    expect(core.traits(1, 'walt')).toBeUndefined()
  })

  it('Edge down: 502; Edge hanging: 504; Core sees nothing', async () => {
    const before = await metric('flaggate_upstream_fallbacks_total', { route: 'identities', from: 'edge', to: 'core' })
    edge.db.down = true
    const down = await identify(CLIENT, 'wes')
    expect(down.status).toBe(502)
    expect(json(down)).toMatchObject({ code: 'FLAGGATE_UPSTREAM_UNREACHABLE' })
    edge.db = { ...edge.db, down: false, hang: true }
    const hung = await identify(CLIENT, 'wes')
    expect(hung.status).toBe(504)
    expect(json(hung)).toMatchObject({ code: 'FLAGGATE_UPSTREAM_TIMEOUT' })
    expect(core.counts()).toBe(0)
    expect(await metric('flaggate_upstream_fallbacks_total', { route: 'identities', from: 'edge', to: 'core' })).toBe(before)
  })
})

/** A gate reporting Core's breaker open, as the breaker room's gate does (the UpstreamGate seam). */
class CoreOpenGate implements UpstreamGate {
  admit (upstream: string): Admission | GatewayError {
    return upstream === 'core' ? new GatewayError('FLAGGATE_UPSTREAM_OVERLOADED', undefined, { 'retry-after': '15' }) : { finish: () => {} }
  }

  isOpen (upstream: string): boolean { return upstream === 'core' }
}

describe('Core\'s breaker open', () => {
  it('without whenOpen, nothing goes to Edge: reads and writes stay on Core and are shed there', async () => {
    setPolicy(policy(0))
    gw.client.gate = new CoreOpenGate()
    const edgeBefore = edge.counts()
    const read = await flags(CLIENT)
    expect(read.status).toBe(503)
    expect(json(read)).toMatchObject({ code: 'FLAGGATE_UPSTREAM_OVERLOADED' })
    expect((await identify(CLIENT, 'olga')).status).toBe(503)
    expect(edge.counts()).toBe(edgeBefore)
  })

  it('with whenOpen, edge-enabled reads of unselected keys go to Edge; writes stay on Core (and are shed there)', async () => {
    setPolicy(policy(0, [], true))
    gw.client.gate = new CoreOpenGate()
    const read = await flags(CLIENT)
    expect(read.status).toBe(200)
    expect(read.headers['x-flaggate-upstream']).toBe('edge')
    expect(await metric('flaggate_edge_routing_total', { route: 'flags', upstream: 'edge', reason: 'breaker-open' })).toBeGreaterThanOrEqual(1)
    const write = await identify(CLIENT, 'olga')
    expect(write.status).toBe(503)
    expect(json(write)).toMatchObject({ code: 'FLAGGATE_UPSTREAM_OVERLOADED' })
    expect(edge.counts('/api/v1/identities/')).toBe(0)
    expect(core.counts()).toBe(0)
  })
})

describe('environment-document cache with edge routing', () => {
  it('keys on the upstream: Edge\'s and Core\'s documents are never served for each other', async () => {
    setPolicy(policy(0))
    const doc = async () => await raw(gw.url, '/api/v1/environment-document/', { headers: { 'x-environment-key': SERVER } })
    const fromCore = await doc()
    expect([fromCore.headers['x-cache-status'], fromCore.headers['x-flaggate-upstream'], fromCore.headers.link]).toEqual(['MISS', 'core', undefined])
    expect((await doc()).headers['x-cache-status']).toBe('HIT')

    setPolicy(policy(100))
    const fromEdge = await doc()
    expect([fromEdge.headers['x-cache-status'], fromEdge.headers['x-flaggate-upstream']]).toEqual(['MISS', 'edge'])
    expect(fromEdge.headers.link).toMatch(/page_id=identity_override%3A1%3A/)
    expect((json(fromEdge) as { identity_overrides: unknown[] }).identity_overrides).toHaveLength(2)
    const again = await doc()
    expect(again.headers['x-cache-status']).toBe('HIT')
    expect(again.headers.link).toBe(fromEdge.headers.link)

    // back to Core: its own document, still cached, with all three overrides and no Link
    setPolicy(policy(0))
    const back = await doc()
    expect([back.headers['x-cache-status'], back.headers.link]).toEqual(['HIT', undefined])
    expect((json(back) as { identity_overrides: unknown[] }).identity_overrides).toHaveLength(3)
    expect(core.counts('/api/v1/environment-document/')).toBe(1)
    expect(edge.counts('/api/v1/environment-document/')).toBe(1)
  })

  it('Edge pages are cached one by one, and the SDK in local evaluation reads every page through the gateway', async () => {
    setPolicy(policy(100))
    const sdk = new Flagsmith({ environmentKey: SERVER, apiUrl: `${gw.url}/api/v1/`, enableLocalEvaluation: true, retries: 0 })
    onTestFinished(async () => { await sdk.close() })
    // identity-override-3 is only on Edge's second page
    expect((await sdk.getIdentityFlags(identityOverrideIdentifier(3))).getFeatureValue('banner')).toBe(IDENTITY_OVERRIDE_VALUE)
    const pages = edge.requests.filter((r) => r.path.startsWith('/api/v1/environment-document')).map((r) => r.query.replace(/:[0-9a-f-]{36}$/, ':<uuid>'))
    expect(pages).toEqual(['', 'page_id=identity_override:1:<uuid>'])
    const page2 = `/api/v1/environment-document/?${edge.requests[edge.requests.length - 1]!.query}`
    expect((await raw(gw.url, page2, { headers: { 'x-environment-key': SERVER } })).headers['x-cache-status']).toBe('HIT')
    expect(core.counts()).toBe(0)
  })

  it('a document fill that Edge fails is answered by Core (and cached as Core\'s)', async () => {
    setPolicy(policy(0, [SERVER]))
    edge.db.down = true
    const res = await raw(gw.url, '/api/v1/environment-document/', { headers: { 'x-environment-key': SERVER } })
    expect(res.status).toBe(200)
    expect(res.headers['x-flaggate-upstream']).toBe('core')
    expect((json(res) as { identity_overrides: unknown[] }).identity_overrides).toHaveLength(3)
    expect(core.counts('/api/v1/environment-document/')).toBe(1)
    expect(await metric('flaggate_upstream_fallbacks_total', { route: 'environment-document', from: 'edge', to: 'core' })).toBeGreaterThanOrEqual(1)
  })
})
