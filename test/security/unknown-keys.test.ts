/**
 * Attack 8: random keys reached Core at full rate (60,000 requests with random 256-byte keys →
 * 60,000 Core requests, each a database lookup of a key that does not exist). With `unknownKeys`
 * (on in the shipped policies), one client address gets `burst` distinct keys Core has not
 * accepted, refilled at `rate`; beyond, 429 in our shape. A key Core accepted costs nothing, from
 * the same address too; another address has its own budget. Real sockets, the fake Core counting
 * what reaches it.
 */
import { randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { describe, expect, it, onTestFinished } from 'vitest'
import { parse } from 'yaml'
import { startFakeCore, type FakeCore } from '../support/fake-flagsmith.js'
import { policyYaml, startTestGateway, type TestGateway } from '../support/gateway.js'
import { json, type RawResponse } from '../support/http.js'
import { TRUST_LOOPBACK, from } from './support.js'

const FLAGS = '/api/v1/flags/'
const CLIENT = 'dev_client_key'
const randomKey = (): string => randomBytes(128).toString('hex') // 256 bytes, the longest key the gateway lets in

async function setup (budget = 'unknownKeys: { rate: 5/s, burst: 50 }\n'): Promise<{ core: FakeCore; gw: TestGateway }> {
  const core = await startFakeCore()
  onTestFinished(core.close)
  // the shipped per-key limits: each random key is a new key with a full bucket
  const gw = await startTestGateway(policyYaml({
    coreUrl: core.url,
    server: TRUST_LOOPBACK,
    routes: `  - name: flags
    match: { methods: [GET], path: ${FLAGS} }
    upstream: core
    limit:
      - { by: environmentKey, rate: 1000/s, burst: 5000 }
      - { by: [environmentKey, ip], rate: 20/s, burst: 100 }
  - name: default
    match: { pathPrefix: / }
    upstream: core`,
    extra: budget
  }), { watch: false })
  onTestFinished(gw.close)
  return { core, gw }
}

/** `n` requests with fresh random keys from `ip`, 20 at a time; what came back and how long it took */
async function flood (gw: TestGateway, ip: string, n: number): Promise<{ statuses: number[]; seconds: number; refused?: RawResponse }> {
  const statuses: number[] = []
  let refused: RawResponse | undefined
  const t0 = performance.now()
  for (let i = 0; i < n; i += 20) {
    const batch = await Promise.all(Array.from({ length: Math.min(20, n - i) }, async () => await from(gw.url, FLAGS, ip, { key: randomKey() })))
    statuses.push(...batch.map((r) => r.status))
    refused ??= batch.find((r) => r.status === 429)
  }
  return { statuses, seconds: (performance.now() - t0) / 1000, ...(refused !== undefined ? { refused } : {}) }
}

describe('attack 8: random keys from one address', () => {
  it('200 random keys: Core sees at most burst + rate × t of them, the rest get 429 with Retry-After', async () => {
    const { core, gw } = await setup()
    const { statuses, seconds, refused } = await flood(gw, '198.51.100.7', 200)
    const reached = core.counts(FLAGS)
    // before: 200 of 200
    expect(reached).toBeLessThanOrEqual(50 + Math.ceil(5 * seconds) + 1)
    expect(statuses.filter((s) => s === 401 || s === 403).length).toBe(reached)
    expect(statuses.filter((s) => s === 429).length).toBe(200 - reached)
    if (refused === undefined) throw new Error('no request was refused')
    expect(json(refused)).toMatchObject({ statusCode: 429, code: 'FLAGGATE_RATE_LIMITED' })
    expect(String((json(refused) as { message: string }).message)).toMatch(/unknownKeys/)
    expect(Number(refused.headers['retry-after'])).toBeGreaterThanOrEqual(1)
    expect(refused.headers['content-type']).toMatch(/^application\/json/)
  })

  it('a client with a key Core accepted, from the same address, is unaffected; so is another address', async () => {
    const { core, gw } = await setup()
    expect((await from(gw.url, FLAGS, '198.51.100.7', { key: CLIENT })).status).toBe(200)
    expect((await flood(gw, '198.51.100.7', 120)).statuses).toContain(429)
    for (let i = 0; i < 20; i++) expect((await from(gw.url, FLAGS, '198.51.100.7', { key: CLIENT })).status).toBe(200)
    // another address: its own budget
    const other = await from(gw.url, FLAGS, '203.0.113.5', { key: 'prod_client_key' })
    expect(other.status).toBe(200)
    expect((await from(gw.url, FLAGS, '203.0.113.5', { key: randomKey() })).status).toBe(403)
    expect(core.counts(FLAGS, CLIENT)).toBe(21)
  })

  it('an IPv6 client rotating through its /64 has one budget', async () => {
    const { core, gw } = await setup('unknownKeys: { rate: 1/m, burst: 10 }\n')
    const statuses: number[] = []
    for (let i = 1; i <= 30; i++) statuses.push((await from(gw.url, FLAGS, `2001:db8:0:7::${i.toString(16)}`, { key: randomKey() })).status)
    expect(core.counts(FLAGS)).toBe(10)
    expect(statuses.filter((s) => s === 429).length).toBe(20)
  })

  it('the same wrong key retried spends one token; a policy without unknownKeys has no budget', async () => {
    const { core, gw } = await setup('unknownKeys: { rate: 1/m, burst: 2 }\n')
    const wrong = randomKey()
    for (let i = 0; i < 5; i++) expect((await from(gw.url, FLAGS, '198.51.100.9', { key: wrong })).status).toBe(403)
    expect((await from(gw.url, FLAGS, '198.51.100.9', { key: randomKey() })).status).toBe(403)
    expect((await from(gw.url, FLAGS, '198.51.100.9', { key: randomKey() })).status).toBe(429)
    expect(core.counts(FLAGS)).toBe(6)

    const plain = await setup('')
    const { statuses } = await flood(plain.gw, '198.51.100.7', 60)
    expect(statuses.every((s) => s === 403)).toBe(true)
  })

  it('is on in the shipped policies', () => {
    const configmap = parse(readFileSync('deploy/k8s/configmap.yaml', 'utf8')) as { data: Record<string, string> }
    const shipped = [readFileSync('config/gateway.yaml', 'utf8'), readFileSync('deploy/compose/policy/gateway.yaml', 'utf8'), configmap.data['gateway.yaml']!]
    for (const text of shipped) expect(parse(text)).toMatchObject({ unknownKeys: { rate: '5/s', burst: 50 } })
  })
})
