/**
 * Every upstream attempt goes through the gate and reports its outcome exactly once; a shed
 * request never reaches the upstream. Driven through a real gateway whose client gets a
 * recording gate (the breaker room will set `client.gate` the same way).
 */
import { createServer } from 'node:http'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { GatewayError } from '../../src/errors.js'
import type { Admission, UpstreamGate, UpstreamOutcome } from '../../src/upstream/index.js'
import { policyYaml, startTestGateway, type TestGateway } from '../support/gateway.js'
import { raw } from '../support/http.js'
import { startRecordingUpstream, type RecordingUpstream } from '../support/recording-upstream.js'
import { cachedRoutes } from '../cache/support.js'

const KEY = 'ser.gate_key'

interface Attempt { upstream: string; route: string; outcomes: UpstreamOutcome[] }

class RecordingGate implements UpstreamGate {
  readonly attempts: Attempt[] = []
  shed = false
  open = false
  admit (upstream: string, route: string): Admission | GatewayError {
    if (this.shed) return new GatewayError('FLAGGATE_UPSTREAM_OVERLOADED', undefined, { 'retry-after': '7' })
    const a: Attempt = { upstream, route, outcomes: [] }
    this.attempts.push(a)
    return { finish: (o) => { a.outcomes.push(o) } }
  }
  isOpen (): boolean { return this.open }
}

/** A port nothing listens on. */
async function closedPort (): Promise<number> {
  const s = createServer()
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve))
  const { port } = s.address() as { port: number }
  await new Promise<void>((resolve) => s.close(() => resolve()))
  return port
}

let up: RecordingUpstream
let gw: TestGateway
let deadGw: TestGateway
const gate = new RecordingGate()
const deadGate = new RecordingGate()

beforeAll(async () => {
  up = await startRecordingUpstream()
  up.respond = (call, res) => {
    if (call.rawPath.startsWith('/hang')) return // never answered: the upstream timeout fires
    // a fill carries only allow-listed headers: the key is how a test asks for a failure there
    const status = call.rawPath.startsWith('/fail') || String(call.headers['x-environment-key']).endsWith('_fail') ? 500 : 200
    res.writeHead(status, { 'content-type': 'application/json' }).end(status === 200 ? '{"id":1}' : '{"detail":"boom"}')
  }
  gw = await startTestGateway(policyYaml({ coreUrl: up.url, coreTimeout: '1s', routes: cachedRoutes({ ttl: '30s' }) }), { watch: false })
  gw.client.gate = gate
  deadGw = await startTestGateway(policyYaml({ coreUrl: `http://127.0.0.1:${await closedPort()}`, routes: cachedRoutes({ ttl: '30s' }) }), { watch: false })
  deadGw.client.gate = deadGate
})
afterAll(async () => { await gw?.close(); await deadGw?.close(); await up?.close() })
beforeEach(() => { gate.attempts.length = 0; deadGate.attempts.length = 0; gate.shed = false; up.reset() })

const ENV_DOC = '/api/v1/environment-document/'
let n = 0
/** a fresh key per cache request, so each one is a MISS that fills */
const freshKey = (): string => `${KEY}_${++n}`

describe('the gate sees every attempt once, with its outcome', () => {
  it.each([
    ['proxy', 'success', '/ok', {}, 200, { kind: 'response', status: 200 }],
    ['proxy', '5xx', '/fail', {}, 500, { kind: 'response', status: 500 }],
    ['proxy', 'timeout', '/hang', {}, 504, { kind: 'timeout' }],
    ['cache fill', 'success', ENV_DOC, {}, 200, { kind: 'response', status: 200 }],
    ['cache fill', '5xx', ENV_DOC, { fail: true }, 500, { kind: 'response', status: 500 }]
  ] as const)('%s, %s', async (kind, _name, path, headers, status, outcome) => {
    const key = freshKey() + ('fail' in headers ? '_fail' : '')
    const r = await raw(gw.url, path, { headers: kind === 'cache fill' ? { 'x-environment-key': key } : {} })
    expect(r.status).toBe(status)
    expect(gate.attempts).toHaveLength(1)
    expect(gate.attempts[0]).toMatchObject({ upstream: 'core', route: kind === 'cache fill' ? 'environment-document' : 'default' })
    expect(gate.attempts[0]!.outcomes).toHaveLength(1)
    expect(gate.attempts[0]!.outcomes[0]).toMatchObject(outcome)
    expect((gate.attempts[0]!.outcomes[0] as { latencyMs: number }).latencyMs).toBeGreaterThanOrEqual(0)
  })

  it('cache fill, timeout', async () => {
    const r = await raw(gw.url, '/hang' + ENV_DOC, { headers: { 'x-environment-key': freshKey() } })
    expect(r.status).toBe(504)
    expect(gate.attempts.map((a) => a.outcomes.map((o) => o.kind))).toEqual([['timeout']])
  })

  it.each([['proxy', '/ok'], ['cache fill', ENV_DOC]])('%s, unreachable', async (_kind, path) => {
    const r = await raw(deadGw.url, path, { headers: { 'x-environment-key': freshKey() } })
    expect(r.status).toBe(502)
    expect(r.headers['x-flaggate-upstream']).toBe('none')
    expect(deadGate.attempts.map((a) => a.outcomes.map((o) => o.kind))).toEqual([['unreachable']])
  })

  it.each([['proxy', '/ok'], ['cache fill', ENV_DOC]])('%s, shed: answered 503 without contacting the upstream', async (_kind, path) => {
    gate.shed = true
    const r = await raw(gw.url, path, { headers: { 'x-environment-key': freshKey() } })
    expect(r.status).toBe(503)
    expect(r.headers['retry-after']).toBe('7')
    expect(JSON.parse(r.body.toString())).toMatchObject({ code: 'FLAGGATE_UPSTREAM_OVERLOADED' })
    expect(up.calls).toHaveLength(0)
  })

  it('an open gate makes the cache serve stale instead of calling the upstream', async () => {
    const g = await startTestGateway(policyYaml({ coreUrl: up.url, routes: cachedRoutes({ ttl: '1s', staleIfError: '10m' }) }), { watch: false })
    const open = new RecordingGate()
    g.client.gate = open
    try {
      const key = freshKey()
      expect((await raw(g.url, ENV_DOC, { headers: { 'x-environment-key': key } })).headers['x-cache-status']).toBe('MISS')
      open.open = true
      up.reset()
      // once the ttl has passed, the document is stale: served as such, Core not called
      await expect.poll(async () => (await raw(g.url, ENV_DOC, { headers: { 'x-environment-key': key } })).headers['x-cache-status'], { timeout: 10_000, interval: 100 }).toBe('STALE')
      expect(up.calls).toHaveLength(0)
    } finally { await g.close() }
  })
})

describe('flaggate_upstream_request_duration_seconds', () => {
  async function observed (g: TestGateway, route: string): Promise<number> {
    const m = await g.metrics.upstreamDuration.get()
    return m.values.find((v) => v.metricName === 'flaggate_upstream_request_duration_seconds_count' && v.labels.route === route && v.labels.upstream === 'core')?.value ?? 0
  }

  it('observes a proxied request once, a cache fill once, and a cache hit not at all', async () => {
    const g = await startTestGateway(policyYaml({ coreUrl: up.url, routes: cachedRoutes({ ttl: '30s' }) }), { watch: false })
    try {
      await raw(g.url, '/ok')
      expect(await observed(g, 'default')).toBe(1)
      const key = freshKey()
      expect((await raw(g.url, ENV_DOC, { headers: { 'x-environment-key': key } })).headers['x-cache-status']).toBe('MISS')
      expect(await observed(g, 'environment-document')).toBe(1)
      expect((await raw(g.url, ENV_DOC, { headers: { 'x-environment-key': key } })).headers['x-cache-status']).toBe('HIT')
      expect(await observed(g, 'environment-document')).toBe(1)
      // a cached route's BYPASS (no key) is proxied: observed once too
      expect((await raw(g.url, ENV_DOC)).headers['x-cache-status']).toBe('BYPASS')
      expect(await observed(g, 'environment-document')).toBe(2)
    } finally { await g.close() }
  })
})
