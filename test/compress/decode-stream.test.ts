/**
 * A client never gets a Content-Encoding it did not accept: when Core's compressed answer alone is
 * larger than `maxEntrySize`, the fill's answer is handed to the client that started it, decoded
 * on the fly unless the client accepts Core's coding. Real gateway, the fake Core with gzip on.
 */
import { describe, expect, it, onTestFinished } from 'vitest'
import { Readable } from 'node:stream'
import { buffer } from 'node:stream/consumers'
import zlib from 'node:zlib'
import { startFakeCore } from '../support/fake-flagsmith.js'
import { policyYaml, startTestGateway } from '../support/gateway.js'
import { raw } from '../support/http.js'
import { scrapeMetrics } from '../support/metrics.js'
import { acceptsCoding, decodeStreaming } from '../../src/compress/decode-stream.js'

const ENV_DOC = '/api/v1/environment-document/'
const SERVER = 'ser.dev_server_key'

async function start (): Promise<{ core: Awaited<ReturnType<typeof startFakeCore>>; url: string; adminUrl: string }> {
  const core = await startFakeCore()
  onTestFinished(core.close)
  core.envs[0]!.identityOverrides = 200 // ~120 KB identity, ~10 KB gzipped
  const gw = await startTestGateway(policyYaml({
    coreUrl: core.url,
    routes: `  - name: environment-document
    match: { methods: [GET], path: ${ENV_DOC} }
    upstream: core
    cache: { ttl: 30s, staleWhileRevalidate: 0s, staleIfError: 10m, maxEntrySize: 2kb }`
  }), { watch: false })
  onTestFinished(gw.close)
  return { core, url: gw.url, adminUrl: gw.adminUrl }
}

describe('the fill\'s compressed answer, too large to cache, handed to a client', () => {
  for (const [name, ae, expected] of [
    ['Accept-Encoding: identity', 'identity', undefined],
    ['no Accept-Encoding', undefined, undefined],
    ['gzip;q=0, br', 'gzip;q=0, br', undefined],
    ['Accept-Encoding: gzip (gets Core\'s gzip as it is)', 'gzip', 'gzip']
  ] as const) {
    it(name, async () => {
      const { core, url, adminUrl } = await start()
      const truth = (await raw(core.url, ENV_DOC, { headers: { 'x-environment-key': SERVER } })).body
      core.db.gzip = true
      const compressed = await raw(core.url, ENV_DOC, { headers: { 'x-environment-key': SERVER, 'accept-encoding': 'gzip' } })
      expect(compressed.headers['content-encoding']).toBe('gzip')
      expect(compressed.body.length).toBeGreaterThan(2048) // so the fill hands the answer over
      const before = core.requests.length

      const r = await raw(url, ENV_DOC, { headers: { 'x-environment-key': SERVER, ...(ae === undefined ? {} : { 'accept-encoding': ae }) } })
      expect(r.status).toBe(200)
      expect(r.headers['x-cache-status']).toBe('BYPASS')
      // one Core request, the fill's (its canonical header, not the client's): the handover path
      const asked = core.requests.slice(before).filter((q) => q.path === ENV_DOC)
      expect(asked.map((q) => q.headers['accept-encoding'])).toEqual(['gzip, br'])
      expect(r.headers['content-encoding']).toBe(expected)
      const body = expected === 'gzip' ? zlib.gunzipSync(r.body) : r.body
      expect(body.equals(truth)).toBe(true)
      // the bytes out, by the coding sent (the handed-over answer streams)
      const m = await scrapeMetrics(adminUrl)
      expect(m.sum('flaggate_response_body_bytes_total', { route: 'environment-document' })).toBe(r.body.length)
      expect(m.value('flaggate_response_body_bytes_total', { route: 'environment-document', encoding: expected ?? 'identity' })).toBe(r.body.length)
      if (expected === undefined) {
        expect(r.headers['content-length']).toBeUndefined()
        expect(String(r.headers.vary)).toMatch(/accept-encoding/i)
      }
    })
  }
})

describe('decodeStreaming', () => {
  it('knows which codings a client accepts', () => {
    expect(acceptsCoding(undefined, 'gzip')).toBe(false)
    expect(acceptsCoding('identity', 'gzip')).toBe(false)
    expect(acceptsCoding('gzip;q=0, *', 'gzip')).toBe(false)
    expect(acceptsCoding('*', 'br')).toBe(true)
    expect(acceptsCoding('gzip, deflate', 'x-gzip')).toBe(true)
    expect(acceptsCoding(undefined, undefined)).toBe(true)
  })

  it('cuts a decompression bomb past the inflate ratio', async () => {
    const bomb = zlib.gzipSync(Buffer.alloc(64 * 1024 * 1024)) // ~1000:1
    const headers: Record<string, string> = { 'content-encoding': 'gzip', 'content-length': String(bomb.length) }
    const s = decodeStreaming(Readable.from([bomb]), headers)!
    await expect(buffer(s)).rejects.toThrow(/inflates more than 200 times/)
    expect(headers['content-encoding']).toBeUndefined()
  })

  it('leaves a coding it cannot decode to the caller (a 502)', () => {
    const headers = { 'content-encoding': 'zstd' }
    expect(decodeStreaming(Readable.from([Buffer.from('x')]), headers)).toBeUndefined()
    expect(headers['content-encoding']).toBe('zstd')
  })
})
