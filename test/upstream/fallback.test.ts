/**
 * The generic fallback of `forward()`: with `gw.edge.fallback` set (the edge step sets it;
 * here a test step sets it, driving the real gateway), a GET or HEAD that fails on the first
 * upstream is sent once to the fallback; other methods never are.
 */
import fp from 'fastify-plugin'
import pino from 'pino'
import type { FastifyInstance } from 'fastify'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { buildPublicApp } from '../../src/app.js'
import { GatewayError } from '../../src/errors.js'
import { createMetrics } from '../../src/metrics/registry.js'
import { PolicyStore } from '../../src/policy/store.js'
import { UpstreamClient, type Admission, type UpstreamGate, type UpstreamOutcome } from '../../src/upstream/index.js'
import { policyYaml, tempPolicyFile } from '../support/gateway.js'
import { raw } from '../support/http.js'
import { startRecordingUpstream, type RecordingUpstream } from '../support/recording-upstream.js'

class RecordingGate implements UpstreamGate {
  readonly attempts: Array<{ upstream: string; outcomes: UpstreamOutcome[] }> = []
  admit (upstream: string): Admission | GatewayError {
    const a = { upstream, outcomes: [] as UpstreamOutcome[] }
    this.attempts.push(a)
    return { finish: (o) => { a.outcomes.push(o) } }
  }
  isOpen (): boolean { return false }
}

/** Test edge step: requests with `x-test-edge` go to edge first; with `x-test-edge: 1`, core is the fallback. */
const viaEdge = fp(async (scope: FastifyInstance) => {
  scope.addHook('onRequest', (request, _reply, done) => {
    const mode = request.headers['x-test-edge']
    const gw = request.gateway
    if (mode !== undefined) gw.edge = { upstream: 'edge', url: gw.routeUrl, fallback: mode === '1' ? 'core' : undefined }
    done()
  })
})

let edge: RecordingUpstream
let core: RecordingUpstream
let app: FastifyInstance
let client: UpstreamClient
let url: string
const gate = new RecordingGate()
let edgeMode: 'ok' | '502' | 'hang' | 'reset' = 'ok'

beforeAll(async () => {
  edge = await startRecordingUpstream((_c, res) => {
    if (edgeMode === 'hang') return
    if (edgeMode === 'reset') { res.socket?.destroy(); return }
    const status = edgeMode === 'ok' ? 200 : 502
    res.writeHead(status, { 'content-type': 'text/plain' }).end(`edge ${status}`)
  })
  core = await startRecordingUpstream((_c, res) => { res.writeHead(200, { 'content-type': 'text/plain' }).end('core 200') })
  const yaml = policyYaml({ coreUrl: core.url, edgeUrl: edge.url, coreTimeout: '10s' })
    .replace(`edge: { url: "${edge.url}", timeout: 5s }`, `edge: { url: "${edge.url}", timeout: 1s }`)
  const store = PolicyStore.open(tempPolicyFile(yaml), process.env)
  const metrics = createMetrics({ defaultMetrics: false })
  const logger = pino({ level: 'silent' })
  client = new UpstreamClient({ metrics, logger, gate })
  client.configure(store.current)
  app = await buildPublicApp({ store, client, metrics, logger, lifecycle: { draining: false }, steps: { edge: { plugin: viaEdge as never, opts: {} } } })
  await app.listen({ host: '127.0.0.1', port: 0 })
  url = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`
})
afterAll(async () => { await app?.close(); await client?.close(true); await edge?.close(); await core?.close() })
beforeEach(() => { edge.reset(); core.reset(); gate.attempts.length = 0; edgeMode = 'ok' })

const EDGE = { 'x-test-edge': '1' }

describe('fallback upstream', () => {
  it('the first upstream answers: no fallback, X-Flaggate-Upstream names it', async () => {
    const r = await raw(url, '/api/v1/flags/?x=1', { headers: EDGE })
    expect([r.status, r.body.toString(), r.headers['x-flaggate-upstream']]).toEqual([200, 'edge 200', 'edge'])
    expect(core.calls).toHaveLength(0)
    expect(edge.calls[0]!.rawPath).toBe('/api/v1/flags/?x=1')
  })

  it.each([['a 5xx', '502'], ['a timeout', 'hang'], ['a connection error', 'reset']] as const)('%s on a GET is retried once on the fallback, which answers', async (_n, mode) => {
    edgeMode = mode
    const r = await raw(url, '/api/v1/flags/?x=1', { headers: EDGE })
    expect([r.status, r.body.toString(), r.headers['x-flaggate-upstream']]).toEqual([200, 'core 200', 'core'])
    expect(core.calls.map((c) => [c.method, c.rawPath])).toEqual([['GET', '/api/v1/flags/?x=1']])
    // each attempt admitted and finished once: the first with its failure, the fallback with its answer
    expect(gate.attempts.map((a) => [a.upstream, a.outcomes.map((o) => o.kind)])).toEqual([['edge', [mode === '502' ? 'response' : mode === 'hang' ? 'timeout' : 'unreachable']], ['core', ['response']]])
  })

  it('HEAD falls back too', async () => {
    edgeMode = '502'
    const r = await raw(url, '/api/v1/flags/', { method: 'HEAD', headers: EDGE })
    expect([r.status, r.headers['x-flaggate-upstream']]).toEqual([200, 'core'])
    expect(core.calls.map((c) => c.method)).toEqual(['HEAD'])
  })

  it.each(['POST', 'PUT', 'DELETE'])('a %s is never retried: the first upstream\'s answer stands', async (method) => {
    edgeMode = '502'
    const r = await raw(url, '/api/v1/identities/', { method, headers: { ...EDGE, 'content-type': 'application/json', 'content-length': '19' }, body: '{"identifier":"u1"}' })
    expect([r.status, r.body.toString(), r.headers['x-flaggate-upstream']]).toEqual([502, 'edge 502', 'edge'])
    expect(core.calls).toHaveLength(0)
  })

  it('without a fallback, a 5xx is passed through as it is, sent once (no 503/5xx retries)', async () => {
    edgeMode = '502'
    const r = await raw(url, '/api/v1/flags/', { headers: { 'x-test-edge': 'alone' } })
    expect([r.status, r.body.toString(), r.headers['x-flaggate-upstream']]).toEqual([502, 'edge 502', 'edge'])
    expect(edge.calls).toHaveLength(1)
    expect(core.calls).toHaveLength(0)
  })
})
