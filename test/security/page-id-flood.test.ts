/**
 * Attack 10: `page_id` values flooded the document cache. 100 requests with distinct `page_id`s
 * filled the cache, evicted every other key's document and made Core build the attacker's document
 * 100 times, though Core does not paginate (only Edge does). Now `page_id` is part of the key only
 * for an upstream that paginates (Edge), with at most 16 pages cached per key and upstream; past
 * that a page is still proxied to Edge (an SDK following `Link` gets its page), just not stored.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { policyYaml, startTestGateway, type TestGateway } from '../support/gateway.js'
import { json, raw } from '../support/http.js'
import { startRecordingUpstream, type RecordedCall, type RecordingUpstream } from '../support/recording-upstream.js'

const DOC = '/api/v1/environment-document/'
const ATTACKER = 'ser.attacker'
const VICTIM = 'ser.victim'
const VICTIMS = Array.from({ length: 10 }, (_, i) => `${VICTIM}${i}`)
/** ~40 KB per document: the cache (1 MB) holds about 25 of them */
const PADDING = 'x'.repeat(40_000)

/** A recording upstream that answers every key's document; Edge adds a `Link` to the next page. */
function documents (paginates: boolean) {
  return (call: RecordedCall, res: import('node:http').ServerResponse): void => {
    const key = String(call.headers['x-environment-key'])
    const body = JSON.stringify({ id: 1, api_key: key, project: { id: 1 }, feature_states: [], padding: PADDING, page: call.rawPath })
    const headers: Record<string, string> = { 'content-type': 'application/json' }
    if (paginates && !call.rawPath.includes('page_id')) headers.link = `<${DOC}?page_id=identity_override%3A1%3Afirst>; rel="next"`
    res.writeHead(200, headers).end(body)
  }
}

function routes (upstream: string): string {
  return `  - name: environment-document
    match: { methods: [GET, HEAD], path: /api/v1/environment-document/ }
    upstream: ${upstream}
    cache: { ttl: 60s }
  - name: default
    match: { pathPrefix: / }
    upstream: core`
}

const docFills = (up: RecordingUpstream, key: string): RecordedCall[] =>
  up.calls.filter((c) => c.rawPath.startsWith(DOC) && c.headers['x-environment-key'] === key)

async function entries (gw: TestGateway): Promise<number> {
  return (json(await raw(gw.adminUrl, '/admin/status')) as { cache: { entries: number } }).cache.entries
}

async function get (gw: TestGateway, key: string, query = ''): Promise<{ status: number; cache: string | undefined; body: string }> {
  const r = await raw(gw.url, DOC + query, { headers: { 'x-environment-key': key } })
  return { status: r.status, cache: r.headers['x-cache-status'] as string | undefined, body: r.body.toString() }
}

describe('attack 10: distinct page_ids against Core, which does not paginate', () => {
  let core: RecordingUpstream
  let gw: TestGateway
  beforeAll(async () => {
    core = await startRecordingUpstream(documents(false))
    gw = await startTestGateway(policyYaml({ coreUrl: core.url, routes: routes('core'), extra: 'cache:\n  maxSize: 1mb\n' }), { watch: false })
  })
  afterAll(async () => { await gw?.close(); await core?.close() })

  it('100 page_ids cost Core one document, take one cache entry and evict no victim', async () => {
    for (const v of VICTIMS) expect((await get(gw, v)).cache).toBe('MISS')
    const before = await entries(gw)

    const flood = []
    for (let i = 0; i < 100; i++) flood.push(await get(gw, ATTACKER, `?page_id=identity_override:1:${i}`))
    for (const r of flood) expect(r.status).toBe(200)
    // Core ignores page_id: one build of the attacker's document, every other page from memory
    expect(docFills(core, ATTACKER)).toHaveLength(1)
    expect(flood.filter((r) => r.cache === 'HIT')).toHaveLength(99)
    // and the shared fill asked Core without the page_id it does not read
    expect(docFills(core, ATTACKER)[0]!.rawPath).toBe(DOC)
    expect(await entries(gw)).toBe(before + 1)

    // every victim is still answered from memory
    for (const v of VICTIMS) expect((await get(gw, v)).cache, v).toBe('HIT')
    for (const v of VICTIMS) expect(docFills(core, v), v).toHaveLength(1)
  })

  it('a client asking Core for a page gets the one document Core has', async () => {
    const plain = await get(gw, `${VICTIM}0`)
    const paged = await get(gw, `${VICTIM}0`, '?page_id=anything')
    expect(paged).toEqual({ ...plain, cache: 'HIT' })
  })
})

describe('attack 10 against Edge, which paginates: a bound on distinct pages per key', () => {
  let core: RecordingUpstream
  let edge: RecordingUpstream
  let gw: TestGateway
  beforeAll(async () => {
    core = await startRecordingUpstream(documents(false))
    edge = await startRecordingUpstream(documents(true))
    gw = await startTestGateway(policyYaml({ coreUrl: core.url, edgeUrl: edge.url, routes: routes('edge'), extra: 'cache:\n  maxSize: 1mb\n' }), { watch: false })
  })
  afterAll(async () => { await gw?.close(); await edge?.close(); await core?.close() })

  it('pages are cached apart, up to 16 per key; the rest are proxied to Edge and victims stay cached', async () => {
    for (const v of VICTIMS.slice(0, 4)) expect((await get(gw, v)).cache).toBe('MISS')
    const first = await get(gw, ATTACKER)
    expect(first.cache).toBe('MISS')

    const pages = []
    for (let i = 0; i < 100; i++) pages.push(await get(gw, ATTACKER, `?page_id=identity_override:1:${i}`))
    for (const [i, r] of pages.entries()) {
      expect(r.status).toBe(200)
      // each page is Edge's answer for that very page
      expect(JSON.parse(r.body).page).toBe(`${DOC}?page_id=identity_override:1:${i}`)
    }
    expect(pages.slice(0, 16).map((r) => r.cache)).toEqual(Array(16).fill('MISS'))
    expect(new Set(pages.slice(16).map((r) => r.cache))).toEqual(new Set(['BYPASS']))
    // a cached page is a HIT again; one past the bound goes to Edge again
    expect((await get(gw, ATTACKER, '?page_id=identity_override:1:3')).cache).toBe('HIT')
    expect((await get(gw, ATTACKER, '?page_id=identity_override:1:50')).cache).toBe('BYPASS')
    expect(docFills(edge, ATTACKER)).toHaveLength(1 + 100 + 1)

    for (const v of VICTIMS.slice(0, 4)) expect((await get(gw, v)).cache, v).toBe('HIT')
  })

  it('an SDK following Link on a small document gets every page, cached', async () => {
    const key = 'ser.paginated'
    const one = await get(gw, key)
    const two = await get(gw, key, '?page_id=identity_override:1:first')
    expect([one.cache, two.cache]).toEqual(['MISS', 'MISS'])
    expect(JSON.parse(two.body).page).toBe(`${DOC}?page_id=identity_override:1:first`)
    expect((await get(gw, key, '?page_id=identity_override:1:first')).cache).toBe('HIT')
  })
})
