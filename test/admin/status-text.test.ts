/**
 * `flaggate status`: the human summary of /admin/status (tolerant of absent sections) and
 * `--json`, against a real gateway with a probe.
 */
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { renderStatus } from '../../src/admin/status-text.js'
import { VERSION } from '../../src/gateway.js'
import { startFakeCore, type FakeCore } from '../support/fake-flagsmith.js'
import { policyYaml, startTestGateway, type TestGateway } from '../support/gateway.js'
import { json, raw } from '../support/http.js'

const NOW = new Date('2026-11-30T08:00:00.000Z')

describe('renderStatus', () => {
  it('prints every section of a full status, failures first-class', () => {
    const text = renderStatus({
      version: '0.1.0',
      policy: { version: 'a1b2c3d4', loadedAt: '2026-11-30T07:55:00.000Z', lastError: { at: '2026-11-30T07:59:30.000Z', errors: ['gateway.yaml:3:9: server.bodyLimit: "big" is not a size (example: "512kb")'] }, restartRequired: ['server.listen'] },
      store: { kind: 'redis', healthy: false, mode: 'local-fallback', liveReplicas: 2, lastError: 'connect ECONNREFUSED' },
      breakers: { core: { state: 'open', p95Ms: 912.4, errorRate: 0.5, inFlight: 3, limit: 64 }, edge: { state: 'closed', p95Ms: null, errorRate: 0, inFlight: 0, limit: 128 } },
      cache: { entries: 3, bytes: 3 * 1024 * 1024, maxSize: 256 * 1024 * 1024, hits: 99, misses: 1, stale: 4 },
      blocks: 2,
      probes: [
        { name: 'flags', ok: true, status: 200, latencyMs: 12.34, lastAt: '2026-11-30T07:59:58.000Z', lastError: null, consecutiveFailures: 0 },
        { name: 'environment-document', ok: false, status: 503, latencyMs: 3, lastAt: '2026-11-30T07:59:59.000Z', lastError: 'HTTP 503 FLAGGATE_UPSTREAM_OVERLOADED', consecutiveFailures: 4 },
        { name: 'new', ok: null, status: null, latencyMs: null, lastAt: null, lastError: null, consecutiveFailures: 0 }
      ],
      edge: { percent: 10 }
    }, { adminUrl: 'http://127.0.0.1:8081', now: NOW })
    expect(text.split('\n')).toEqual([
      'flaggate 0.1.0  (admin http://127.0.0.1:8081)',
      'policy    version a1b2c3d4, loaded 2026-11-30T07:55:00.000Z (5m ago)',
      '          LAST RELOAD REFUSED 30s ago: the policy above stays in force',
      '            gateway.yaml:3:9: server.bodyLimit: "big" is not a size (example: "512kb")',
      '          restart required to apply: server.listen',
      'store     redis, UNHEALTHY, mode local-fallback, 2 live replica(s), last error: connect ECONNREFUSED',
      'breakers  core  OPEN       p95 912 ms  errors 50.0%  in flight 3/64',
      '          edge  closed     p95 -  errors 0.0%  in flight 0/128',
      'cache     3 entries, 3.0 MiB of 256.0 MiB, hits 99, misses 1 (99.0% hit), stale 4',
      'blocks    2 active',
      'probes    flags                 ok       200  12.3 ms  2s ago',
      '          environment-document  FAILING  503  3.0 ms  1s ago  HTTP 503 FLAGGATE_UPSTREAM_OVERLOADED (4 in a row)',
      '          new                   pending  ---  -  never',
      'edge      {"percent":10}'
    ])
  })

  it('prints what is there when sections are absent or empty', () => {
    expect(renderStatus({ version: '0.0.9', breakers: {}, probes: [] }, { now: NOW }).split('\n')).toEqual([
      'flaggate 0.0.9',
      'breakers  none configured',
      'probes    none configured (add `probes:` to the policy)'
    ])
    expect(renderStatus('not an object')).toBe('"not an object"')
  })
})

describe('flaggate status against a running gateway', () => {
  const TOKEN = 'status-test-admin-token-0123'
  let core: FakeCore
  let gw: TestGateway
  beforeAll(async () => {
    core = await startFakeCore()
    gw = await startTestGateway(policyYaml({ coreUrl: core.url, adminToken: TOKEN, extra: 'probes:\n  - { name: flags, path: /api/v1/flags/, key: dev_client_key, interval: 200ms }\n' }))
  })
  afterAll(async () => { await gw?.close(); await core?.close() })

  it('prints the summary, and the raw JSON with --json', async () => {
    const deadline = Date.now() + 15_000
    while (Date.now() < deadline) {
      const s = json(await raw(gw.adminUrl, '/admin/status', { headers: { authorization: `Bearer ${TOKEN}` } })) as { probes: Array<{ ok: boolean | null }> }
      if (s.probes[0]?.ok === true) break
      await new Promise((r) => setTimeout(r, 50))
    }
    const run = promisify(execFile)
    const env = { ...process.env, FLAGGATE_ADMIN_TOKEN: TOKEN }
    const human = await run(process.execPath, ['dist/cli.js', 'status', '--admin', gw.adminUrl], { encoding: 'utf8', env })
    const lines = human.stdout.trimEnd().split('\n')
    expect(lines[0]).toBe(`flaggate ${VERSION}  (admin ${gw.adminUrl})`)
    expect(lines).toContainEqual(expect.stringMatching(new RegExp(`^policy    version ${gw.store.current.version}, loaded `)))
    expect(lines).toContain('          last reload: ok')
    expect(lines).toContainEqual(expect.stringMatching(/^store     memory, healthy/))
    expect(lines).toContainEqual(expect.stringMatching(/^cache     0 entries, 0 B of 256\.0 MiB, hits 0, misses 0/))
    expect(lines).toContainEqual(expect.stringMatching(/^probes    flags  ok       200  [0-9.]+ ms  \d+s ago$/))
    expect(human.stdout).not.toContain('dev_client_key')

    const machine = await run(process.execPath, ['dist/cli.js', 'status', '--json', '--admin', gw.adminUrl], { encoding: 'utf8', env })
    expect(JSON.parse(machine.stdout)).toMatchObject({ policy: { version: gw.store.current.version }, probes: [{ name: 'flags', ok: true, status: 200 }] })
  })
})
