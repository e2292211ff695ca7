/**
 * Attack 11: a client's `Accept` header rode the shared fill. `Accept: application/xml` on a stale
 * document made the background refresh get 406, which replaced the document; the fleet joining
 * that fill got 406, and the stale-if-error copy was gone when Core then failed. With
 * `Accept: text/html` the fleet got text/html.
 *
 * Now the shared fill and its refreshes send a canonical request (`Accept: application/json`, the
 * fill's own `Accept-Encoding`, none of the client's varying headers), and an answer to a refresh
 * that is not a 200 JSON document (a 406, a 404, an HTML page) never replaces a good document: the
 * stale copy stays servable and stale-if-error still holds. Only Core refusing the key (401/403)
 * drops it: a revoked key must stop being served.
 */
import type { ServerResponse } from 'node:http'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { policyYaml, startTestGateway, type TestGateway } from '../support/gateway.js'
import { raw, type RawResponse } from '../support/http.js'
import { startRecordingUpstream, type RecordedCall, type RecordingUpstream } from '../support/recording-upstream.js'

const DOC = '/api/v1/environment-document/'
const KEY = 'ser.fleet'
const DOCUMENT = JSON.stringify({ id: 1, api_key: 'client', project: { id: 1 }, feature_states: [] })

/**
 * How the fake Core answers: `negotiating` honours Accept as Django REST framework does (JSON for
 * JSON or any type, the browsable HTML page for text/html, 406 for a type it cannot render);
 * `html` is a misrouted unified image answering its web app to everything; `down` is 503.
 */
type Mode = 'negotiating' | 'html' | 'not-found' | 'revoked' | 'down'

function answer (mode: () => Mode, delayMs: () => number) {
  return (call: RecordedCall, res: ServerResponse): void => {
    const send = (): void => {
      const m = mode()
      const accept = String(call.headers.accept ?? '*/*')
      if (m === 'down') { res.writeHead(503, { 'content-type': 'application/json' }).end('{"detail":"down"}'); return }
      if (m === 'revoked') { res.writeHead(403, { 'content-type': 'application/json' }).end('{"detail":"Invalid or missing Environment Key"}'); return }
      if (m === 'not-found') { res.writeHead(404, { 'content-type': 'application/json' }).end('{"detail":"Not found."}'); return }
      if (m === 'html' || (accept.includes('text/html') && !accept.includes('application/json'))) {
        res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end('<!doctype html><title>Flagsmith</title>')
        return
      }
      if (!/application\/json|\*\/\*|application\/\*/.test(accept)) {
        res.writeHead(406, { 'content-type': 'application/json' }).end('{"detail":"Could not satisfy the request Accept header."}')
        return
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end(DOCUMENT)
    }
    const d = delayMs()
    if (d > 0) setTimeout(send, d)
    else send()
  }
}

let core: RecordingUpstream
let gw: TestGateway
let mode: Mode
let delay: number

async function start (rule: string): Promise<void> {
  core = await startRecordingUpstream(answer(() => mode, () => delay))
  gw = await startTestGateway(policyYaml({
    coreUrl: core.url,
    routes: `  - name: environment-document
    match: { methods: [GET, HEAD], path: /api/v1/environment-document/ }
    upstream: core
    cache: { ${rule} }
  - name: default
    match: { pathPrefix: / }
    upstream: core`
  }), { watch: false })
}

beforeEach(() => { mode = 'negotiating'; delay = 0 })
afterEach(async () => { await gw?.close(); await core?.close() })

async function get (headers: Record<string, string> = {}): Promise<RawResponse> {
  return await raw(gw.url, DOC, { headers: { 'x-environment-key': KEY, ...headers } })
}

const SDK = { accept: 'application/json' }

function isTheDocument (r: RawResponse): void {
  expect(r.status, r.body.toString()).toBe(200)
  expect(r.headers['content-type']).toMatch(/^application\/json/)
  expect(r.body.toString()).toBe(DOCUMENT)
}

async function waitForStale (): Promise<void> {
  // ttl is 1 s: a little more and the document is stale (no tight timing: only "later than")
  await new Promise((resolve) => setTimeout(resolve, 1300))
}

describe('attack 11: the client\'s Accept on the shared fill', () => {
  for (const accept of ['application/xml', 'text/html']) {
    it(`Accept: ${accept} starting a fill: the fleet joining it gets the JSON document`, async () => {
      await start('ttl: 30s')
      delay = 300
      // and the rest of what a client may vary: its own Host, a long Via, a browser's User-Agent
      const attacker = get({ accept, host: 'evil.example', via: `1.0 ${'v'.repeat(7000)}`, 'user-agent': 'Mozilla/5.0', 'accept-language': 'de' })
      await core.waitForCalls(1)
      const fleet = await Promise.all(Array.from({ length: 20 }, async () => await get(SDK)))
      await attacker
      for (const r of fleet) isTheDocument(r)
      expect(core.calls).toHaveLength(1)
      expect(core.calls[0]!.headers.accept).toBe('application/json')
      expect(core.calls[0]!.headers['accept-encoding']).toBe('gzip, br')
      expect(core.calls[0]!.headers.via).toBe('1.1 flaggate')
      for (const name of ['x-forwarded-host', 'user-agent', 'accept-language']) expect(core.calls[0]!.headers[name], name).toBeUndefined()
    })
  }

  it('Accept: application/xml on a stale document: the refresh does not drop it, and stale-if-error holds when Core fails', async () => {
    await start('ttl: 1s, staleWhileRevalidate: 30s, staleIfError: 10m')
    isTheDocument(await get(SDK))
    await waitForStale()
    const attacker = await get({ accept: 'application/xml', 'accept-language': 'de', cookie: 'sessionid=x' })
    expect(attacker.headers['x-cache-status']).toBe('UPDATING')
    await core.waitForCalls(2)
    // Core fails from now on: the fleet still gets the document
    mode = 'down'
    await new Promise((resolve) => setTimeout(resolve, 100))
    for (let i = 0; i < 5; i++) isTheDocument(await get(SDK))
    // the refresh was the gateway's own request, not the attacker's
    const refresh = core.calls[1]!
    expect(refresh.headers.accept).toBe('application/json')
    for (const name of ['accept-language', 'cookie']) expect(refresh.headers[name], name).toBeUndefined()
  })
})

describe('a refresh answered with something other than a JSON document never replaces a good one', () => {
  for (const bad of ['html', 'not-found'] as const) {
    it(`Core answers ${bad === 'html' ? '200 text/html' : '404'} to the refresh: the document stays (STALE), and through Core's failure after`, async () => {
      await start('ttl: 1s, staleWhileRevalidate: 30s, staleIfError: 10m')
      isTheDocument(await get(SDK))
      mode = bad
      await waitForStale()
      const first = await get(SDK)
      isTheDocument(first)
      await core.waitForCalls(2)
      await new Promise((resolve) => setTimeout(resolve, 100))
      // the refresh's answer went nowhere: every client still gets the document
      for (let i = 0; i < 5; i++) {
        const r = await get(SDK)
        isTheDocument(r)
        expect(['UPDATING', 'STALE']).toContain(r.headers['x-cache-status'])
      }
      mode = 'down'
      isTheDocument(await get(SDK))
    })
  }
})

describe('Core refusing the key on a refresh still drops the document', () => {
  it('a revoked key (403) stops being served', async () => {
    await start('ttl: 1s, staleWhileRevalidate: 30s, staleIfError: 10m')
    isTheDocument(await get(SDK))
    mode = 'revoked'
    await waitForStale()
    isTheDocument(await get(SDK))
    await core.waitForCalls(2)
    await new Promise((resolve) => setTimeout(resolve, 100))
    expect((await get(SDK)).status).toBe(403)
  })
})
