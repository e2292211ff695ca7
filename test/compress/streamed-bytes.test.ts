/**
 * `flaggate_response_body_bytes_total{route,encoding}` counts the answers the proxy streams
 * (larger than its read-whole bound): the bytes written, by the coding sent. Real gateway, the
 * fake Core's environment document grown past 64 KB.
 */
import { describe, expect, it, onTestFinished } from 'vitest'
import zlib from 'node:zlib'
import { startFakeCore } from '../support/fake-flagsmith.js'
import { policyYaml, startTestGateway } from '../support/gateway.js'
import { raw } from '../support/http.js'
import { scrapeMetrics } from '../support/metrics.js'

const ENV_DOC = '/api/v1/environment-document/'
const SERVER = 'ser.dev_server_key'
const BYTES = 'flaggate_response_body_bytes_total'

async function start (compress: boolean): Promise<{ truth: Buffer; gw: Awaited<ReturnType<typeof startTestGateway>> }> {
  const core = await startFakeCore()
  onTestFinished(core.close)
  core.envs[0]!.identityOverrides = 200 // ~120 KB: streamed, not read whole
  const truth = (await raw(core.url, ENV_DOC, { headers: { 'x-environment-key': SERVER } })).body
  expect(truth.length).toBeGreaterThan(64 * 1024)
  const gw = await startTestGateway(policyYaml({
    coreUrl: core.url,
    routes: `  - name: doc
    match: { methods: [GET, HEAD], path: ${ENV_DOC} }
    upstream: core
${compress ? '    compress: { minSize: 1kb }\n' : ''}`
  }), { watch: false })
  onTestFinished(gw.close)
  return { truth, gw }
}

describe('bytes out of streamed proxied answers', () => {
  it('a route without compress: identity bytes, as many as Core sent', async () => {
    const { truth, gw } = await start(false)
    for (let i = 0; i < 2; i++) {
      const r = await raw(gw.url, ENV_DOC, { headers: { 'x-environment-key': SERVER, 'accept-encoding': 'gzip' } })
      expect(r.status).toBe(200)
      expect(r.body.equals(truth)).toBe(true)
    }
    // a HEAD streams no body and adds nothing
    expect((await raw(gw.url, ENV_DOC, { method: 'HEAD', headers: { 'x-environment-key': SERVER } })).status).toBe(200)
    const m = await scrapeMetrics(gw.adminUrl)
    expect(m.value(BYTES, { route: 'doc', encoding: 'identity' })).toBe(2 * truth.length)
    expect(m.sum(BYTES, { route: 'doc' })).toBe(2 * truth.length)
  })

  it('a route with compress: the compressed bytes under their coding, identity ones under identity', async () => {
    const { truth, gw } = await start(true)
    const sent: Record<string, number> = { identity: 0, gzip: 0, br: 0 }
    for (const ae of ['gzip', 'br', 'identity', 'gzip']) {
      const r = await raw(gw.url, ENV_DOC, { headers: { 'x-environment-key': SERVER, 'accept-encoding': ae } })
      expect(r.status).toBe(200)
      const ce = r.headers['content-encoding'] ?? 'identity'
      expect(ce).toBe(ae)
      const body = ce === 'gzip' ? zlib.gunzipSync(r.body) : ce === 'br' ? zlib.brotliDecompressSync(r.body) : r.body
      expect(body.equals(truth)).toBe(true)
      sent[ce]! += r.body.length
    }
    expect(sent.gzip).toBeLessThan(truth.length)
    const m = await scrapeMetrics(gw.adminUrl)
    for (const enc of ['identity', 'gzip', 'br']) expect(m.value(BYTES, { route: 'doc', encoding: enc })).toBe(sent[enc])
  })
})
