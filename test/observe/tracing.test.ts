/**
 * Issue 26, "No tracing": `traceparent` passed through to Core but the gateway emitted no spans,
 * and Core never saw the request id. With `tracing: { otlp, sampleRatio }` each request is a
 * SERVER span (exported over OTLP/HTTP to a fake collector here) carrying the gateway's decision,
 * route, limit, cache status, breaker state and upstream latency; an incoming `traceparent` is
 * its parent and Core receives one naming it. Without the section nothing changes and no
 * `traceparent` is invented.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { startRecordingUpstream, type RecordingUpstream } from '../support/recording-upstream.js'
import { startFakeCollector, type FakeCollector } from '../support/fake-otlp-collector.js'
import { mkdtempSync, readFileSync, existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { policyYaml, spawnGateway, startTestGateway, type TestGateway } from '../support/gateway.js'
import { raw } from '../support/http.js'
import { redactKey } from '../../src/shared/redact.js'
import { loadPolicy } from '../../src/policy/load.js'
import { BASE_POLICY, errorsOf } from '../support/policy-errors.js'

const KEY = 'dev_client_key'
const CLIENT_TRACE = '0af7651916cd43dd8448eb211c80319c'
const CLIENT_SPAN = 'b7ad6b7169203331'
const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-(0[01])$/

const ROUTES = `  - name: environment-document
    match: { methods: [GET], path: /api/v1/environment-document/ }
    upstream: core
    cache: { ttl: 60s }
  - name: flags
    match: { methods: [GET], path: /api/v1/flags/ }
    upstream: core
    limit: { by: environmentKey, rate: 1/h, burst: 1 }
  - name: default
    match: { pathPrefix: / }
    upstream: core`

let core: RecordingUpstream
let collector: FakeCollector
let gw: TestGateway | undefined

beforeAll(async () => { core = await startRecordingUpstream(); collector = await startFakeCollector() })
afterAll(async () => { await core.close(); await collector.close() })
afterEach(async () => { await gw?.close(); gw = undefined; core.reset(); collector.spans.length = 0; collector.posts.length = 0 })

async function gateway (tracing: string | undefined): Promise<TestGateway> {
  const extra = `breakers:\n  core: { errorRate: { above: 50% } }\n${tracing === undefined ? '' : `tracing: ${tracing}\n`}`
  gw = await startTestGateway(policyYaml({ coreUrl: core.url, routes: ROUTES, extra }), { watch: false })
  return gw
}

describe('the policy section', () => {
  it('needs an http(s) collector URL and a ratio between 0 and 1; sampleRatio defaults to 1', () => {
    const errors = errorsOf(BASE_POLICY + 'tracing: { otlp: "otel-collector:4318", sampleRatio: 2 }\n')
    expect(errors).toHaveLength(2)
    expect(errors[0]).toMatch(/^p\.yaml:7:\d+: tracing\.otlp: .*must be an absolute http:\/\/ or https:\/\/ URL$/)
    expect(errors[1]).toMatch(/^p\.yaml:7:\d+: tracing\.sampleRatio: .*must be between 0 and 1$/)
    expect(errorsOf(BASE_POLICY + 'tracing: { sampleRatio: 0.1 }\n')).toHaveLength(1)
    const r = loadPolicy('p.yaml', BASE_POLICY + 'tracing: { otlp: http://collector:4318 }\n', {})
    expect(r.ok && r.policy.data.tracing).toEqual({ otlp: 'http://collector:4318', sampleRatio: 1 })
  })
})

describe('tracing on (sampleRatio 1)', () => {
  it('continues the client\'s trace: one SERVER span whose parent is the caller, Core gets a traceparent naming it and the request id', async () => {
    const g = await gateway(`{ otlp: "${collector.url}", sampleRatio: 1 }`)
    const r = await raw(g.url, '/api/v1/identities/?identifier=alice', { headers: { 'x-environment-key': KEY, traceparent: `00-${CLIENT_TRACE}-${CLIENT_SPAN}-01`, tracestate: 'vendor=1', 'x-request-id': 'trace-req-1' } })
    expect(r.status).toBe(200)
    await g.close(); gw = undefined // the last batch leaves on shutdown

    const [span] = await collector.waitForSpans(1)
    expect(collector.posts.every((p) => p === '/v1/traces')).toBe(true)
    expect(span).toMatchObject({ traceId: CLIENT_TRACE, parentSpanId: CLIENT_SPAN, kind: 2, name: 'GET default', statusCode: 0 })
    expect(span!.resource).toMatchObject({ 'service.name': 'flaggate' })
    expect(span!.attributes).toMatchObject({
      'http.request.method': 'GET',
      'http.response.status_code': 200,
      'url.path': '/api/v1/identities/',
      'client.address': '127.0.0.1',
      'flaggate.route': 'default',
      'flaggate.decision': 'allowed',
      'flaggate.upstream': 'core',
      'flaggate.breaker.state': 'closed',
      'flaggate.request_id': 'trace-req-1',
      'flaggate.environment_key': redactKey(KEY)
    })
    expect(span!.attributes['flaggate.upstream.latency_ms']).toBeGreaterThanOrEqual(0)

    // Core: the same trace, our span as its parent, sampled; the request id as the client gave it
    expect(core.calls).toHaveLength(1)
    const sent = TRACEPARENT.exec(String(core.calls[0]!.headers.traceparent))
    expect(sent?.slice(1)).toEqual([CLIENT_TRACE, span!.spanId, '01'])
    expect(core.calls[0]!.headers['x-request-id']).toBe('trace-req-1')
    expect(core.calls[0]!.headers.tracestate).toBe('vendor=1')
  })

  it('a malformed traceparent starts a new trace, and its tracestate does not reach Core', async () => {
    const g = await gateway(`{ otlp: "${collector.url}", sampleRatio: 1 }`)
    expect((await raw(g.url, '/api/v1/traits/', { headers: { traceparent: '00-zz-yy-01', tracestate: 'vendor=1' } })).status).toBe(200)
    await g.close(); gw = undefined
    const [span] = await collector.waitForSpans(1)
    expect(span!.parentSpanId).toBe('')
    expect(core.calls[0]!.headers.traceparent).toBe(`00-${span!.traceId}-${span!.spanId}-01`)
    expect(core.calls[0]!.headers.tracestate).toBeUndefined()
  })

  it('starts a trace when none came in, and names the decision, limit and cache status of requests the gateway answered itself', async () => {
    const g = await gateway(`{ otlp: "${collector.url}/", sampleRatio: 1 }`)
    const doc = '/api/v1/environment-document/'
    expect((await raw(g.url, doc, { headers: { 'x-environment-key': KEY, 'x-request-id': 'miss' } })).status).toBe(200)
    expect((await raw(g.url, doc, { headers: { 'x-environment-key': KEY, 'x-request-id': 'hit' } })).status).toBe(200)
    expect((await raw(g.url, '/api/v1/flags/', { headers: { 'x-environment-key': KEY, 'x-request-id': 'first' } })).status).toBe(200)
    expect((await raw(g.url, '/api/v1/flags/', { headers: { 'x-environment-key': KEY, 'x-request-id': 'limited' } })).status).toBe(429)
    expect((await raw(g.url, '/api/v1/a%2Fb/', { headers: { 'x-request-id': 'bad' } })).status).toBe(400)
    await g.close(); gw = undefined

    const spans = await collector.waitForSpans(5)
    const by = (id: string) => spans.find((s) => s.attributes['flaggate.request_id'] === id)!
    expect(by('miss').attributes).toMatchObject({ 'flaggate.decision': 'allowed', 'flaggate.cache.status': 'MISS', 'flaggate.upstream': 'core' })
    expect(by('hit').attributes).toMatchObject({ 'flaggate.decision': 'cached', 'flaggate.cache.status': 'HIT', 'flaggate.route': 'environment-document' })
    expect(by('hit').attributes['flaggate.upstream.latency_ms']).toBeUndefined()
    expect(by('limited').attributes).toMatchObject({ 'flaggate.decision': 'limited', 'flaggate.limit': 'flags', 'http.response.status_code': 429, 'flaggate.upstream': 'none' })
    expect(by('bad').attributes).toMatchObject({ 'http.response.status_code': 400, 'flaggate.route': 'none' })
    for (const s of spans) expect(s.parentSpanId).toBe('')

    // the cache fill and the proxied flags request each carry their own request's span
    expect(core.calls).toHaveLength(2)
    for (const call of core.calls) {
      const [, traceId, spanId] = TRACEPARENT.exec(String(call.headers.traceparent))!
      const id = String(call.headers['x-request-id'])
      expect([by(id).traceId, by(id).spanId]).toEqual([traceId, spanId])
    }
    expect(core.calls.map((c) => c.headers['x-request-id']).sort()).toEqual(['first', 'miss'])
  })

  it('a 5xx from Core is an error span', async () => {
    core.respond = (_call, res) => { res.writeHead(503, { 'content-type': 'application/json' }).end('{}') }
    try {
      const g = await gateway(`{ otlp: "${collector.url}", sampleRatio: 1 }`)
      expect((await raw(g.url, '/api/v1/traits/', { headers: { 'x-environment-key': KEY } })).status).toBe(503)
      await g.close(); gw = undefined
      const [span] = await collector.waitForSpans(1)
      expect(span!.statusCode).toBe(2)
      expect(span!.attributes).toMatchObject({ 'error.type': '503', 'http.response.status_code': 503 })
    } finally {
      core.respond = (_call, res) => { res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}') }
    }
  })
})

describe('a collector that cannot be reached', () => {
  it('costs the requests nothing: they are answered, and the gateway warns that spans were dropped', { timeout: 90_000 }, async () => {
    const down = await startFakeCollector()
    await down.close() // its port now refuses connections
    const g = await gateway(`{ otlp: "${down.url}", sampleRatio: 1 }`)
    for (let i = 0; i < 3; i++) expect((await raw(g.url, '/api/v1/traits/')).status).toBe(200)
    // the batch leaves within 5 s; the exporter retries it (with backoff, within its 10 s timeout) before giving up
    const warnedOf = () => g.logs.lines.filter((l) => l.msg === 'trace export failed: spans dropped (warned at most once a minute)')
    const deadline = Date.now() + 60_000
    while (warnedOf().length === 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 200))
    const warned = warnedOf()
    expect(warned).toHaveLength(1)
    expect(warned[0]).toMatchObject({ url: `${down.url}/v1/traces`, spans: 3 })
  })
})

describe('sampling', () => {
  it('sampleRatio 0 exports nothing, yet Core still gets a traceparent (not sampled) in the client\'s trace', async () => {
    const g = await gateway(`{ otlp: "${collector.url}", sampleRatio: 0 }`)
    for (let i = 0; i < 5; i++) {
      expect((await raw(g.url, '/api/v1/traits/', { headers: { 'x-environment-key': KEY, traceparent: `00-${CLIENT_TRACE}-${CLIENT_SPAN}-01` } })).status).toBe(200)
    }
    await g.close(); gw = undefined
    expect(collector.spans).toHaveLength(0)
    expect(collector.posts).toHaveLength(0)
    for (const call of core.calls) {
      const m = TRACEPARENT.exec(String(call.headers.traceparent))
      expect(m?.[1]).toBe(CLIENT_TRACE)
      expect(m?.[2]).not.toBe(CLIENT_SPAN)
      expect(m?.[3]).toBe('00')
    }
  })

  it('a reload changes sampleRatio at once; a new collector URL waits for a restart', async () => {
    const { writeFileSync } = await import('node:fs')
    const g = await gateway(`{ otlp: "${collector.url}", sampleRatio: 0 }`)
    expect((await raw(g.url, '/api/v1/traits/', { headers: { 'x-request-id': 'before' } })).status).toBe(200)
    const yaml = (tracing: string) => policyYaml({ coreUrl: core.url, routes: ROUTES, extra: `breakers:\n  core: { errorRate: { above: 50% } }\ntracing: ${tracing}\n` })
    writeFileSync(g.file, yaml(`{ otlp: "${collector.url}", sampleRatio: 1 }`))
    expect(g.reload()).toMatchObject({ ok: true, restartRequired: [] })
    expect((await raw(g.url, '/api/v1/traits/', { headers: { 'x-request-id': 'after' } })).status).toBe(200)
    writeFileSync(g.file, yaml('{ otlp: "http://127.0.0.1:9/", sampleRatio: 1 }'))
    expect(g.reload()).toMatchObject({ ok: true, restartRequired: ['tracing'] })
    await g.close(); gw = undefined
    const spans = await collector.waitForSpans(1)
    expect(spans.map((s) => s.attributes['flaggate.request_id'])).toEqual(['after'])
  })
})

describe('tracing off (no section)', () => {
  it('invents no traceparent, passes the client\'s as it came, and sends Core the request id', async () => {
    const g = await gateway(undefined)
    expect((await raw(g.url, '/api/v1/traits/', { headers: { 'x-environment-key': KEY } })).status).toBe(200)
    const given = `00-${CLIENT_TRACE}-${CLIENT_SPAN}-01`
    expect((await raw(g.url, '/api/v1/traits/', { headers: { 'x-environment-key': KEY, traceparent: given, tracestate: 'vendor=1', 'x-request-id': 'mine' } })).status).toBe(200)
    await g.close(); gw = undefined
    expect(core.calls).toHaveLength(2)
    expect(core.calls[0]!.headers.traceparent).toBeUndefined()
    // the id the gateway gave the request (its access log's reqId)
    const logged = g.logs.lines.filter((l) => l.msg === 'request').map((l) => l.reqId)
    expect(core.calls[0]!.headers['x-request-id']).toBe(logged[0])
    expect(core.calls[1]!.headers).toMatchObject({ traceparent: given, tracestate: 'vendor=1', 'x-request-id': 'mine' })
    expect(collector.posts).toHaveLength(0)
  })
})

describe('free when off', () => {
  // a gateway process whose module loads are recorded: OpenTelemetry is loaded only for a policy with `tracing`
  async function loadedOtel (tracing: string | undefined): Promise<string[]> {
    const log = join(mkdtempSync(join(tmpdir(), 'flaggate-imports-')), 'imports.log')
    const hook = fileURLToPath(new URL('../support/record-imports.mjs', import.meta.url))
    const extra = tracing === undefined ? '' : `tracing: ${tracing}\n`
    const g = await spawnGateway(policyYaml({ coreUrl: core.url, routes: ROUTES, extra }), { NODE_OPTIONS: `--import ${hook}`, RECORD_IMPORTS_FILE: log, RECORD_IMPORTS_MATCH: '/@opentelemetry/' })
    try {
      expect((await raw(g.url, '/api/v1/traits/')).status).toBe(200)
    } finally {
      await g.stop()
    }
    return existsSync(log) ? readFileSync(log, 'utf8').split('\n').filter((l) => l !== '') : []
  }

  it('without the section no OpenTelemetry module is ever loaded; with it they are', async () => {
    expect(await loadedOtel(undefined)).toEqual([])
    const on = await loadedOtel(`{ otlp: "${collector.url}", sampleRatio: 0 }`)
    expect(on.some((u) => u.includes('/@opentelemetry/sdk-trace/'))).toBe(true)
  })
})
