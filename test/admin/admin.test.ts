import { execFile, spawnSync } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { promisify } from 'node:util'
import { describe, expect, it } from 'vitest'
import { policyYaml, startTestGateway, tempPolicyFile } from '../support/gateway.js'
import { json, raw } from '../support/http.js'
import { useGateway } from '../support/use-gateway.js'

const TOKEN = 'test-admin-token-0123456789'
const t = useGateway({ policy: (url) => policyYaml({ coreUrl: url, adminToken: TOKEN }) })

describe('admin listener', () => {
  it('refuses /admin without the bearer token, or with a wrong one', async () => {
    for (const headers of [{}, { authorization: 'Bearer wrong' }, { authorization: `Basic ${TOKEN}` }, { authorization: `Bearer ${TOKEN}x` }] as Array<Record<string, string>>) {
      const r = await raw(t.gw.adminUrl, '/admin/status', { headers })
      expect(r.status).toBe(401)
      expect(json(r)).toMatchObject({ statusCode: 401, code: 'FLAGGATE_UNAUTHORIZED' })
    }
  })

  it('GET /admin/status with the token', async () => {
    const r = await raw(t.gw.adminUrl, '/admin/status', { headers: { authorization: `Bearer ${TOKEN}` } })
    expect(r.status).toBe(200)
    const s = json(r) as Record<string, unknown>
    expect(s).toMatchObject({
      version: expect.any(String),
      policy: { version: expect.stringMatching(/^[0-9a-f]{8}$/), loadedAt: expect.any(String), lastError: null },
      store: { kind: expect.any(String), healthy: true }
    })
    expect(Object.keys(s)).toEqual(expect.arrayContaining(['cache']))
  })

  it('/admin/status shows the sections the capabilities compute, with their documented shapes', async () => {
    const s = json(await raw(t.gw.adminUrl, '/admin/status', { headers: { authorization: `Bearer ${TOKEN}` } })) as Record<string, unknown>
    expect(Object.keys(s).sort()).toEqual(['blocking', 'blocks', 'breakers', 'cache', 'policy', 'probes', 'store', 'traffic', 'upstreams', 'version'])
    expect(s.blocks).toBe(0)
    expect(s.probes).toEqual([])
    // the breaker room computes it: one entry per upstream with a `breakers` rule (none here)
    expect(s.breakers).toEqual({})
    expect(s.cache).toMatchObject({ entries: expect.any(Number), bytes: expect.any(Number), maxSize: expect.any(Number) })
  })

  it('health and metrics answer without a token; admin routes are not on the public listener', async () => {
    expect((await raw(t.gw.adminUrl, '/healthz')).status).toBe(200)
    expect((await raw(t.gw.adminUrl, '/readyz')).status).toBe(200)
    await raw(t.gw.url, '/api/v1/flags/', { headers: { 'x-environment-key': 'dev_client_key' } })
    const m = await raw(t.gw.adminUrl, '/metrics')
    expect(m.status).toBe(200)
    const text = m.body.toString()
    expect(text).toMatch(/flaggate_requests_total\{route="flags",decision="allowed",status="200"\} \d+/)
    expect(text).toMatch(/flaggate_upstream_request_duration_seconds_bucket\{le="[0-9.]+",upstream="core",route="flags"\}/)
    expect(text).toContain('flaggate_process_cpu_seconds_total')
    expect(text).not.toContain('dev_client_key')
    // /admin on the public port is just proxied traffic: it reaches Core, never our admin API
    t.upstream.reset()
    const pub = await raw(t.gw.url, '/admin/status', { headers: { authorization: `Bearer ${TOKEN}` } })
    expect(pub.headers['x-flaggate-upstream']).toBe('core')
    expect(t.upstream.counts('/admin/status')).toBe(1)
  })

  it('flaggate status prints the admin status, and exits 1 when the admin API is unreachable', async () => {
    // async: the gateway answering the CLI lives in this very process
    const ok = await promisify(execFile)(process.execPath, ['dist/cli.js', 'status', '--json', '--admin', t.gw.adminUrl], { encoding: 'utf8', env: { ...process.env, FLAGGATE_ADMIN_TOKEN: TOKEN } })
    expect(JSON.parse(ok.stdout)).toMatchObject({ policy: { lastError: null } })
    const bad = await promisify(execFile)(process.execPath, ['dist/cli.js', 'status', '--admin', 'http://127.0.0.1:9'], { encoding: 'utf8' }).catch((e: { code: number; stderr: string }) => e)
    expect((bad as { code: number }).code).toBe(1)
    expect((bad as { stderr: string }).stderr).toMatch(/admin API unreachable/)
  })
})

describe('the access log', () => {
  it('one JSON line per request, with the key redacted to 4 characters and a hash', async () => {
    const key = 'ser.dev_server_key'
    await raw(t.gw.url, '/api/v1/environment-document/', { headers: { 'x-environment-key': key, 'x-request-id': 'req-abc' } })
    const line = t.gw.logs.lines.find((l) => l.reqId === 'req-abc')
    expect(line).toMatchObject({ msg: 'request', route: 'environment-document', method: 'GET', status: 200, upstream: 'core', decision: 'allowed', ip: '127.0.0.1', key: expect.stringMatching(/^ser\.…[0-9a-f]{8}$/) })
    expect(typeof line?.upstreamMs).toBe('number')
    expect(typeof line?.totalMs).toBe('number')
    expect(JSON.stringify(t.gw.logs.lines)).not.toContain(key)
  })

  it('redacts an environment key in a dashboard API path', async () => {
    await raw(t.gw.url, '/api/v1/environments/dev_client_key/featurestates/?page=2', { headers: { 'x-request-id': 'req-env-path' } })
    const line = t.gw.logs.lines.find((l) => l.reqId === 'req-env-path')
    expect(line?.url).toMatch(/^\/api\/v1\/environments\/dev_…[0-9a-f]{8}\/featurestates\/\?page=2$/)
    expect(JSON.stringify(t.gw.logs.lines)).not.toContain('dev_client_key')
  })
})

describe('starting', () => {
  it('refuses a non-loopback admin listener without a token, with a clear message', () => {
    const file = tempPolicyFile(policyYaml({ coreUrl: t.upstream.url }).replace('admin:\n  listen: 127.0.0.1:0', 'admin:\n  listen: 0.0.0.0:0'))
    const r = spawnSync(process.execPath, ['dist/cli.js', 'serve', '--config', file], { encoding: 'utf8', timeout: 50_000 })
    expect(r.error, 'killed by the timeout: a slow start on a busy machine, not the refusal under test').toBeUndefined()
    expect(r.status).toBe(1)
    expect(r.stderr).toContain('admin.listen: admin API on non-loopback 0.0.0.0 needs admin.token (set FLAGGATE_ADMIN_TOKEN)')
  })
})

describe('reloading the admin section', () => {
  it('cannot remove the token while the admin API is still bound to a non-loopback address', async () => {
    const yaml = policyYaml({ coreUrl: t.upstream.url, adminToken: TOKEN }).replace('admin:\n  listen: 127.0.0.1:0', 'admin:\n  listen: 0.0.0.0:0')
    const g = await startTestGateway(yaml)
    try {
      writeFileSync(g.file, policyYaml({ coreUrl: t.upstream.url }))
      const outcome = g.reload()
      expect(outcome.ok).toBe(false)
      expect(outcome.errors.map((e) => e.message)).toEqual(['the admin API is bound to non-loopback 0.0.0.0 until a restart, so admin.token stays required'])
      expect((await raw(g.adminUrl, '/admin/status')).status).toBe(401)
    } finally { await g.close() }
  })
})
