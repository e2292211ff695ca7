/**
 * /metrics after real traffic (allowed, limited, cached, a probe, reloads good and bad) through a
 * gateway sharing the suite's Redis: every metric of SECTION7_METRICS is there, with values that
 * follow from the traffic sent, and no label carries a key.
 */
import { writeFileSync } from 'node:fs'
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest'
import { startFakeCore, type FakeCore } from '../support/fake-flagsmith.js'
import { policyYaml, startTestGateway, type TestGateway } from '../support/gateway.js'
import { json, raw } from '../support/http.js'
import { metricsOf, scrapeMetrics, type Sample } from '../support/metrics.js'
import { PROCESS_METRICS, SECTION7_METRICS } from './metric-names.js'

const ROUTES = `  - name: environment-document
    match: { methods: [GET], path: /api/v1/environment-document/ }
    upstream: core
    limit: { by: environmentKey, rate: 100/s, burst: 100 }
    cache: { ttl: 5m }
  - name: flags
    match: { methods: [GET], path: /api/v1/flags/ }
    upstream: core
    limit: { by: [environmentKey, ip], rate: 1/h, burst: 3 }
  - name: default
    match: { pathPrefix: / }
    upstream: core`
const PROBES = 'probes:\n  - { name: flags, path: /api/v1/flags/, key: prod_client_key, interval: 1h }\n'

let core: FakeCore
let gw: TestGateway
let text: string
let samples: Sample[]
let types: Map<string, string>
let docBytes: number
/** fallbacks counted before Redis was connected (the gateway decides locally until then) */
let fallbacksAtStart: number

/** The one sample of `name` whose labels include `labels`; undefined when there is none. */
function value (name: string, labels: Record<string, string> = {}): number | undefined {
  const found = samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
  if (found.length > 1) throw new Error(`${name} ${JSON.stringify(labels)} matches ${found.length} series`)
  return found[0]?.value
}

beforeAll(async () => {
  core = await startFakeCore()
  // a generous command timeout: on a loaded machine a slow answer would count as a fallback
  const redis = { url: inject('redisUrl'), keyPrefix: `flaggate-test-metrics-${process.pid}-${Date.now()}:`, commandTimeout: '2s' }
  const yaml = policyYaml({ coreUrl: core.url, redis, routes: ROUTES, extra: PROBES })
  gw = await startTestGateway(yaml)
  // the probe's first run, through the public listener, and Redis connected
  for (let i = 0; i < 300; i++) {
    const s = json(await raw(gw.adminUrl, '/admin/status')) as { probes: Array<{ ok: boolean | null }>; store: { healthy: boolean; mode: string } }
    if (s.probes[0]?.ok === true && s.store.healthy && s.store.mode === 'redis') break
    await new Promise((r) => setTimeout(r, 50))
  }
  fallbacksAtStart = (await scrapeMetrics(gw.adminUrl)).value('flaggate_store_fallback_total')
  const client = { 'x-environment-key': 'dev_client_key' }
  const server = { 'x-environment-key': 'ser.dev_server_key' }
  const flags = []
  for (let i = 0; i < 5; i++) flags.push((await raw(gw.url, '/api/v1/flags/', { headers: client })).status)
  expect(flags).toEqual([200, 200, 200, 429, 429])
  const docs = []
  for (let i = 0; i < 4; i++) docs.push(await raw(gw.url, '/api/v1/environment-document/', { headers: server }))
  expect(docs.map((d) => d.headers['x-cache-status'])).toEqual(['MISS', 'HIT', 'HIT', 'HIT'])
  docBytes = docs[0]!.body.length
  // one good reload, one refused
  writeFileSync(gw.file, yaml + '# a comment changes the version\n')
  expect(gw.reload().ok).toBe(true)
  writeFileSync(gw.file, yaml.replace('rate: 1/h', 'rate: fast'))
  expect(gw.reload().ok).toBe(false)

  const res = await raw(gw.adminUrl, '/metrics')
  expect(res.status).toBe(200)
  expect(res.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/)
  text = res.body.toString()
  ;({ types, samples } = metricsOf(text))
})
afterAll(async () => { await gw?.close(); await core?.close() })

describe('/metrics after real traffic', () => {
  it.each(SECTION7_METRICS.map((m) => [m]))('has %s', (name) => {
    expect(types.has(name), `# TYPE ${name}`).toBe(true)
    const own = samples.filter((s) => s.name === name || s.name.startsWith(`${name}_`))
    expect(own.length).toBeGreaterThan(0)
    for (const s of own) expect(Number.isFinite(s.value) && s.value >= 0, `${s.name} ${JSON.stringify(s.labels)} = ${s.value}`).toBe(true)
  })

  it('counts requests by route, decision and status as they were answered', () => {
    expect(value('flaggate_requests_total', { route: 'flags', decision: 'limited', status: '429' })).toBe(2)
    // three from the test, one from the probe (another key, its own bucket)
    expect(value('flaggate_requests_total', { route: 'flags', decision: 'allowed', status: '200' })).toBe(4)
    expect(value('flaggate_requests_total', { route: 'environment-document', decision: 'cached', status: '200' })).toBe(3)
    expect(value('flaggate_requests_total', { route: 'environment-document', decision: 'allowed', status: '200' })).toBe(1)
    expect(value('flaggate_ratelimit_decisions_total', { route: 'flags', result: 'limited' })).toBe(2)
    expect(value('flaggate_ratelimit_decisions_total', { route: 'flags', result: 'allowed' })).toBe(4)
    expect(value('flaggate_ratelimit_decisions_total', { route: 'environment-document', result: 'allowed' })).toBe(4)
  })

  it('has an upstream latency histogram whose buckets add up', () => {
    expect(types.get('flaggate_upstream_request_duration_seconds')).toBe('histogram')
    const labels = { upstream: 'core', route: 'flags' }
    const count = value('flaggate_upstream_request_duration_seconds_count', labels)!
    expect(count).toBe(4) // the 429s never reached Core
    const sum = value('flaggate_upstream_request_duration_seconds_sum', labels)!
    expect(sum).toBeGreaterThan(0)
    expect(sum / count).toBeLessThan(5) // the upstream timeout: no request took longer
    const buckets = samples.filter((s) => s.name === 'flaggate_upstream_request_duration_seconds_bucket' && s.labels.route === 'flags')
    const values = buckets.map((b) => b.value)
    expect(values).toEqual([...values].sort((a, b) => a - b))
    expect(buckets.find((b) => b.labels.le === '+Inf')?.value).toBe(count)
  })

  it('has cache events and bytes that match the documents cached', () => {
    expect(value('flaggate_cache_events_total', { event: 'miss' })).toBe(1)
    expect(value('flaggate_cache_events_total', { event: 'hit' })).toBe(3)
    expect(value('flaggate_cache_events_total', { event: 'store' })).toBe(1)
    const bytes = value('flaggate_cache_bytes')!
    expect(bytes).toBeGreaterThanOrEqual(docBytes)
    expect(bytes).toBeLessThan(docBytes + 64 * 1024)
  })

  it('has policy reloads by result, no Redis fallback, the probe, and the process metrics', () => {
    expect(value('flaggate_policy_reloads_total', { result: 'ok' })).toBe(1)
    expect(value('flaggate_policy_reloads_total', { result: 'error' })).toBe(1)
    expect(value('flaggate_store_fallback_total')).toBe(fallbacksAtStart) // none while Redis was connected
    expect(value('flaggate_probe_success', { probe: 'flags' })).toBe(1)
    const d = value('flaggate_probe_duration_seconds', { probe: 'flags' })!
    expect(d).toBeGreaterThan(0)
    expect(d).toBeLessThan(6)
    for (const m of PROCESS_METRICS) expect(types.has(m), m).toBe(true)
    expect(value('flaggate_process_cpu_seconds_total')).toBeGreaterThan(0)
    expect(value('flaggate_process_resident_memory_bytes')).toBeGreaterThan(10 * 1024 * 1024)
  })

  it('never carries a key in a label', () => {
    for (const key of ['dev_client_key', 'ser.dev_server_key', 'prod_client_key']) expect(text).not.toContain(key)
    const labelNames = new Set(samples.flatMap((s) => Object.keys(s.labels)))
    expect([...labelNames].sort()).not.toContain('key')
  })
})
