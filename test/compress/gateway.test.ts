/**
 * Compressed answers and cached flag lists through a real gateway in front of the fake Core, over
 * real sockets: negotiation, representations and their validators, Core's own gzip, a broken
 * Core, the byte bound, and the Node SDK in both modes.
 */
import { describe, expect, it, onTestFinished } from 'vitest'
import zlib from 'node:zlib'
import { Flagsmith } from 'flagsmith-nodejs'
import pino from 'pino'
import { startFakeCore, signWebhook, webhookBody, type FakeCore } from '../support/fake-flagsmith.js'
import { policyYaml, startTestGateway, type TestGateway } from '../support/gateway.js'
import { raw, json, type RawResponse } from '../support/http.js'
import { loadPolicy, formatPolicyError } from '../../src/policy/load.js'

const ENV_DOC = '/api/v1/environment-document/'
const FLAGS = '/api/v1/flags/'
const SERVER = 'ser.dev_server_key'
const CLIENT = 'dev_client_key'
const SECRET = 'webhook-secret-for-tests'

function routes (o: { docRule?: string; flagsCache?: boolean; ttl?: string } = {}): string {
  return `  - name: environment-document
    match: { methods: [GET], path: ${ENV_DOC} }
    upstream: core
    cache: { ttl: ${o.ttl ?? '30s'}, staleWhileRevalidate: 0s, staleIfError: 10m${o.docRule ?? ''} }
  - name: flags
    match: { methods: [GET], path: ${FLAGS} }
    upstream: core
${o.flagsCache === false ? '' : '    cache: { ttl: 30s, staleWhileRevalidate: 30s, staleIfError: 10m }\n'}    compress: { minSize: 200b }
  - name: identities
    match: { methods: [GET, POST], path: /api/v1/identities/ }
    upstream: core
    compress: { minSize: 200b }
  - name: default
    match: { pathPrefix: / }
    upstream: core`
}

async function start (o: { docRule?: string; flagsCache?: boolean; maxSize?: string; overrides?: number; coreGzip?: boolean; ttl?: string } = {}): Promise<{ core: FakeCore; gw: TestGateway }> {
  const core = await startFakeCore()
  onTestFinished(core.close)
  core.envs[0]!.identityOverrides = o.overrides ?? 200 // ~120 KB
  core.db.gzip = o.coreGzip === true
  const gw = await startTestGateway(policyYaml({
    coreUrl: core.url,
    routes: routes(o),
    extra: `webhooks:\n  flagsmith:\n    path: /webhooks/flagsmith\n    secret: ${SECRET}\n${o.maxSize === undefined ? '' : `cache:\n  maxSize: ${o.maxSize}\n`}`
  }), { watch: false })
  onTestFinished(gw.close)
  return { core, gw }
}

async function get (gw: { url: string }, path: string, key: string, headers: Record<string, string> = {}): Promise<RawResponse> {
  return await raw(gw.url, path, { headers: { 'x-environment-key': key, ...headers } })
}

function decoded (r: RawResponse): Buffer {
  const ce = r.headers['content-encoding']
  if (ce === 'br') return zlib.brotliDecompressSync(r.body)
  if (ce === 'gzip') return zlib.gunzipSync(r.body)
  expect(ce).toBeUndefined()
  return r.body
}

/** What Core itself answers (identity), byte for byte. */
async function fromCore (core: FakeCore, path: string, key: string): Promise<Buffer> {
  core.db.gzip = false
  const r = await raw(core.url, path, { headers: { 'x-environment-key': key } })
  return r.body
}

/** Asks until the answer comes compressed (the forms are made after the entry is stored). */
async function untilCompressed (gw: { url: string }, path: string, key: string, ae: string): Promise<RawResponse> {
  for (let i = 0; i < 500; i++) {
    const r = await get(gw, path, key, { 'accept-encoding': ae })
    if (r.headers['content-encoding'] !== undefined) return r
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
  throw new Error('never compressed')
}

describe('cached documents from memory, compressed', () => {
  it('identity, br and gzip: the same bytes decoded, each with its own ETag, Vary on all', async () => {
    const { core, gw } = await start()
    const first = await get(gw, ENV_DOC, SERVER, { 'accept-encoding': 'gzip, br' })
    expect(first.status).toBe(200)
    // until the forms are made, identity is served
    expect(first.headers['content-encoding']).toBeUndefined()
    const br = await untilCompressed(gw, ENV_DOC, SERVER, 'gzip, deflate, br')
    const gz = await get(gw, ENV_DOC, SERVER, { 'accept-encoding': 'gzip, deflate' })
    const id = await get(gw, ENV_DOC, SERVER)
    // the forms are made once per entry: Core saw one request
    expect(core.counts(ENV_DOC, SERVER)).toBe(1)
    const truth = await fromCore(core, ENV_DOC, SERVER)
    expect(br.headers['content-encoding']).toBe('br')
    expect(gz.headers['content-encoding']).toBe('gzip')
    for (const r of [br, gz, id, first]) {
      expect(decoded(r).equals(truth)).toBe(true)
      expect(String(r.headers.vary)).toMatch(/Accept-Encoding/)
      expect(r.headers['x-cache-status']).toMatch(/HIT|MISS/)
      expect(Number(r.headers['content-length'])).toBe(r.body.length)
    }
    const tags = new Set([br.headers.etag, gz.headers.etag, id.headers.etag])
    expect(tags.size).toBe(3)
    for (const t of tags) expect(t).toMatch(/^"[^"]+"$/)
    expect(br.body.length * 5).toBeLessThan(truth.length)
  })

  it('negotiation: q values, q=0, identity, identity;q=0 and *', async () => {
    const { gw } = await start()
    await untilCompressed(gw, ENV_DOC, SERVER, 'br')
    const enc = async (ae: string): Promise<string | undefined> => (await get(gw, ENV_DOC, SERVER, { 'accept-encoding': ae })).headers['content-encoding']
    expect(await enc('br;q=0.5, gzip')).toBe('gzip')
    expect(await enc('br;q=0, gzip')).toBe('gzip')
    expect(await enc('gzip;q=0, br;q=0')).toBeUndefined()
    expect(await enc('identity')).toBeUndefined()
    expect(await enc('identity;q=0, gzip')).toBe('gzip')
    expect(await enc('*')).toBe('br')
    expect(await enc('*;q=0')).toBeUndefined()
    expect(await enc('zstd')).toBeUndefined()
  })

  it('304 per representation: a br ETag is current only for a br answer', async () => {
    const { gw } = await start()
    const br = await untilCompressed(gw, ENV_DOC, SERVER, 'br')
    const gz = await get(gw, ENV_DOC, SERVER, { 'accept-encoding': 'gzip' })
    const id = await get(gw, ENV_DOC, SERVER)
    const cond = async (etag: string, ae?: string): Promise<RawResponse> => await get(gw, ENV_DOC, SERVER, { 'if-none-match': etag, ...(ae === undefined ? {} : { 'accept-encoding': ae }) })
    const brAgain = await cond(br.headers.etag!, 'br')
    expect(brAgain.status).toBe(304)
    expect(brAgain.headers.etag).toBe(br.headers.etag)
    expect(brAgain.body.length).toBe(0)
    const gzWithBrTag = await cond(br.headers.etag!, 'gzip')
    expect(gzWithBrTag.status).toBe(200)
    expect(gzWithBrTag.headers['content-encoding']).toBe('gzip')
    expect((await cond(br.headers.etag!)).status).toBe(200)
    expect((await cond(gz.headers.etag!, 'gzip')).status).toBe(304)
    expect((await cond(id.headers.etag!)).status).toBe(304)
    expect((await cond(id.headers.etag!, 'br')).status).toBe(200)
    expect((await cond(`"nope", ${gz.headers.etag!}`, 'gzip')).status).toBe(304)
    // If-Modified-Since holds for every representation
    expect((await get(gw, ENV_DOC, SERVER, { 'if-modified-since': br.headers['last-modified']!, 'accept-encoding': 'br' })).status).toBe(304)
  })

  it('a change is served whole: after a purge, every representation is the new version', async () => {
    const { core, gw } = await start()
    const before = await untilCompressed(gw, ENV_DOC, SERVER, 'br')
    core.envs[0]!.features[0]!.value = 'changed'
    core.touch(1)
    const body = webhookBody(1, 'banner')
    const purge = await raw(gw.url, '/webhooks/flagsmith', { method: 'POST', headers: { 'content-type': 'application/json', 'x-flagsmith-signature': signWebhook(SECRET, body) }, body })
    expect(purge.status).toBe(200)
    const truth = await fromCore(core, ENV_DOC, SERVER)
    for (const ae of ['br', 'gzip', 'identity', 'br', 'gzip']) {
      const r = await get(gw, ENV_DOC, SERVER, { 'accept-encoding': ae })
      expect(decoded(r).equals(truth)).toBe(true)
      expect(r.headers.etag).not.toBe(before.headers.etag)
    }
    const after = await untilCompressed(gw, ENV_DOC, SERVER, 'br')
    expect(decoded(after).equals(truth)).toBe(true)
  })

  it('small answers are never compressed', async () => {
    const { gw } = await start({ overrides: 0 })
    for (let i = 0; i < 5; i++) {
      const r = await get(gw, FLAGS, CLIENT, { 'accept-encoding': 'br' })
      expect(r.status).toBe(200)
      expect(r.body.length).toBeLessThan(1024)
      expect(r.headers['content-encoding']).toBeUndefined()
    }
  })
})

describe('Core compresses too', () => {
  it('the fill asks for gzip, br; the gzipped document is decoded, stored and served in every coding', async () => {
    const { core, gw } = await start({ coreGzip: true })
    const first = await get(gw, ENV_DOC, SERVER)
    expect(first.status).toBe(200)
    expect(first.headers['content-encoding']).toBeUndefined()
    const fill = core.requests.find((r) => r.path === ENV_DOC)!
    expect(fill.headers['accept-encoding']).toBe('gzip, br')
    const br = await untilCompressed(gw, ENV_DOC, SERVER, 'br')
    const truth = await fromCore(core, ENV_DOC, SERVER)
    expect(first.body.equals(truth)).toBe(true)
    expect(decoded(br).equals(truth)).toBe(true)
  })

  it('maxEntrySize counts decoded bytes: a document larger decoded passes through uncached, still correct', async () => {
    const { core, gw } = await start({ coreGzip: true, docRule: ', maxEntrySize: 50kb' })
    const truth = await fromCore(core, ENV_DOC, SERVER)
    core.db.gzip = true
    expect(truth.length).toBeGreaterThan(50 * 1024)
    for (const ae of ['identity', 'gzip']) {
      const r = await get(gw, ENV_DOC, SERVER, { 'accept-encoding': ae })
      expect(r.status).toBe(200)
      expect(r.headers['x-cache-status']).toBe('BYPASS')
      expect(decoded(r).equals(truth)).toBe(true)
    }
  })

  it('a body that does not decode is a 502, or the stale copy; never a 500', async () => {
    const { core, gw } = await start({ coreGzip: true })
    core.db.corruptGzip = true
    const bad = await get(gw, ENV_DOC, SERVER)
    expect(bad.status).toBe(502)
    expect(json(bad)).toMatchObject({ statusCode: 502, code: 'FLAGGATE_UPSTREAM_UNREACHABLE' })
  })

  it('… and with a good copy held, the stale copy (staleIfError)', async () => {
    const { core, gw } = await start({ coreGzip: true, ttl: '1s' })
    const good = await get(gw, ENV_DOC, SERVER)
    expect(good.status).toBe(200)
    core.db.corruptGzip = true
    // a change, so that Core answers the revalidation with a (broken) body rather than 304
    core.envs[0]!.features[0]!.value = 'changed'
    core.touch(1)
    // past the ttl (no staleWhileRevalidate): the refresh fails to decode, the stale copy answers
    await new Promise((resolve) => setTimeout(resolve, 1100))
    const stale = await get(gw, ENV_DOC, SERVER)
    expect(stale.status).toBe(200)
    expect(stale.headers['x-cache-status']).toBe('STALE')
    expect(stale.body.equals(good.body)).toBe(true)
    expect(core.requests.filter((r) => r.path === ENV_DOC).length).toBe(2)
  })
})

describe('the byte bound counts every representation', () => {
  it('cache bytes grow by the forms once they are made', async () => {
    const { gw } = await start()
    await get(gw, ENV_DOC, SERVER, { 'accept-encoding': 'identity' })
    const stats = async (): Promise<{ bytes: number; entries: number }> => (json(await raw(gw.adminUrl, '/admin/status')) as { cache: { bytes: number; entries: number } }).cache
    const identityOnly = await stats()
    const br = await untilCompressed(gw, ENV_DOC, SERVER, 'br')
    const gz = await get(gw, ENV_DOC, SERVER, { 'accept-encoding': 'gzip' })
    const withForms = await stats()
    expect(withForms.entries).toBe(1)
    expect(withForms.bytes - identityOnly.bytes).toBeGreaterThanOrEqual(br.body.length + gz.body.length)
    expect(withForms.bytes - identityOnly.bytes).toBeLessThan(br.body.length + gz.body.length + 200)
  })

  it('forms that would not fit are not kept: identity is served', async () => {
    // the document (~120 KB) fits, the forms (~25 KB more) do not
    const { gw } = await start({ maxSize: '125kb' })
    const r = await get(gw, ENV_DOC, SERVER, { 'accept-encoding': 'br' })
    expect(r.status).toBe(200)
    expect(r.body.length).toBeGreaterThan(110 * 1024)
    await new Promise((resolve) => setTimeout(resolve, 300))
    for (let i = 0; i < 3; i++) {
      const again = await get(gw, ENV_DOC, SERVER, { 'accept-encoding': 'br' })
      expect(again.headers['x-cache-status']).toBe('HIT')
      expect(again.headers['content-encoding']).toBeUndefined()
    }
    const status = json(await raw(gw.adminUrl, '/admin/status')) as { cache: { bytes: number; maxSize: number } }
    expect(status.cache.bytes).toBeLessThanOrEqual(status.cache.maxSize)
  })
})

describe('cached flag lists', () => {
  it('keyed on the key and feature only; one Core request for many polls', async () => {
    const { core, gw } = await start()
    for (let i = 0; i < 20; i++) expect((await get(gw, FLAGS, CLIENT)).status).toBe(200)
    expect((await get(gw, `${FLAGS}?cb=${Date.now()}`, CLIENT)).headers['x-cache-status']).toBe('HIT')
    expect(core.counts(FLAGS, CLIENT)).toBe(1)
    const one = await get(gw, `${FLAGS}?feature=banner`, CLIENT)
    expect(one.headers['x-cache-status']).toBe('MISS')
    expect(json(one)).toMatchObject({ feature: { name: 'banner' } })
    expect(Array.isArray(json(await get(gw, FLAGS, CLIENT)))).toBe(true)
    expect((await get(gw, `${FLAGS}?x=1&feature=banner`, CLIENT)).headers['x-cache-status']).toBe('HIT')
    expect(core.requests.filter((r) => r.path === FLAGS).map((r) => r.query)).toEqual(['', 'feature=banner'])
    // another key never gets this key's list
    const prod = await get(gw, FLAGS, 'prod_client_key')
    expect(prod.headers['x-cache-status']).toBe('MISS')
    expect(JSON.stringify(json(prod))).toContain('welcome')
  })

  it('a Flagsmith webhook for the environment purges its flag lists', async () => {
    const { core, gw } = await start()
    await get(gw, FLAGS, CLIENT)
    await get(gw, `${FLAGS}?feature=banner`, CLIENT)
    core.envs[0]!.features[0]!.value = 'changed'
    core.touch(1)
    const body = webhookBody(1, 'banner')
    const purge = await raw(gw.url, '/webhooks/flagsmith', { method: 'POST', headers: { 'content-type': 'application/json', 'x-flagsmith-signature': signWebhook(SECRET, body) }, body })
    expect(json(purge)).toMatchObject({ purged: 2 })
    expect(JSON.stringify(json(await get(gw, FLAGS, CLIENT)))).toContain('changed')
    expect(JSON.stringify(json(await get(gw, `${FLAGS}?feature=banner`, CLIENT)))).toContain('changed')
  })

  it('validation refuses a cache rule on identities/, naming file, line and column', () => {
    const yaml = `upstreams:
  core: { url: "http://127.0.0.1:9" }
routes:
  - name: identities
    match: { methods: [GET], path: /api/v1/identities/ }
    upstream: core
    cache: { ttl: 5s }
  - name: traits
    match: { pathPrefix: /api/v1/identities/ }
    upstream: core
    cache: { ttl: 5s }
`
    const r = loadPolicy('p.yaml', yaml, {})
    expect(r.ok).toBe(false)
    if (r.ok) return
    const errors = r.errors.map(formatPolicyError)
    expect(errors[0]).toMatch(/^p\.yaml:7:\d+: routes\[0\]\.cache: identities\/ cannot be cached/)
    expect(errors[1]).toMatch(/^p\.yaml:11:\d+: routes\[1\]\.cache: identities\/ cannot be cached/)
  })
})

describe('proxied answers compressed on the fly', () => {
  it('compressed when the route asks and the client accepts; never re-encoded when Core already did', async () => {
    const { core, gw } = await start({ flagsCache: false })
    const truth = await fromCore(core, FLAGS, CLIENT)
    expect(truth.length).toBeGreaterThan(200)
    const br = await get(gw, FLAGS, CLIENT, { 'accept-encoding': 'br' })
    expect(br.headers['content-encoding']).toBe('br')
    expect(String(br.headers.vary)).toMatch(/Accept-Encoding/)
    expect(decoded(br).equals(truth)).toBe(true)
    const plain = await get(gw, FLAGS, CLIENT)
    expect(plain.headers['content-encoding']).toBeUndefined()
    expect(plain.body.equals(truth)).toBe(true)
    // Core gzips (its GZipMiddleware): passed through as Core sent it
    core.db.gzip = true
    const viaCore = await get(gw, FLAGS, CLIENT, { 'accept-encoding': 'gzip, br' })
    expect(viaCore.headers['content-encoding']).toBe('gzip')
    expect(zlib.gunzipSync(viaCore.body).equals(truth)).toBe(true)
  })
})

describe('flagsmith-nodejs 8.1.2 gets the same flags, with and without compression', () => {
  for (const coreGzip of [false, true]) {
    it(`local evaluation and remote flags (Core gzip ${coreGzip ? 'on' : 'off'})`, async () => {
      const { core, gw } = await start({ coreGzip })
      // enough features for the flag list to pass the 1 KB below which nothing is compressed
      for (let i = 5; i <= 20; i++) core.envs[0]!.features.push({ id: i, name: `feature_${i}`, enabled: i % 2 === 0, value: `value ${i}` })
      // undici's fetch sends accept-encoding: gzip, deflate and decodes: the SDK gets gzip from memory
      await untilCompressed(gw, ENV_DOC, SERVER, 'gzip, deflate')
      await untilCompressed(gw, FLAGS, CLIENT, 'gzip, deflate')
      const local = new Flagsmith({ environmentKey: SERVER, apiUrl: `${gw.url}/api/v1/`, enableLocalEvaluation: true, retries: 0, logger: pino({ level: 'silent' }) })
      const remote = new Flagsmith({ environmentKey: CLIENT, apiUrl: `${gw.url}/api/v1/`, retries: 0, logger: pino({ level: 'silent' }) })
      onTestFinished(async () => { await local.close(); await remote.close() })
      const l = await local.getEnvironmentFlags()
      const r = await remote.getEnvironmentFlags()
      for (const flags of [l, r]) {
        expect(flags.getFeatureValue('banner')).toBe('hello')
        expect(flags.getFeatureValue('max_items')).toBe(10)
        expect(flags.isFeatureEnabled('dark_mode')).toBe(false)
        expect(flags.getFeatureValue('feature_20')).toBe('value 20')
        expect(flags.isFeatureEnabled('feature_19')).toBe(false)
      }
      // an identity override from the (large, compressed) document
      expect((await local.getIdentityFlags('identity-override-7')).getFeatureValue('banner')).toBe('overridden')
      expect(core.counts(ENV_DOC, SERVER)).toBe(1)
      expect(core.counts(FLAGS, CLIENT)).toBe(1)
    })
  }
})
