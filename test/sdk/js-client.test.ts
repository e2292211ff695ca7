/**
 * The published JS client SDK (npm `flagsmith`, the browser / React Native SDK) against a real
 * gateway on real sockets, the fake Core behind it:
 * - compression on (flags/ cached and compressed): `init` + `getValue`/`hasFeature` give the very
 *   flags the SDK gets straight from Core, whether the fetch asks for compressed bodies (Node's
 *   fetch sends `gzip, deflate, br` and decodes) or not; a raw second request and the metrics show
 *   the answers really were compressed;
 * - local evaluation (mode fallback) with Core down: `init` and `identify` still get their flags,
 *   from the gateway's copy of the environment document.
 *
 * The SDK's `flagsmith/isomorphic` entry is the one made for Node (SSR): it uses the global fetch,
 * where the default entry falls back to XMLHttpRequest, which Node lacks.
 */
import { createFlagsmithInstance } from 'flagsmith/isomorphic'
import type { IFlagsmith } from 'flagsmith/types'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { startFakeCore, type FakeCore } from '../support/fake-flagsmith.js'
import { policyYaml, startTestGateway, type TestGateway } from '../support/gateway.js'
import { raw } from '../support/http.js'
import { localYaml, stateDir, untilRefreshed } from '../local/support.js'

const CLIENT = 'dev_client_key'
const SERVER = 'ser.dev_server_key'
// the fake's four features plus a dozen more, so the client key's flag list is over the 1 KB from
// which cached answers are compressed
const EXTRA = Array.from({ length: 12 }, (_, i) => ({ id: 10 + i, name: `extra_feature_${i}`, enabled: i % 2 === 0, value: i % 3 === 0 ? null : `value-${i}` }))
const FEATURES = ['banner', 'max_items', 'dark_mode', 'secret_algo', 'no_such_feature', ...EXTRA.map((f) => f.name)]

const open: Array<{ close: () => Promise<void> }> = []
afterEach(async () => { for (const o of open.splice(0).reverse()) await o.close() })

async function fake (): Promise<FakeCore> {
  const core = await startFakeCore()
  open.push(core)
  return core
}

async function gateway (yaml: string): Promise<TestGateway> {
  const gw = await startTestGateway(yaml, { watch: false })
  open.push(gw)
  return gw
}

/**
 * What a browser app sees: a fresh SDK instance, `init` against `base`, then (optionally)
 * `identify`. `fetch` is the one the SDK is given (Node's own by default).
 */
async function client (base: string, o: { fetch?: typeof fetch; identity?: [string, Record<string, string | number | boolean>] } = {}): Promise<IFlagsmith> {
  const sdk = createFlagsmithInstance()
  await sdk.init({ environmentID: CLIENT, api: `${base}/api/v1/`, fetch: o.fetch ?? globalThis.fetch, enableAnalytics: false, cacheFlags: false })
  if (o.identity !== undefined) await sdk.identify(o.identity[0], o.identity[1])
  return sdk
}

/** Every feature through the SDK's public reads. */
function seen (sdk: IFlagsmith): Record<string, [boolean, unknown]> {
  const out: Record<string, [boolean, unknown]> = {}
  for (const name of FEATURES) out[name] = [sdk.hasFeature(name, { skipAnalytics: true }), sdk.getValue(name, { skipAnalytics: true })]
  return out
}

/** Node's fetch, but asking for identity bodies only (a client that does not take compression). */
const identityFetch: typeof fetch = async (input, init) => {
  const headers = new Headers(init?.headers)
  headers.set('accept-encoding', 'identity')
  return await fetch(input, { ...init, headers })
}

/** Node's fetch, recording the Content-Encoding of each answer it decoded for the SDK. */
function recordingFetch (encodings: Array<string | null>): typeof fetch {
  return async (input, init) => {
    const r = await fetch(input, init)
    encodings.push(r.headers.get('content-encoding'))
    return r
  }
}

function metric (text: string, re: RegExp): number {
  let sum = 0
  for (const line of text.split('\n')) if (re.test(line)) sum += Number(line.slice(line.lastIndexOf(' ') + 1))
  return sum
}

describe('the JS client SDK through a compressing gateway', () => {
  it('gets from the gateway, compressed or not, exactly the flags it gets from Core', async () => {
    const core = await fake()
    core.envs[0]!.features.push(...EXTRA)
    const gw = await gateway(policyYaml({
      coreUrl: core.url,
      routes: `  - name: flags
    match: { methods: [GET], path: /api/v1/flags/ }
    upstream: core
    cache: { ttl: 30s, staleWhileRevalidate: 30s, staleIfError: 10m }
    compress: { minSize: 200b }
  - name: identities
    match: { methods: [GET, POST], path: /api/v1/identities/ }
    upstream: core
    compress: { minSize: 200b }
  - name: default
    match: { pathPrefix: / }
    upstream: core`
    }))

    const direct = seen(await client(core.url))
    expect(direct.banner).toEqual([true, 'hello'])
    expect(direct.max_items).toEqual([true, 10])
    expect(direct.secret_algo).toEqual([false, null]) // server-key-only: not for a client key
    expect(direct.extra_feature_2).toEqual([true, 'value-2'])
    const directIdentity = seen(await client(core.url, { identity: ['carol', { plan: 'pro' }] }))
    expect(directIdentity.banner).toEqual([true, 'pro banner'])
    const flagsAsked = (): number => core.requests.filter((r) => r.path.startsWith('/api/v1/flags/')).length
    const beforeGateway = flagsAsked()

    // the forms are made after the entry is stored: wait (on the wire, no sleeps guessed) until
    // a raw request for br gets br, then the SDK's own fetch gets compressed bodies too
    let rawBr: Awaited<ReturnType<typeof raw>> | undefined
    for (let i = 0; i < 500 && rawBr?.headers['content-encoding'] !== 'br'; i++) {
      if (i > 0) await new Promise((resolve) => setTimeout(resolve, 10))
      rawBr = await raw(gw.url, '/api/v1/flags/', { headers: { 'x-environment-key': CLIENT, 'accept-encoding': 'gzip, deflate, br' } })
    }
    expect(rawBr?.status).toBe(200)
    expect(rawBr?.headers['content-encoding']).toBe('br')
    expect(rawBr?.headers.vary).toMatch(/accept-encoding/i)

    const encodings: Array<string | null> = []
    const compressed = await client(gw.url, { fetch: recordingFetch(encodings) })
    expect(seen(compressed)).toEqual(direct)
    const compressedIdentity = await client(gw.url, { fetch: recordingFetch(encodings), identity: ['carol', { plan: 'pro' }] })
    expect(seen(compressedIdentity)).toEqual(directIdentity)
    // every answer the SDK decoded was compressed: flags/ from the cache's forms, the identity
    // POST on the fly. (Which coding depends on the Node version's fetch: Node 20's undici asks
    // for `gzip, deflate`, later ones add br.)
    expect(encodings.length).toBeGreaterThanOrEqual(2)
    expect(encodings.every((e) => e === 'br' || e === 'gzip')).toBe(true)

    const plain = await client(gw.url)
    expect(seen(plain)).toEqual(direct)
    const identityOnly = await client(gw.url, { fetch: identityFetch })
    expect(seen(identityOnly)).toEqual(direct)
    const identityOnlyIdentity = await client(gw.url, { fetch: identityFetch, identity: ['carol', { plan: 'pro' }] })
    expect(seen(identityOnlyIdentity)).toEqual(directIdentity)

    // a raw request with identity only gets the same JSON, uncompressed
    const rawIdentity = await raw(gw.url, '/api/v1/flags/', { headers: { 'x-environment-key': CLIENT, 'accept-encoding': 'identity' } })
    expect(rawIdentity.headers['content-encoding']).toBeUndefined()
    const throughGateway = flagsAsked() - beforeGateway
    const fromCore = await raw(core.url, '/api/v1/flags/', { headers: { 'x-environment-key': CLIENT } })
    expect(rawIdentity.body.equals(fromCore.body)).toBe(true)

    const metrics = (await raw(gw.adminUrl, '/metrics')).body.toString()
    expect(metric(metrics, /^flaggate_response_body_bytes_total\{route="flags",encoding="br"\}/)).toBeGreaterThan(0)
    expect(metric(metrics, /^flaggate_response_body_bytes_total\{route="flags",encoding="(br|gzip)"\}/)).toBeGreaterThan(0)
    expect(metric(metrics, /^flaggate_response_body_bytes_total\{route="flags",encoding="identity"\}/)).toBeGreaterThan(0)
    expect(metric(metrics, /^flaggate_flag_list_cache_total\{status="HIT"\}/)).toBeGreaterThan(0)
    // flags/ came from Core once for all those raw requests and SDK instances: the cache
    expect(throughGateway).toBe(1)
  })
})

describe('the JS client SDK with local evaluation (mode fallback) and Core down', () => {
  it('init and identify still get the flags Core gave, from the gateway', async () => {
    const core = await fake()
    const gw = await gateway(localYaml(core.url, `  mode: fallback\n  refresh: 1h\n  stateFile: ${join(stateDir(), 'state.json')}\n  environments:\n    - serverKey: ${SERVER}`))
    await untilRefreshed(gw)
    const who: Array<[string, Record<string, string | number | boolean>]> = [['carol', { plan: 'pro' }], ['dave', { plan: 'free' }]]

    const want: Record<string, unknown> = { env: seen(await client(gw.url)) }
    for (const id of who) want[id[0]] = seen(await client(gw.url, { identity: id }))
    expect(want.env).toMatchObject({ banner: [true, 'hello'] })
    expect(want.carol).toMatchObject({ banner: [true, 'pro banner'] })

    core.db.down = true
    const statuses: string[] = []
    const sources: Array<string | null> = []
    const watching: typeof fetch = async (input, init) => {
      const r = await fetch(input, init)
      statuses.push(String(r.status))
      sources.push(r.headers.get('x-flaggate-source'))
      return r
    }
    const got: Record<string, unknown> = { env: seen(await client(gw.url, { fetch: watching })) }
    for (const id of who) got[id[0]] = seen(await client(gw.url, { fetch: watching, identity: id }))
    expect(got).toEqual(want)
    // every request the SDK made was answered 200, locally: Core really was out of the picture
    expect(statuses.length).toBeGreaterThanOrEqual(1 + who.length)
    expect(statuses.every((s) => s === '200')).toBe(true)
    expect(sources.every((s) => s === 'local')).toBe(true)
    // and straight to Core the SDK gets nothing
    await expect(client(core.url)).rejects.toThrow()
  })
})
