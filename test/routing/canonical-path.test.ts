/**
 * Issue 7, "limits and cache bypassed by the path": whatever reaches Core is what the matched
 * route's limits and cache saw. Each target is written on a raw socket (HTTP clients normalise
 * paths) to a real gateway in front of a recording upstream. For every target the gateway
 * either answers 400 FLAGGATE_BAD_REQUEST and sends nothing upstream, or the route whose limits
 * applied (named by the `RateLimit-Policy` header) is the route Django would serve the received
 * path with (Core percent-decodes the path before routing and compares case-sensitively).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startRecordingUpstream, type RecordingUpstream } from '../support/recording-upstream.js'
import { policyYaml, startTestGateway, type TestGateway } from '../support/gateway.js'
import { rawExchange, type RawAnswer } from '../support/http.js'

/** One GET-style request with the target and headers written byte for byte. */
async function send (base: string, method: string, target: string, headers: Record<string, string> = {}): Promise<RawAnswer> {
  let head = `${method} ${target} HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n`
  for (const [k, v] of Object.entries(headers)) head += `${k}: ${v}\r\n`
  return await rawExchange(base, head + '\r\n')
}

/** What Django routes on: the path percent-decoded (Python's unquote: bad escapes left as they are). */
function djangoPath (received: string): string {
  const path = received.split('?')[0]!
  const bytes: number[] = []
  for (let i = 0; i < path.length; i++) {
    const h = path.slice(i + 1, i + 3)
    if (path[i] === '%' && /^[0-9a-fA-F]{2}$/.test(h)) { bytes.push(parseInt(h, 16)); i += 2 } else bytes.push(path.charCodeAt(i))
  }
  return Buffer.from(bytes).toString('utf8')
}

const SDK_VIEWS: Record<string, string> = {
  '/api/v1/environment-document/': 'environment-document',
  '/api/v1/flags/': 'flags',
  '/api/v1/identities/': 'identities'
}
/** The policy route Core's view corresponds to: an SDK route, or `default` for anything else. */
const routeForCore = (received: string): string => SDK_VIEWS[djangoPath(received)] ?? 'default'

const ROUTES = `  - name: environment-document
    match: { methods: [GET], path: /api/v1/environment-document/ }
    upstream: core
    limit: { by: environmentKey, rate: 1000/s, burst: 1000 }
    cache: { ttl: 30s }
  - name: flags
    match: { methods: [GET], path: /api/v1/flags/ }
    upstream: core
    limit: { by: environmentKey, rate: 1000/s, burst: 1000 }
  - name: identities
    match: { methods: [GET, POST], path: /api/v1/identities/ }
    upstream: core
    limit: { by: environmentKey, rate: 1000/s, burst: 1000 }
  - name: default
    match: { pathPrefix: / }
    upstream: core
    limit: { by: environmentKey, rate: 1000/s, burst: 1000 }`

/**
 * [target, what reaches the upstream (undefined: 400)]. The expected upstream path is written
 * out by hand, not computed by the code under test.
 */
const CORPUS: Array<[string, string | undefined]> = [
  ['/api/v1/flags/', '/api/v1/flags/'],
  ['/api/v1/flags', '/api/v1/flags/'],
  ['/api/v1/./flags/', '/api/v1/flags/'],
  ['/api/v1/%2e/flags/', '/api/v1/flags/'],
  ['/api/v1/%2E/flags/', '/api/v1/flags/'],
  ['/api/v1/x/../flags/', '/api/v1/flags/'],
  ['/api/v1/x/%2e%2e/flags/', '/api/v1/flags/'],
  ['/api/v1/x/.%2E/flags/', '/api/v1/flags/'],
  ['/api/v1/flags/.', '/api/v1/flags/'],
  ['/api/v1/flags/..', '/api/v1/'],
  ['/api/v1/%66lags/', '/api/v1/flags/'],
  ['/%61pi/v1/fl%61gs/', '/api/v1/flags/'],
  ['/api/v1/%46lags/', '/api/v1/Flags/'],
  ['/API/v1/flags/', '/API/v1/flags/'],
  ['/api/v1/flags;x/', '/api/v1/flags;x/'],
  ['/api/v1/flags%3B/', '/api/v1/flags;/'],
  ['/api/v1/fla%20gs/', '/api/v1/fla%20gs/'],
  ['/api/v1/flags%3F/', '/api/v1/flags%3F/'],
  ['/api/v1/flags%25/', '/api/v1/flags%25/'],
  ['/api/v1/%e2%9c%93/', '/api/v1/%E2%9C%93/'],
  ['/api/v1/flags/?feature=a%2Fb', '/api/v1/flags/?feature=a%2Fb'],
  ['/api/v1/identities/?identifier=a/../b', '/api/v1/identities/?identifier=a/../b'],
  ['/api/v1/environment-document/', '/api/v1/environment-document/'],
  ['/api/v1/environment-document', '/api/v1/environment-document/'],
  ['/api/v1/./environment-document/', '/api/v1/environment-document/'],
  ['/api/v1/%65nvironment-document/', '/api/v1/environment-document/'],
  ['/api/v1/flags/%2e%2e/environment-document/', '/api/v1/environment-document/'],
  ['/api/v1/environment-document/?cb=1', '/api/v1/environment-document/'],
  // Core does not paginate: its document is keyed and filled without page_id (Edge keeps it)
  ['/api/v1/environment-document/?page_id=identity_override:1:abc&cb=2', '/api/v1/environment-document/'],
  // refused
  ['/api/v1//flags/', undefined],
  ['//api/v1/flags/', undefined],
  ['/api/v1%2fflags/', undefined],
  ['/api/v1%2Fflags/', undefined],
  ['/api/v1/flags%2F', undefined],
  ['/api/v1\\flags/', undefined],
  ['/api/v1%5cflags/', undefined],
  ['/api/v1/flags/%00', undefined],
  ['/api/v1/fl%ZZags/', undefined],
  ['/api/v1/fl%4', undefined],
  ['/api/v1/%C0%AE%C0%AE/flags/', undefined],
  ['/api/v1/%ff/', undefined],
  ['/api/v1/\xc0\xae/', undefined],
  // raw bytes ≥ 0x80: Node's parser refuses them (HPE_INVALID_URL) before any of our code
  ['/api/v1/\xe2\x9c\x93/', undefined],
  ['/api/../../flags/', undefined],
  ['/..', undefined],
  ['http://gw.test/api/v1/flags/', undefined],
  ['http://gw.test/api/v1/../v1/environment-document/', undefined],
  ['*', undefined],
  ['/api/v1/flags/#x', undefined],
  ['/api/v1/flags/?a=1#x', undefined]
]

describe('canonical paths over raw sockets', () => {
  let up: RecordingUpstream
  let gw: TestGateway
  beforeAll(async () => {
    up = await startRecordingUpstream()
    gw = await startTestGateway(policyYaml({ coreUrl: up.url, routes: ROUTES }))
  })
  afterAll(async () => { await gw?.close(); await up?.close() })

  it('has at least 30 tricky targets', () => { expect(CORPUS.length).toBeGreaterThanOrEqual(30) })

  it.each(CORPUS.map(([t, e], i) => [JSON.stringify(t), t, e, i] as const))('%s', async (_name, target, expected, i) => {
    up.reset()
    const r = await send(gw.url, 'GET', target, { 'X-Environment-Key': `corpus-key-${i}` })
    if (expected === undefined) {
      expect(r.status, r.body).toBe(400)
      expect(JSON.parse(r.body)).toMatchObject({ statusCode: 400, code: 'FLAGGATE_BAD_REQUEST' })
      expect(r.headers['x-flaggate-upstream']).toBe('none')
      expect(up.calls).toHaveLength(0)
      return
    }
    expect(r.status, r.body).toBe(200)
    expect(up.calls.map((c) => c.rawPath)).toEqual([expected])
    // the limits that applied are those of the route Core serves the received path with
    const route = /^"([^"]+)"/.exec(r.headers['ratelimit-policy'] ?? '')?.[1]
    expect(route).toBe(routeForCore(expected))
    // and the cache applied exactly when Core's view is the environment document
    expect(r.headers['x-cache-status']).toBe(route === 'environment-document' ? 'MISS' : undefined)
    const line = gw.logs.lines.findLast((l) => l.msg === 'request')
    expect(line?.route).toBe(route)
  })

  it('query parameters share one cached document of Core, page_id too (Core does not paginate)', async () => {
    up.reset()
    const key = { 'X-Environment-Key': 'ser.cache-buster' }
    const first = await send(gw.url, 'GET', '/api/v1/environment-document/?cb=1', key)
    const second = await send(gw.url, 'GET', '/api/v1/environment-document/?cb=2', key)
    const third = await send(gw.url, 'GET', '/api/v1/./environment-document?cb=3&x=y', key)
    expect([first.headers['x-cache-status'], second.headers['x-cache-status'], third.headers['x-cache-status']]).toEqual(['MISS', 'HIT', 'HIT'])
    const page = await send(gw.url, 'GET', '/api/v1/environment-document/?cb=4&page_id=p2', key)
    expect(page.headers['x-cache-status']).toBe('HIT')
    expect(up.calls.map((c) => c.rawPath)).toEqual(['/api/v1/environment-document/'])
  })

  it('a request without a key on a cache route (BYPASS, proxied) sends only page_id upstream too', async () => {
    up.reset()
    const r = await send(gw.url, 'GET', '/api/v1/environment-document/?cb=1&page_id=p3&z=%2F')
    expect(r.headers['x-cache-status']).toBe('BYPASS')
    expect(up.calls.map((c) => c.rawPath)).toEqual(['/api/v1/environment-document/?page_id=p3'])
  })

  it('other routes get their query byte for byte', async () => {
    up.reset()
    await send(gw.url, 'GET', "/api/v1/flags/?a=1&b=%27c&c='d&e=%E2%9C%93&f", { 'X-Environment-Key': 'q' })
    expect(up.calls.map((c) => c.rawPath)).toEqual(["/api/v1/flags/?a=1&b=%27c&c='d&e=%E2%9C%93&f"])
  })
})

describe('the August 2022 incident path', () => {
  let up: RecordingUpstream
  let gw: TestGateway
  beforeAll(async () => {
    up = await startRecordingUpstream()
    gw = await startTestGateway(policyYaml({ coreUrl: up.url, routes: ROUTES, extra: `overrides:
  - key: ser.storm
    routes: [environment-document]
    limit: { by: environmentKey, rate: 1/h, burst: 1 }
` }))
  })
  afterAll(async () => { await gw?.close(); await up?.close() })

  it('GET /api/v1/./environment-document/ after a 429 is a 429 too, and Core sees nothing', async () => {
    const key = { 'X-Environment-Key': 'ser.storm' }
    expect((await send(gw.url, 'GET', '/api/v1/environment-document/', key)).status).toBe(200)
    expect((await send(gw.url, 'GET', '/api/v1/environment-document/', key)).status).toBe(429)
    up.reset()
    for (const target of ['/api/v1/./environment-document/', '/api/v1/%2e/environment-document/', '/api/v1/x/../environment-document/',
      '/api/v1/%65nvironment-document/', '/api/v1/environment-document', '/api/v1/environment-document/?cb=9', '/api/v1/environment-document/.']) {
      for (let i = 0; i < 3; i++) {
        const r = await send(gw.url, 'GET', target, key)
        expect(r.status, target).toBe(429)
        expect(JSON.parse(r.body)).toMatchObject({ code: 'FLAGGATE_RATE_LIMITED' })
      }
    }
    for (const target of ['/api/v1//environment-document/', '/api/v1%2Fenvironment-document/', '/api/v1\\environment-document/']) {
      expect((await send(gw.url, 'GET', target, key)).status, target).toBe(400)
    }
    expect(up.calls).toHaveLength(0)
  })
})
