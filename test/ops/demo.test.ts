/**
 * `npm run demo -- --duration 20s` runs unattended (as in CI) and shows each capability that has
 * landed at work: non-zero counts for limited, cached and stale traffic, and for shed and blocked
 * once the demo finds their capability built; "not built yet" otherwise, never a made-up count.
 * Its columns carry their units: the decisions are running totals, Core's load is per second.
 */
import { execFile, spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { describe, expect, it } from 'vitest'

interface DemoReport {
  built: Record<'breakers' | 'blocking' | 'probes' | 'edge', boolean>
  decisions: Record<'allowed' | 'cached' | 'stale' | 'limited' | 'shed' | 'blocked', number | null>
  core: { received: number; queries: number; fromStorm: number }
  clientsSent: number
  clients: Record<string, { sent: number; errors: number; statuses: Record<string, number> }>
  probes: Array<{ name: string; ok: boolean | null }>
}

describe('npm run demo', () => {
  it('runs for --duration, prints a line a second and a report, and shows every built capability at work', async () => {
    const json = join(mkdtempSync(join(tmpdir(), 'flaggate-demo-test-')), 'report.json')
    const { stdout } = await promisify(execFile)('npm', ['run', '--silent', 'demo', '--', '--duration', '20s', '--json', json], { encoding: 'utf8', timeout: 150_000, maxBuffer: 16 * 1024 * 1024 })
    const ticks = stdout.split('\n').filter((l) => /^\s*\d+s {2}db /.test(l))
    expect(ticks.length, stdout).toBeGreaterThanOrEqual(5) // one a second; a starved machine skips some
    expect(stdout).toContain('=== flaggate demo report ===')
    // the columns say their units: decisions are running totals, Core and sent are per second
    expect(stdout).toContain('each second: the decisions are running totals since the start (flaggate_requests_total); "Core N/s" is what reached Core in that second, of what the clients sent in it')
    const count = '(?:[\\d,]+|-)'
    const tick = new RegExp(`^\\s*\\d+s {2}.+ totals: allowed ${count} {2}cached ${count} {2}stale ${count} {2}limited ${count} {2}shed ${count} {2}blocked ${count} \\| this second: Core \\d+/s of \\d+/s sent \\| breaker \\S+$`)
    for (const line of ticks) expect(line).toMatch(tick)
    expect(stdout).toContain('What the gateway decided (flaggate_requests_total by decision):')

    const report = JSON.parse(readFileSync(json, 'utf8')) as DemoReport
    try {
      expect(report.decisions.limited).toBeGreaterThan(0)
      expect(report.decisions.cached).toBeGreaterThan(0)
      expect(report.decisions.stale).toBeGreaterThan(0)
      expect(report.decisions.allowed).toBeGreaterThan(0)
      for (const [decision, capability] of [['shed', 'breakers'], ['blocked', 'blocking']] as const) {
        if (report.built[capability]) {
          expect(report.decisions[decision], decision).toBeGreaterThan(0)
        } else {
          expect(report.decisions[decision]).toBeNull()
          expect(stdout).toMatch(new RegExp(`${decision} +- +not built yet \\(${capability}\\)`))
        }
      }
      // the gateway kept most of the traffic off Core
      expect(report.core.received).toBeLessThan(report.clientsSent / 2)
      // the storm was held back (its clients give up after 20 ms, so count at Core), the polite fleet was not
      const storm = report.clients.storm!
      expect(storm.sent).toBeGreaterThan(100)
      expect(report.core.fromStorm).toBeLessThan(storm.sent / 10)
      const fleet = report.clients.fleet!
      expect(fleet.statuses['429'] ?? 0).toBe(0)
      if (report.built.probes) expect(report.probes.map((p) => p.name)).toEqual(['flags', 'environment-document'])
    } catch (err) {
      console.info(stdout) // the run explains the failure
      throw err
    }
  }, 180_000)

  // found by a new user: node's parseArgs errors came out as stack traces, and a bad --json path
  // failed only after the whole run, losing its report
  it.each([
    [['--bogus'], /Unknown option '--bogus'/],
    [['--duration'], /--duration <value>' argument missing/],
    [['extra'], /Unexpected argument 'extra'/],
    [['--duration', '2s'], /at least 5s/],
    [['--json', '/nonexistent-dir/report.json'], /--json \/nonexistent-dir\/report.json: cannot write there/]
  ])('bad arguments %j: one line and the usage on stderr, exit 2, before anything runs', (args, message) => {
    const r = spawnSync(process.execPath, ['--import', 'tsx', 'scripts/demo.ts', ...args], { encoding: 'utf8', timeout: 30_000 })
    expect(r.status).toBe(2)
    expect(r.stderr).toMatch(message)
    expect(r.stderr).toMatch(/^usage: npm run demo/m)
    expect(r.stderr).not.toMatch(/\n\s+at |node:internal|ERR_[A-Z_]+/)
    expect(r.stdout).toBe('')
  })
})
