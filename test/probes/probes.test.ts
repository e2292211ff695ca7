/**
 * Synthetic probes through the gateway's own public listener, against the fake Core: success,
 * failure when Core breaks (while /healthz stays 200), recovery, reload and close.
 */
import { writeFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { policyYaml } from '../support/gateway.js'
import { json, raw } from '../support/http.js'
import { metricsOf, scrapeMetrics } from '../support/metrics.js'
import type { ProbeStatus } from '../../src/probes/runner.js'
import { VERSION } from '../../src/gateway.js'
import { useGateway } from '../support/use-gateway.js'

const PROBES = `probes:
  - { name: flags, path: /api/v1/flags/, key: dev_client_key, interval: 150ms }
  - { name: environment-document, path: /api/v1/environment-document/, key: ser.dev_server_key, interval: 150ms }
`
const t = useGateway({ policy: (url) => policyYaml({ coreUrl: url, extra: PROBES }) })

async function probes (): Promise<ProbeStatus[]> {
  return (json(await raw(t.gw.adminUrl, '/admin/status')) as { probes: ProbeStatus[] }).probes
}

async function until<T> (what: string, read: () => Promise<T>, ok: (v: T) => boolean, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let last: T
  do {
    last = await read()
    if (ok(last)) return last
    await new Promise((r) => setTimeout(r, 50))
  } while (Date.now() < deadline)
  throw new Error(`${what}: still ${JSON.stringify(last)}`)
}

const metrics = async (): Promise<string> => (await scrapeMetrics(t.gw.adminUrl)).text

describe('synthetic probes', () => {
  it('call the public listener as an SDK would and report success, latency and metrics', async () => {
    const list = await until('both probes ok', probes, (l) => l.length === 2 && l.every((p) => p.ok === true))
    for (const p of list) {
      expect(p).toMatchObject({ ok: true, status: 200, lastError: null, consecutiveFailures: 0, intervalMs: 150 })
      expect(p.latencyMs).toBeGreaterThan(0)
      expect(Date.parse(p.lastAt!)).not.toBeNaN()
    }
    expect(list.map((p) => p.key)).toEqual([expect.stringMatching(/^dev_…[0-9a-f]{8}$/), expect.stringMatching(/^ser\.…[0-9a-f]{8}$/)])

    // they went through the gateway (access log, request metrics) to Core, recognisable by User-Agent
    const seen = t.upstream.requests.filter((r) => r.headers['user-agent'] === `flaggate-probe/${VERSION}`)
    expect(seen.some((r) => r.path === '/api/v1/flags/' && r.headers['x-environment-key'] === 'dev_client_key')).toBe(true)
    expect(seen.some((r) => r.path === '/api/v1/environment-document/' && r.headers['x-environment-key'] === 'ser.dev_server_key')).toBe(true)
    expect(seen.every((r) => String(r.headers.via).includes('flaggate'))).toBe(true)
    expect(t.gw.logs.lines.some((l) => l.msg === 'request' && l.route === 'flags' && l.status === 200)).toBe(true)

    const text = await metrics()
    expect(text).toMatch(/^flaggate_probe_success\{probe="flags"\} 1$/m)
    expect(text).toMatch(/^flaggate_probe_success\{probe="environment-document"\} 1$/m)
    const duration = metricsOf(text).value('flaggate_probe_duration_seconds', { probe: 'flags' })
    expect(duration).toBeGreaterThan(0)
    expect(duration).toBeLessThan(20)
  })

  it('report failure when Core breaks, while /healthz stays 200, and recover when it is back', async () => {
    t.upstream.db.down = true
    try {
      const failing = await until('both probes failing', probes, (l) => l.every((p) => p.ok === false))
      for (const p of failing) {
        expect(p.status).toBe(502)
        expect(p.lastError).toBe('HTTP 502 FLAGGATE_UPSTREAM_UNREACHABLE')
        expect(p.consecutiveFailures).toBeGreaterThanOrEqual(1)
      }
      // liveness never depends on the upstream: an orchestrator must not restart a healthy gateway
      for (const url of [t.gw.url, t.gw.adminUrl]) {
        const h = await raw(url, '/healthz')
        expect(h.status).toBe(200)
        expect(json(h)).toEqual({ status: 'ok' })
      }
      expect(await metrics()).toMatch(/^flaggate_probe_success\{probe="flags"\} 0$/m)
      expect(t.gw.logs.lines.some((l) => l.msg === 'probe failing: clients calling this endpoint get errors' && l.probe === 'flags' && l.status === 502)).toBe(true)

      // a database that errors is a failure too, named by Core's status
      t.upstream.db.down = false
      t.upstream.db.failRate = 1
      const erroring = await until('flags probe sees the 500', probes, (l) => l.find((p) => p.name === 'flags')?.status === 500)
      expect(erroring.find((p) => p.name === 'flags')).toMatchObject({ ok: false, lastError: 'HTTP 500 from core' })
    } finally {
      t.upstream.db.down = false
      t.upstream.db.failRate = 0
    }
    const back = await until('both probes ok again', probes, (l) => l.every((p) => p.ok === true))
    expect(back.every((p) => p.consecutiveFailures === 0)).toBe(true)
    expect(await metrics()).toMatch(/^flaggate_probe_success\{probe="flags"\} 1$/m)
    expect(t.gw.logs.lines.some((l) => l.msg === 'probe recovered' && l.probe === 'flags')).toBe(true)
  })

  it('a wrong key is a failing probe whose error and logs never show the key', async () => {
    const secret = 'ser.not_a_real_key_0123456789'
    writeFileSync(t.gw.file, policyYaml({ coreUrl: t.upstream.url, extra: `probes:\n  - { name: bad-key, path: /api/v1/environment-document/, key: ${secret}, interval: 150ms }\n` }))
    expect(t.gw.reload().ok).toBe(true)
    const list = await until('bad-key probe failing', probes, (l) => l.length === 1 && l[0]!.ok === false)
    expect(list[0]).toMatchObject({ name: 'bad-key', status: 403, lastError: 'HTTP 403 from core' })
    // the removed probes' series are gone, the new one is there
    const text = await metrics()
    expect(text).not.toMatch(/flaggate_probe_success\{probe="flags"\}/)
    expect(text).toMatch(/^flaggate_probe_success\{probe="bad-key"\} 0$/m)
    for (const k of [secret, 'dev_client_key', 'ser.dev_server_key']) {
      expect(text).not.toContain(k)
      expect(JSON.stringify(t.gw.logs.lines)).not.toContain(k)
      expect(JSON.stringify(list)).not.toContain(k)
    }
  })

  it('a reload without probes clears their timers: no probe request reaches Core afterwards', async () => {
    writeFileSync(t.gw.file, policyYaml({ coreUrl: t.upstream.url }))
    expect(t.gw.reload().ok).toBe(true)
    expect(await probes()).toEqual([])
    const probeRequests = (): number => t.upstream.requests.filter((r) => r.headers['user-agent'] === `flaggate-probe/${VERSION}`).length
    const before = probeRequests()
    await new Promise((r) => setTimeout(r, 600)) // four intervals
    expect(probeRequests()).toBe(before)
    // the gateway itself still serves
    expect((await raw(t.gw.url, '/api/v1/flags/', { headers: { 'x-environment-key': 'dev_client_key' } })).status).toBe(200)
    expect(await metrics()).not.toContain('flaggate_probe_success{')
  })
})
