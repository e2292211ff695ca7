/**
 * The fakes are the ground truth for every gateway test, so they are tested on their own: with real
 * fetch over real sockets, and with the real flagsmith-nodejs SDK to prove they are SDK-faithful.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it, onTestFinished } from 'vitest'
import { createHmac } from 'node:crypto'
import { Flagsmith } from 'flagsmith-nodejs'
import {
  CORE_NEVER_CACHE,
  ENV_DOC_QUERIES,
  FAKE_FLAGSMITH_VERSION,
  IDENTITY_OVERRIDE_VALUE,
  identityOverrideIdentifier,
  pythonJsonDumps,
  signWebhook,
  startFakeCore,
  startFakeEdge,
  webhookBody,
  type FakeCore,
  type FakeEdge
} from './fake-flagsmith.js'

const CLIENT = 'dev_client_key'
const SERVER = 'ser.dev_server_key'

let core: FakeCore
let edge: FakeEdge

beforeAll(async () => {
  core = await startFakeCore()
  edge = await startFakeEdge()
})

afterAll(async () => {
  await core.close()
  await edge.close()
})

beforeEach(() => {
  core.reset()
  edge.reset()
})

async function get (base: string, path: string, headers: Record<string, string> = {}): Promise<Response> {
  return await fetch(`${base}${path}`, { headers, redirect: 'manual' })
}

async function post (base: string, path: string, key: string, body: unknown): Promise<Response> {
  return await fetch(`${base}${path}`, {
    method: 'POST',
    headers: { 'X-Environment-Key': key, 'Content-Type': 'application/json' },
    body: JSON.stringify(body)
  })
}

describe('fake Core', () => {
  it('answers 403 with the DRF body for unknown and missing keys, and for client keys on env-doc', async () => {
    for (const headers of [{ 'X-Environment-Key': 'nope' }, {}] as Array<Record<string, string>>) {
      const res = await get(core.url, '/api/v1/flags/', headers)
      expect(res.status).toBe(403)
      expect(res.headers.get('content-type')).toBe('application/json')
      expect(await res.text()).toBe('{"detail":"Invalid or missing Environment key"}')
    }
    const res = await get(core.url, '/api/v1/environment-document/', { 'X-Environment-Key': CLIENT })
    expect(res.status).toBe(403)
    expect(await res.json()).toEqual({ detail: 'Invalid or missing Environment key' })
    // only the unknown key costs a DB query (valid keys come from Core's locmem cache)
    expect(core.dbStats().queries).toBe(1)
  })

  it('adds Core middleware headers and serves the flag list, hiding server-only features from client keys', async () => {
    const res = await get(core.url, '/api/v1/flags/', { 'X-Environment-Key': CLIENT })
    expect(res.status).toBe(200)
    expect(res.headers.get('cache-control')).toBe(CORE_NEVER_CACHE)
    expect(res.headers.get('pragma')).toBe('no-cache')
    expect(res.headers.get('expires')).toMatch(/GMT$/)
    expect(res.headers.get('flagsmith-version')).toBe(FAKE_FLAGSMITH_VERSION)
    expect(res.headers.get('vary')).toBe('X_ENVIRONMENT_KEY')
    expect(res.headers.get('x-flagsmith-document-updated-at')).toBe('1735689600.25')
    expect(res.headers.get('etag')).toBeNull()
    const flags = await res.json() as Array<{ feature: { name: string }; feature_state_value: unknown; enabled: boolean }>
    expect(flags.map((f) => f.feature.name)).toEqual(['banner', 'max_items', 'dark_mode'])
    expect(flags[0]).toMatchObject({ id: 1001, environment: 1, identity: null, feature_segment: null, enabled: true, feature_state_value: 'hello' })

    const server = await (await get(core.url, '/api/v1/flags/', { 'X-Environment-Key': SERVER })).json() as unknown[]
    expect(server).toHaveLength(4)

    const one = await get(core.url, '/api/v1/flags/?feature=max_items', { 'X-Environment-Key': CLIENT })
    expect(await one.json()).toMatchObject({ feature: { name: 'max_items' }, feature_state_value: 10 })
    const hidden = await get(core.url, '/api/v1/flags/?feature=secret_algo', { 'X-Environment-Key': CLIENT })
    expect(hidden.status).toBe(404)
    expect(await hidden.text()).toBe('{"detail":"Given feature not found"}')
  })

  it('redirects unslashed paths with 301 like APPEND_SLASH, before auth and DB', async () => {
    const res = await get(core.url, '/api/v1/environment-document?x=1', { 'X-Environment-Key': SERVER })
    expect(res.status).toBe(301)
    expect(res.headers.get('location')).toBe('/api/v1/environment-document/?x=1')
    expect(await res.text()).toBe('')
    expect(core.dbStats().queries).toBe(0)
    expect(core.requests.map((r) => [r.path, r.query, r.status])).toEqual([['/api/v1/environment-document', 'x=1', 301]])
    // counts() normalises the path; requests keeps the raw one
    expect(core.counts('/api/v1/environment-document/', SERVER)).toBe(1)
  })

  it('serves the env doc with Last-Modified, answers 304 to If-Modified-Since, and changes after touch()', async () => {
    const headers = { 'X-Environment-Key': SERVER }
    const first = await get(core.url, '/api/v1/environment-document/', headers)
    expect(first.status).toBe(200)
    const lastModified = first.headers.get('last-modified') as string
    expect(lastModified).toBe('Wed, 01 Jan 2025 00:00:00 GMT')
    const doc = await first.json() as Record<string, unknown>
    expect(doc).toMatchObject({ id: 1, api_key: CLIENT, name: 'Development', updated_at: '2025-01-01T00:00:00.250000+00:00' })
    expect((doc.identity_overrides as unknown[]).length).toBe(3)
    expect(core.dbStats().queries).toBe(11)

    const notModified = await get(core.url, '/api/v1/environment-document/', { ...headers, 'If-Modified-Since': lastModified })
    expect(notModified.status).toBe(304)
    expect(await notModified.text()).toBe('')
    expect(notModified.headers.get('last-modified')).toBe(lastModified)
    expect(core.dbStats().queries).toBe(12)

    core.touch(1)
    const changed = await get(core.url, '/api/v1/environment-document/', { ...headers, 'If-Modified-Since': lastModified })
    expect(changed.status).toBe(200)
    expect(Date.parse(changed.headers.get('last-modified') as string)).toBeGreaterThan(Date.parse(lastModified))
  })

  it('remembers identity traits; GET without identifier gives 200 "Missing identifier"', async () => {
    const missing = await get(core.url, '/api/v1/identities/', { 'X-Environment-Key': CLIENT })
    expect(missing.status).toBe(200)
    expect(await missing.json()).toEqual({ detail: 'Missing identifier' })

    const created = await post(core.url, '/api/v1/identities/', CLIENT, { identifier: 'alice', traits: [{ trait_key: 'plan', trait_value: 'pro' }] })
    const body = await created.json() as { identifier: string; flags: Array<{ feature: { name: string }; feature_state_value: unknown }>; traits: unknown[] }
    expect(body.identifier).toBe('alice')
    expect(body.traits).toEqual([{ trait_key: 'plan', trait_value: 'pro' }])
    expect(body.flags.find((f) => f.feature.name === 'banner')?.feature_state_value).toBe('pro banner')

    const again = await get(core.url, '/api/v1/identities/?identifier=alice', { 'X-Environment-Key': CLIENT })
    expect(again.headers.get('vary')).toBe('X_ENVIRONMENT_KEY')
    expect((await again.json() as { traits: unknown[] }).traits).toEqual([{ trait_key: 'plan', trait_value: 'pro' }])
    expect(core.traits(1, 'alice')).toEqual({ plan: 'pro' })

    await post(core.url, '/api/v1/identities/', CLIENT, { identifier: 'alice', traits: [{ trait_key: 'plan', trait_value: null }] })
    expect(core.traits(1, 'alice')).toEqual({})
  })

  it('answers traits 200, analytics v1 200 empty and v2 204', async () => {
    const trait = await post(core.url, '/api/v1/traits/', CLIENT, { identity: { identifier: 'bob' }, trait_key: 'age', trait_value: 42 })
    expect(trait.status).toBe(200)
    expect(await trait.json()).toEqual({ identity: { identifier: 'bob' }, trait_key: 'age', trait_value: 42 })
    expect(core.traits(1, 'bob')).toEqual({ age: 42 })

    const v1 = await post(core.url, '/api/v1/analytics/flags/', CLIENT, { banner: 3 })
    expect(v1.status).toBe(200)
    expect(v1.headers.get('content-type')).toBeNull()
    expect(await v1.text()).toBe('')
    const v2 = await post(core.url, '/api/v2/analytics/flags/', CLIENT, { evaluations: [] })
    expect(v2.status).toBe(204)
  })

  it('serves liveness without the DB and readiness through it', async () => {
    const slow = await startFakeCore({ db: { failRate: 1 } })
    onTestFinished(slow.close)
    expect(await (await get(slow.url, '/health/liveness/')).json()).toEqual({ status: 'ok' })
    const ready = await get(slow.url, '/health/readiness/')
    expect(ready.status).toBe(500)
    expect(await ready.text()).toBe('{"detail":"database error"}')
  })

  it('echoes requests, with the status taken from x-echo-status', async () => {
    const res = await fetch(`${core.url}/echo/a/b?q=1`, { method: 'PUT', headers: { 'x-custom': 'v' }, body: 'hi' })
    expect(res.status).toBe(200)
    expect(res.headers.get('link')).toBe('</echo/next?page=2>; rel="next"')
    expect(res.headers.get('x-upstream-test')).toBe('1')
    const echoed = await res.json() as { method: string; url: string; headers: Record<string, string>; bodyBase64: string }
    expect(echoed).toMatchObject({ method: 'PUT', url: '/echo/a/b?q=1', bodyBase64: Buffer.from('hi').toString('base64') })
    expect(echoed.headers['x-custom']).toBe('v')

    expect((await fetch(`${core.url}/echo/x`, { headers: { 'x-echo-status': '418' } })).status).toBe(418)
    const empty = await fetch(`${core.url}/echo/x`, { headers: { 'x-echo-status': '204' } })
    expect(empty.status).toBe(204)
    expect(await empty.text()).toBe('')
    const redirect = await fetch(`${core.url}/echo/x`, { headers: { 'x-echo-status': '302', 'x-echo-location': '/elsewhere' }, redirect: 'manual' })
    expect(redirect.status).toBe(302)
    expect(redirect.headers.get('location')).toBe('/elsewhere')
  })

  it('counts requests by normalised path and key, in a request log', async () => {
    await get(core.url, '/api/v1/flags/?a=1', { 'X-Environment-Key': CLIENT })
    await get(core.url, '/api/v1/flags/', { 'X-Environment-Key': SERVER })
    await get(core.url, '/api/v1/flags/')
    expect(core.counts()).toBe(3)
    expect(core.counts('/api/v1/flags')).toBe(3)
    expect(core.counts('/api/v1/flags/', CLIENT)).toBe(1)
    expect(core.counts('/api/v1/flags/', '')).toBe(1)
    expect(core.counts(undefined, SERVER)).toBe(1)
    expect(core.requests.map((r) => r.status)).toEqual([200, 200, 403])
    core.reset()
    expect(core.counts()).toBe(0)
    expect(core.requests).toHaveLength(0)
  })
})

describe('fake database', () => {
  it('queues queries FIFO behind a pool of 1: 4 concurrent env docs take 44 query slots in turn', async () => {
    const slow = await startFakeCore({ db: { poolSize: 1, queryLatencyMs: 50 } })
    onTestFinished(slow.close)
    const started = Date.now()
    const finished: number[] = []
    const responses = await Promise.all([0, 1, 2, 3].map(async () => {
      const res = await get(slow.url, '/api/v1/environment-document/', { 'X-Environment-Key': SERVER })
      finished.push(Date.now() - started)
      await res.arrayBuffer()
      return res.status
    }))
    const elapsed = Date.now() - started
    expect(responses).toEqual([200, 200, 200, 200])
    expect(slow.maxInFlightSeen()).toBe(4)
    expect(slow.dbStats()).toMatchObject({ queries: 44, maxActiveSeen: 1, maxQueuedSeen: 3, active: 0, queued: 0 })
    // Loose lower bounds only (timers never fire much early; they can fire late on a busy CI box).
    expect(elapsed).toBeGreaterThanOrEqual(0.9 * 44 * 50)
    // Queries interleave, so even the first request to finish waited behind everyone's queries.
    expect(Math.min(...finished)).toBeGreaterThanOrEqual(0.9 * 41 * 50)
  })

  it('keeps working on a request whose client gave up, as a real database does, and counts it as busy', async () => {
    const waitFor = async (ok: () => boolean): Promise<void> => {
      for (const deadline = Date.now() + 10_000; !ok(); await new Promise((resolve) => setTimeout(resolve, 10))) {
        if (Date.now() > deadline) throw new Error('condition not met within 10 s')
      }
    }
    const slow = await startFakeCore({ db: { poolSize: 1, queryLatencyMs: 30 } })
    onTestFinished(slow.close)
    const client = new AbortController()
    const gaveUp = fetch(`${slow.url}/api/v1/environment-document/`, { headers: { 'X-Environment-Key': SERVER }, signal: client.signal })
    await waitFor(() => slow.dbStats().queries >= 1)
    client.abort()
    await expect(gaveUp).rejects.toThrow()
    // the client is gone (its socket closed) but the request's 11 queries keep their turn in the pool
    await waitFor(() => slow.inFlight() === 0)
    expect(slow.busy()).toBe(1)
    await waitFor(() => slow.busy() === 0)
    expect(slow.dbStats().queries).toBe(ENV_DOC_QUERIES)
    expect(slow.maxBusySeen()).toBe(1)
  })

  it('fails with 500 at failRate 1, destroys sockets when down, and hangs (still closing) when hang', async () => {
    const fake = await startFakeCore({ db: { failRate: 1 } })
    onTestFinished(fake.close)
    const failed = await get(fake.url, '/api/v1/flags/', { 'X-Environment-Key': CLIENT })
    expect(failed.status).toBe(500)
    expect(await failed.text()).toBe('{"detail":"database error"}')

    fake.db.failRate = 0
    fake.db.down = true
    await expect(get(fake.url, '/api/v1/flags/', { 'X-Environment-Key': CLIENT })).rejects.toThrow()

    fake.db.down = false
    fake.db.hang = true
    const hung = fetch(`${fake.url}/api/v1/flags/`, { headers: { 'X-Environment-Key': CLIENT }, signal: AbortSignal.timeout(200) })
    await expect(hung).rejects.toThrow()
    const pending = fetch(`${fake.url}/api/v1/flags/`, { headers: { 'X-Environment-Key': CLIENT } }).catch((err: unknown) => err)
    await new Promise((resolve) => setTimeout(resolve, 50))
    expect(fake.inFlight()).toBe(1)
    const closing = Date.now()
    await fake.close()
    expect(Date.now() - closing).toBeLessThan(1000)
    expect(await pending).toBeInstanceOf(Error)
    expect(fake.counts('/api/v1/flags/')).toBe(4)
  })

  it('trickles bodies when bodyChunkDelayMs is set', async () => {
    const fake = await startFakeCore({ db: { bodyChunkDelayMs: 500 } })
    onTestFinished(fake.close)
    const started = Date.now()
    const res = await get(fake.url, '/api/v1/flags/', { 'X-Environment-Key': CLIENT })
    const headersAfter = Date.now() - started
    await res.json()
    const bodyAfter = Date.now() - started
    expect(bodyAfter).toBeGreaterThanOrEqual(450)
    // generous margin: the point is only that headers arrive well before the body
    expect(headersAfter).toBeLessThanOrEqual(bodyAfter - 250)
  })
})

describe('fake Edge', () => {
  it('serves slim flags and 403 for unknown keys', async () => {
    const res = await get(edge.url, '/api/v1/flags/', { 'X-Environment-Key': CLIENT })
    expect(res.headers.get('cache-control')).toBeNull()
    const flags = await res.json() as unknown[]
    expect(flags[0]).toEqual({ feature: { id: 1, name: 'banner', type: 'STANDARD' }, enabled: true, feature_state_value: 'hello' })
    const bad = await get(edge.url, '/api/v1/flags/', { 'X-Environment-Key': 'nope' })
    expect(bad.status).toBe(403)
  })

  it('paginates the env doc with a Link header and accepts the page_id with raw colons', async () => {
    const headers = { 'X-Environment-Key': SERVER }
    const first = await get(edge.url, '/api/v1/environment-document/', headers)
    const link = first.headers.get('link') as string
    expect(link).toMatch(/^<\/api\/v1\/environment-document\/\?page_id=identity_override%3A1%3A[0-9a-f-]{36}>; rel="next"$/)
    const page1 = await first.json() as { identity_overrides: Array<{ identifier: string }> }
    expect(page1.identity_overrides.map((o) => o.identifier)).toEqual(['identity-override-1', 'identity-override-2'])

    const next = decodeURIComponent((/<([^>]+)>/.exec(link) as RegExpExecArray)[1] as string)
    expect(next).toContain('page_id=identity_override:1:')
    const second = await get(edge.url, next, headers)
    expect(second.headers.get('link')).toBeNull()
    const page2 = await second.json() as { identity_overrides: Array<{ identifier: string }> }
    expect(page2.identity_overrides.map((o) => o.identifier)).toEqual(['identity-override-3'])
    expect(edge.requests[1]?.query).toMatch(/^page_id=identity_override:1:/)
  })

  // issue 9: the gateway's edge routing is tested against these properties of the Edge API
  it('answers identities in Edge\'s slim shape (no flag.environment, no feature description) and keeps its own identities', async () => {
    const res = await post(edge.url, '/api/v1/identities/', CLIENT, { identifier: 'erin', traits: [{ trait_key: 'plan', trait_value: 'pro' }] })
    expect(res.status).toBe(200)
    const body = await res.json() as { flags: Array<Record<string, unknown> & { feature: Record<string, unknown> }> }
    for (const flag of body.flags) {
      expect(Object.keys(flag).sort()).toEqual(['enabled', 'feature', 'feature_state_value'])
      expect(Object.keys(flag.feature).sort()).toEqual(['id', 'name', 'type'])
    }
    // the write landed in Edge's store only (DynamoDB is apart from Core's PostgreSQL)
    expect(edge.traits(1, 'erin')).toEqual({ plan: 'pro' })
    expect(core.traits(1, 'erin')).toBeUndefined()
    const coreFlag = (await (await get(core.url, '/api/v1/flags/', { 'X-Environment-Key': CLIENT })).json() as Array<Record<string, unknown>>)[0]!
    expect(coreFlag).toHaveProperty('environment', 1)
    expect(coreFlag.feature).toHaveProperty('description', null)
  })

  it('has no Core-only routes: traits/ and flags/<id>/multivariate-options/ are 404 on Edge', async () => {
    const trait = { identity: { identifier: 'bob' }, trait_key: 'age', trait_value: 42 }
    expect((await post(edge.url, '/api/v1/traits/', CLIENT, trait)).status).toBe(404)
    expect((await get(edge.url, '/api/v1/flags/1/multivariate-options/', { 'X-Environment-Key': CLIENT })).status).toBe(404)
    expect((await get(edge.url, '/api/v1/projects/', { 'X-Environment-Key': CLIENT })).status).toBe(404)
    expect(edge.traits(1, 'bob')).toBeUndefined()
    expect((await post(core.url, '/api/v1/traits/', CLIENT, trait)).status).toBe(200)
  })

  it('fails (down, 5xx, slow) independently of Core, and counts requests per path', async () => {
    const key = { 'X-Environment-Key': CLIENT }
    const edgeDown = await startFakeEdge({ db: { down: true } })
    const edge500 = await startFakeEdge({ db: { failRate: 1 } })
    const edgeSlow = await startFakeEdge({ db: { queryLatencyMs: 300 } })
    onTestFinished(async () => { await edgeDown.close(); await edge500.close(); await edgeSlow.close() })
    await expect(get(edgeDown.url, '/api/v1/flags/', key)).rejects.toThrow()
    const failed = await get(edge500.url, '/api/v1/flags/', key)
    expect(failed.status).toBe(500)
    expect(await failed.json()).toEqual({ detail: 'database error' })
    const started = Date.now()
    expect((await get(edgeSlow.url, '/api/v1/flags/', key)).status).toBe(200)
    expect(Date.now() - started).toBeGreaterThanOrEqual(250)
    // Core is unaffected by any of them
    expect((await get(core.url, '/api/v1/flags/', key)).status).toBe(200)

    await get(edge.url, '/api/v1/flags/', key)
    await get(edge.url, '/api/v1/flags?feature=banner', key)
    await post(edge.url, '/api/v1/identities/', CLIENT, { identifier: 'x' })
    expect(edge.counts('/api/v1/flags/')).toBe(2)
    expect(edge.counts('/api/v1/flags/', CLIENT)).toBe(2)
    expect(edge.counts('/api/v1/identities/')).toBe(1)
    expect(edgeDown.counts('/api/v1/flags/')).toBe(1)
    expect(core.counts('/api/v1/flags/')).toBe(1)
  })
})

describe('webhooks', () => {
  it('serialises like Python json.dumps(sort_keys=True) and signs with hex HMAC-SHA256', () => {
    expect(pythonJsonDumps({ b: 1, a: [1, 'é', null, true, { d: {}, c: [] }] })).toBe('{"a": [1, "\\u00e9", null, true, {"c": [], "d": {}}], "b": 1}')
    const body = webhookBody(1, 'banner', { changedBy: 'ops@example.com', timestamp: new Date('2025-02-03T04:05:06.789Z') })
    expect(body.startsWith('{"data": {"changed_by": "ops@example.com", "new_state": {"enabled": true, "environment": {"id": 1, "name": "Development"}, ')).toBe(true)
    expect(body).toContain('"timestamp": "2025-02-03T04:05:06.789000Z"}, "event_type": "FLAG_UPDATED"}')
    expect(JSON.parse(body)).toMatchObject({ data: { new_state: { feature: { id: 1, name: 'banner' }, feature_state_value: 'hello' } } })
    expect(signWebhook('key', 'The quick brown fox jumps over the lazy dog')).toBe('f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8')
    expect(signWebhook('s3cret', body)).toBe(createHmac('sha256', 's3cret').update(body).digest('hex'))
  })
})

describe('flagsmith-nodejs 8.1.2 against the fakes', () => {
  it('works in remote mode against Core (flags, identity with traits via POST)', async () => {
    const sdk = new Flagsmith({ environmentKey: CLIENT, apiUrl: `${core.url}/api/v1/`, retries: 0 })
    onTestFinished(async () => { await sdk.close() })
    const flags = await sdk.getEnvironmentFlags()
    expect(flags.getFeatureValue('banner')).toBe('hello')
    expect(flags.getFeatureValue('max_items')).toBe(10)
    expect(flags.getFlag('secret_algo').isDefault).toBe(true)

    const identity = await sdk.getIdentityFlags('carol', { plan: 'pro', age: 30 })
    expect(identity.getFeatureValue('banner')).toBe('pro banner')
    expect(core.traits(1, 'carol')).toEqual({ plan: 'pro', age: 30 })
    const override = await sdk.getIdentityFlags(identityOverrideIdentifier(2))
    expect(override.getFeatureValue('banner')).toBe(IDENTITY_OVERRIDE_VALUE)

    const identityCall = core.requests.find((r) => r.path === '/api/v1/identities/')
    expect(identityCall?.method).toBe('POST')
    expect(identityCall?.headers['x-environment-key']).toBe(CLIENT)
    expect(core.requests.every((r) => r.status === 200)).toBe(true)
  })

  it('works in local evaluation mode against Core (one env-doc fetch, same answers as remote)', async () => {
    const sdk = new Flagsmith({ environmentKey: SERVER, apiUrl: `${core.url}/api/v1/`, enableLocalEvaluation: true, retries: 0 })
    onTestFinished(async () => { await sdk.close() })
    const flags = await sdk.getEnvironmentFlags()
    expect(flags.getFeatureValue('banner')).toBe('hello')
    expect(flags.getFeatureValue('secret_algo')).toBe('v2')
    expect(flags.isFeatureEnabled('dark_mode')).toBe(false)
    expect((await sdk.getIdentityFlags('dave', { plan: 'pro' })).getFeatureValue('banner')).toBe('pro banner')
    expect((await sdk.getIdentityFlags('erin', { plan: 'free' })).getFeatureValue('banner')).toBe('hello')
    expect((await sdk.getIdentityFlags(identityOverrideIdentifier(3))).getFeatureValue('banner')).toBe(IDENTITY_OVERRIDE_VALUE)
    expect(core.counts('/api/v1/environment-document/', SERVER)).toBe(1)
    expect(core.counts()).toBe(1)
  })

  it('follows Edge env-doc pagination in local evaluation mode', async () => {
    const sdk = new Flagsmith({ environmentKey: SERVER, apiUrl: `${edge.url}/api/v1/`, enableLocalEvaluation: true, retries: 0 })
    onTestFinished(async () => { await sdk.close() })
    // identity-override-3 only arrives on the second page
    expect((await sdk.getIdentityFlags(identityOverrideIdentifier(3))).getFeatureValue('banner')).toBe(IDENTITY_OVERRIDE_VALUE)
    expect(edge.counts('/api/v1/environment-document/', SERVER)).toBe(2)
    expect(edge.requests.map((r) => r.query.replace(/:[0-9a-f-]{36}$/, ':<uuid>'))).toEqual(['', 'page_id=identity_override:1:<uuid>'])
  })
})
