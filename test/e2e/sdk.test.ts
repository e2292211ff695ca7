/**
 * The published Flagsmith Node SDK (flagsmith-nodejs 8.1.2) pointed at the gateway instead of
 * Core: remote evaluation (flags, identity with traits) and local evaluation (environment
 * document, including Edge's paginated one) must work exactly as against Core.
 */
import { Flagsmith } from 'flagsmith-nodejs'
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest'
import { identityOverrideIdentifier, IDENTITY_OVERRIDE_VALUE, startFakeCore, startFakeEdge, type FakeCore, type FakeEdge } from '../support/fake-flagsmith.js'
import { policyYaml, startTestGateway, type TestGateway } from '../support/gateway.js'

const CLIENT = 'dev_client_key'
const SERVER = 'ser.dev_server_key'
let core: FakeCore
let edge: FakeEdge
let gw: TestGateway
let edgeGw: TestGateway

beforeAll(async () => {
  core = await startFakeCore()
  edge = await startFakeEdge()
  gw = await startTestGateway(policyYaml({ coreUrl: core.url }))
  // a gateway whose "core" upstream is the Edge API: the SDK follows its Link pagination through us
  edgeGw = await startTestGateway(policyYaml({ coreUrl: edge.url }))
})
afterAll(async () => { await gw?.close(); await edgeGw?.close(); await core?.close(); await edge?.close() })

describe('flagsmith-nodejs 8.1.2 through the gateway', () => {
  it('remote evaluation: environment flags and identity flags with traits', async () => {
    const sdk = new Flagsmith({ environmentKey: CLIENT, apiUrl: `${gw.url}/api/v1/`, retries: 0 })
    onTestFinished(async () => { await sdk.close() })
    const flags = await sdk.getEnvironmentFlags()
    expect(flags.getFeatureValue('banner')).toBe('hello')
    expect(flags.getFeatureValue('max_items')).toBe(10)
    const identity = await sdk.getIdentityFlags('carol', { plan: 'pro', age: 30 })
    expect(identity.getFeatureValue('banner')).toBe('pro banner')
    expect(core.traits(1, 'carol')).toEqual({ plan: 'pro', age: 30 })
    expect(core.requests.some((r) => r.status === 301)).toBe(false)
  })

  it('remote evaluation: a bad key surfaces as Core\'s 403', async () => {
    const sdk = new Flagsmith({ environmentKey: 'not-a-key', apiUrl: `${gw.url}/api/v1/`, retries: 0 })
    onTestFinished(async () => { await sdk.close() })
    const err = await sdk.getEnvironmentFlags().catch((e: Error) => e)
    expect(String((err as Error & { cause?: unknown }).cause)).toMatch(/403/)
  })

  it('local evaluation: the environment document', async () => {
    const sdk = new Flagsmith({ environmentKey: SERVER, apiUrl: `${gw.url}/api/v1/`, enableLocalEvaluation: true, retries: 0 })
    onTestFinished(async () => { await sdk.close() })
    const flags = await sdk.getEnvironmentFlags()
    expect(flags.getFeatureValue('banner')).toBe('hello')
    expect(flags.getFeatureValue('secret_algo')).toBe('v2')
    expect((await sdk.getIdentityFlags('dave', { plan: 'pro' })).getFeatureValue('banner')).toBe('pro banner')
    expect((await sdk.getIdentityFlags(identityOverrideIdentifier(3))).getFeatureValue('banner')).toBe(IDENTITY_OVERRIDE_VALUE)
  })

  it('local evaluation against a paginated (Edge) document: every page comes through', async () => {
    const sdk = new Flagsmith({ environmentKey: SERVER, apiUrl: `${edgeGw.url}/api/v1/`, enableLocalEvaluation: true, retries: 0 })
    onTestFinished(async () => { await sdk.close() })
    // identity-override-3 is only on the second page
    expect((await sdk.getIdentityFlags(identityOverrideIdentifier(3))).getFeatureValue('banner')).toBe(IDENTITY_OVERRIDE_VALUE)
    expect(edge.requests.filter((r) => r.path.startsWith('/api/v1/environment-document')).map((r) => r.query.replace(/:[0-9a-f-]{36}$/, ':<uuid>')))
      .toEqual(['', 'page_id=identity_override:1:<uuid>'])
  })
})
