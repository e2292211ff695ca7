/**
 * The order of the request pipeline (src/contracts/pipeline.ts), pinned by what a client and Core
 * can observe through a real gateway in front of the fake Core: which answers cost a rate-limit
 * token (read back from the `RateLimit` header's `r=`), and which requests reach Core.
 */
import { describe, expect, it } from 'vitest'
import { startFakeCore } from '../support/fake-flagsmith.js'
import { policyYaml, startTestGateway } from '../support/gateway.js'
import { raw, type RawResponse } from '../support/http.js'
import { PIPELINE } from '../../src/contracts/pipeline.js'

const ENV_DOC = '/api/v1/environment-document/'
const FLAGS = '/api/v1/flags/'
const KEY = 'ser.dev_server_key'
const CLIENT_KEY = 'dev_client_key'

/** what is left in the client's bucket, from `RateLimit: "<route>";r=<n>;t=<s>` */
function remaining (r: RawResponse): number | undefined {
  const m = /;r=(\d+);/.exec(String(r.headers.ratelimit ?? ''))
  return m === null ? undefined : Number(m[1])
}

describe('the request pipeline, in order', () => {
  it('is one table: routing, block, edge, conditional, rate-limit, local, fresh-hit, unknown-keys, lookup, proxy', () => {
    expect(PIPELINE.map((s) => s.step)).toEqual(['routing', 'block', 'edge', 'conditional', 'rate-limit', 'local', 'fresh-hit', 'unknown-keys', 'lookup', 'proxy'])
    expect(PIPELINE.map((s) => s.hook)).toEqual(['onRequest', 'onRequest', 'onRequest', 'onRequest', 'onRequest', 'onRequest', 'onRequest', 'onRequest', 'preHandler', 'handler'])
  })

  it('block before everything, a 304 costs no token, a HIT does, a 429 and a MISS as the table says', async () => {
    const core = await startFakeCore()
    const gw = await startTestGateway(policyYaml({
      coreUrl: core.url,
      routes: `  - name: environment-document
    match: { methods: [GET, HEAD], path: ${ENV_DOC} }
    upstream: core
    cache: { ttl: 1h }
    limit: { by: environmentKey, rate: 1/h, burst: 3 }
  - name: flags
    match: { methods: [GET], path: ${FLAGS} }
    upstream: core
    limit: { by: environmentKey, rate: 1/h, burst: 1 }
  - name: default
    match: { pathPrefix: / }
    upstream: core`,
      extra: `blocklist:
  - { userAgent: "^BlockedBot/", reason: "pipeline test" }
`
    }), { watch: false })
    try {
      const doc = async (headers: Record<string, string> = {}): Promise<RawResponse> =>
        await raw(gw.url, ENV_DOC, { headers: { 'x-environment-key': KEY, ...headers } })
      const blockedUa = { 'user-agent': 'BlockedBot/1.0' }

      // block: 403, before the limiter (no token spent) and before the cache and Core
      for (let i = 0; i < 5; i++) expect((await doc(blockedUa)).status).toBe(403)
      expect(core.counts(ENV_DOC, KEY)).toBe(0)

      // MISS: the first token of three, and Core asked once
      const miss = await doc()
      expect(miss.status).toBe(200)
      expect(miss.headers['x-cache-status']).toBe('MISS')
      expect(remaining(miss)).toBe(2)
      expect(core.counts(ENV_DOC, KEY)).toBe(1)

      // fresh HIT: after the limiter, so it costs a token; Core is not asked again
      const hit = await doc()
      expect(hit.status).toBe(200)
      expect(hit.headers['x-cache-status']).toBe('HIT')
      expect(remaining(hit)).toBe(1)

      // conditional 304 from the cache: before the limiter, so no token and no RateLimit header
      const etag = String(miss.headers.etag)
      for (let i = 0; i < 5; i++) {
        const notModified = await doc({ 'if-none-match': etag })
        expect(notModified.status).toBe(304)
        expect(notModified.headers.ratelimit).toBeUndefined()
      }
      const lastHit = await doc()
      expect(lastHit.status).toBe(200)
      expect(remaining(lastHit)).toBe(0)

      // the bucket is empty now: 429 ... unless blocked, which is decided first
      expect((await doc()).status).toBe(429)
      expect((await doc(blockedUa)).status).toBe(403)
      expect(core.counts(ENV_DOC, KEY)).toBe(1)

      // a rate-limited request never reaches Core (an uncached route: every allowed one does)
      const flags = async (): Promise<RawResponse> => await raw(gw.url, FLAGS, { headers: { 'x-environment-key': CLIENT_KEY } })
      expect((await flags()).status).toBe(200)
      expect(core.counts(FLAGS, CLIENT_KEY)).toBe(1)
      for (let i = 0; i < 3; i++) expect((await flags()).status).toBe(429)
      expect(core.counts(FLAGS, CLIENT_KEY)).toBe(1)
    } finally {
      await gw.close()
      await core.close()
    }
  })
})
