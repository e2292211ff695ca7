/**
 * The alerts of deploy/prometheus/alerts.yml against the series the gateway really exports, not
 * hand-written ones (deploy.test.ts runs those): a gateway is started, scraped as soon as it
 * listens, through a healthy stretch and through an outage (Core gone, Redis unreachable, an abusive
 * client, a refused policy push), and every scrape becomes one sample of promtool's `input_series`
 * with the labels as scraped plus the target labels Prometheus adds. `promtool test rules` then
 * checks which alerts fire when, once as a plain scrape job and once as Kubernetes annotation-based
 * discovery labels the targets. Skipped without promtool (Debian package `prometheus`).
 *
 * The one liberty taken: consecutive scrapes are one minute apart in promtool's clock, seconds
 * apart here. Nothing the alerts read depends on the gateway's own clock between scrapes (the
 * breaker stays open and the block lasts for an hour, the probe is awaited before each scrape).
 */
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { parse as parseYaml, stringify } from 'yaml'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startFakeCore, type FakeCore } from '../support/fake-flagsmith.js'
import { policyYaml, startTestGateway, type TestGateway } from '../support/gateway.js'
import { json, raw } from '../support/http.js'
import { parseExposition, type Sample } from '../support/metrics.js'

const ALERTS = resolve('deploy/prometheus/alerts.yml')
const havePromtool = spawnSync('promtool', ['--version']).status === 0
if (!havePromtool) console.info('promtool is not installed (Debian package `prometheus`): skipping the alert tests fed from a real scrape')

// environment-document: healthy traffic and the probe, no limit (so no Redis decision) and no
// cache (so an outage shows); identities: a limit per IP, decided locally while Redis is down;
// flags: a tight limit per key, for the abusive client.
const ROUTES = `  - name: environment-document
    match: { methods: [GET], path: /api/v1/environment-document/ }
    upstream: core
  - name: identities
    match: { methods: [GET], path: /api/v1/identities/ }
    upstream: core
    limit: { by: ip, rate: 1000/s, burst: 1000 }
  - name: flags
    match: { methods: [GET], path: /api/v1/flags/ }
    upstream: core
    limit: { by: environmentKey, rate: 1/h, burst: 1 }
  - name: default
    match: { pathPrefix: / }
    upstream: core`
const EXTRA = `breakers:
  core:
    errorRate: { above: 50%, window: 1m, minRequests: 5 }
    openFor: 10m
abuse: { rejections: 3 per 1m, blockFor: 1h }
probes:
  - { name: environment-document, path: /api/v1/environment-document/, key: ser.prod_server_key, interval: 200ms }
`

/** A Prometheus label matcher as the alert expressions write them: `name="v"` or `name=~"re"`. */
interface Matcher { label: string; op: '=' | '=~'; value: string }
const matches = (s: Sample, name: string, ms: Matcher[]): boolean => s.name === name &&
  ms.every((m) => m.op === '=' ? s.labels[m.label] === m.value : new RegExp(`^(?:${m.value})$`).test(s.labels[m.label] ?? ''))

/** Each counter an alert takes rate() or increase() of, with the matchers of its selector. */
function watchedCounters (): Array<{ alert: string; name: string; matchers: Matcher[] }> {
  const rules = (parseYaml(readFileSync(ALERTS, 'utf8')) as { groups: Array<{ rules: Array<{ alert: string; expr: string }> }> }).groups.flatMap((g) => g.rules)
  return rules.flatMap((r) => [...r.expr.matchAll(/(flaggate_\w+_total)(?:\{([^}]*)\})?\[/g)].map((m) => ({
    alert: r.alert,
    name: m[1]!,
    matchers: [...(m[2] ?? '').matchAll(/(\w+)\s*(=~|=)\s*"([^"]*)"/g)].map((x) => ({ label: x[1]!, op: x[2] as Matcher['op'], value: x[3]! }))
  })))
}

const TARGETS = {
  'a plain scrape job': { job: 'flaggate', instance: 'gateway-1:8081' },
  'Kubernetes annotation-based discovery': { job: 'kubernetes-pods', instance: '10.1.2.3:8081', namespace: 'flaggate', pod: 'flaggate-7d9f8-x2k4q', app_kubernetes_io_name: 'flaggate' }
} as const

const seriesName = (name: string, labels: Record<string, string>): string =>
  `${name}{${Object.entries(labels).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(',')}}`

/**
 * promtool `input_series` from consecutive scrapes, one a minute: a series missing from a scrape
 * is `_` before it first appears and `stale` after, as Prometheus records it.
 */
function inputSeries (scrapes: Sample[][], target: Record<string, string>): Array<{ series: string; values: string }> {
  const byKey = new Map<string, Array<number | undefined>>()
  scrapes.forEach((samples, i) => {
    for (const s of samples) {
      const key = seriesName(s.name, { ...s.labels, ...target })
      const values = byKey.get(key) ?? new Array<number | undefined>(scrapes.length).fill(undefined)
      values[i] = s.value
      byKey.set(key, values)
    }
  })
  byKey.set(seriesName('up', target), scrapes.map(() => 1))
  return [...byKey].map(([series, values]) => ({
    series,
    values: values.map((v, i) => v !== undefined ? String(v) : values.slice(0, i).some((p) => p !== undefined) ? 'stale' : '_').join(' ')
  }))
}

let core: FakeCore
let gw: TestGateway
/** the scrapes, one a minute in promtool's clock: 0 fresh, 1..HEALTHY healthy, then the outage */
const scrapes: Sample[][] = []
const HEALTHY = 6
const OUTAGE = 16

async function scrape (): Promise<void> {
  const r = await raw(gw.adminUrl, '/metrics')
  expect(r.status).toBe(200)
  scrapes.push(parseExposition(r.body.toString()).samples)
}
async function probeOk (want: boolean): Promise<void> {
  for (let i = 0; i < 600; i++) {
    const s = json(await raw(gw.adminUrl, '/admin/status')) as { probes: Array<{ ok: boolean | null }> }
    if (s.probes[0]?.ok === want) return
    await new Promise((r) => setTimeout(r, 50))
  }
  throw new Error(`the probe never reported ok=${String(want)}`)
}

beforeAll(async () => {
  if (!havePromtool) return
  core = await startFakeCore()
  // Redis on a port nothing listens on: every limit decision is taken locally (store_fallback_total)
  const yaml = policyYaml({ coreUrl: core.url, redis: { url: 'redis://127.0.0.1:1', keyPrefix: 'flaggate-alerts:' }, routes: ROUTES, extra: EXTRA })
  gw = await startTestGateway(yaml)
  await scrape()
  await probeOk(true)
  const doc = { 'x-environment-key': 'ser.prod_server_key' }
  for (let m = 1; m <= HEALTHY; m++) {
    for (let i = 0; i < 3; i++) expect((await raw(gw.url, '/api/v1/environment-document/', { headers: doc })).status).toBe(200)
    await scrape()
  }
  // the outage: Core gone, a policy push that does not validate, a client hammering flags/
  await core.close()
  writeFileSync(gw.file, yaml.replace('rate: 1/h', 'rate: fast'))
  expect(gw.reload().ok).toBe(false)
  await probeOk(false)
  const statuses = new Set<number>()
  for (let m = 1; m <= OUTAGE; m++) {
    for (let i = 0; i < 4; i++) statuses.add((await raw(gw.url, '/api/v1/environment-document/', { headers: doc })).status)
    for (let i = 0; i < 2; i++) statuses.add((await raw(gw.url, '/api/v1/identities/?identifier=a', { headers: { 'x-environment-key': 'prod_client_key' } })).status)
    for (let i = 0; i < 2; i++) statuses.add((await raw(gw.url, '/api/v1/flags/', { headers: { 'x-environment-key': 'abusive_client_key' } })).status)
    await scrape()
  }
  // 502 before the breaker opened, 503 after; 429 then 403 for the abusive client
  expect([...statuses].sort()).toEqual([403, 429, 502, 503])
}, 120_000)
afterAll(async () => { await gw?.close(); await core?.close() })

describe.skipIf(!havePromtool)('alerts fed with the series the gateway exports', () => {
  it('every counter an alert takes rate() or increase() of is in the first scrape at 0, for every label value it watches', () => {
    const watched = watchedCounters()
    expect(watched.map((w) => w.name)).toEqual(expect.arrayContaining(['flaggate_requests_total', 'flaggate_store_fallback_total', 'flaggate_policy_reloads_total']))
    for (const w of watched) {
      const fresh = scrapes[0]!.filter((s) => matches(s, w.name, w.matchers))
      expect(fresh.length, `${w.alert}: ${w.name} ${JSON.stringify(w.matchers)} in a fresh scrape`).toBeGreaterThan(0)
      for (const s of fresh) expect(s.value, `${w.alert}: ${seriesName(s.name, s.labels)}`).toBe(0)
      // and every gateway 5xx (502, 503, 504) the outage produced was there from the start, so rate() saw it rise
      const fromStart = new Set(fresh.map((s) => seriesName(s.name, s.labels)))
      const failures = scrapes.at(-1)!.filter((s) => matches(s, w.name, w.matchers) && /^50[234]$/.test(s.labels.status ?? ''))
      for (const s of failures) expect(fromStart, w.alert).toContain(seriesName(s.name, s.labels))
    }
  })

  for (const [how, target] of Object.entries(TARGETS)) {
    it(`fire when they should, scraped by ${how} (promtool test rules)`, () => {
      const firing = (alerts: Array<[string, Record<string, string>]>) => alerts.map(([alertname, labels]) =>
        ({ labels: seriesName('ALERTS', { alertname, alertstate: 'firing', ...labels }), value: 1 }))
      const onTarget = { ...target }
      const breaker: [string, Record<string, string>] = ['FlaggateBreakerOpen', { severity: 'page', upstream: 'core' }]
      const probe: [string, Record<string, string>] = ['FlaggateProbeFailing', { severity: 'page', probe: 'environment-document', ...onTarget }]
      const blocked: [string, Record<string, string>] = ['FlaggateKeyAutoBlocked', { severity: 'ticket' }]
      const reload: [string, Record<string, string>] = ['FlaggatePolicyReloadFailing', { severity: 'warning', result: 'error', ...onTarget }]
      const redis: [string, Record<string, string>] = ['FlaggateRedisFallback', { severity: 'warning', instance: target.instance }]
      const ratio: [string, Record<string, string>] = ['FlaggateHigh5xxRatio', { severity: 'page' }]
      const at = (minute: number, alerts: Array<[string, Record<string, string>]>) =>
        ({ expr: 'ALERTS{alertstate="firing"}', eval_time: `${minute}m`, exp_samples: firing(alerts) })
      const start = HEALTHY + 1 // the outage's first scrape
      const file = {
        rule_files: [ALERTS],
        evaluation_interval: '30s',
        tests: [{
          interval: '1m',
          input_series: inputSeries(scrapes, target),
          promql_expr_test: [
            // healthy (no Redis, but no limited route taken either): nothing fires, up is 1
            at(HEALTHY, []),
            // alerts without `for` at once, the probe after its 3 m, the rates not yet 5 m long
            at(start + 4, [breaker, probe, blocked, reload]),
            // the first refused push of this replica is seen by increase(): it counts from 0
            at(start + 8, [breaker, probe, blocked, reload, redis, ratio]),
            // 10 m after the push it is history; the outage goes on
            at(start + OUTAGE - 1, [breaker, probe, blocked, redis, ratio])
          ]
        }]
      }
      const dir = mkdtempSync(join(tmpdir(), 'flaggate-alerts-'))
      writeFileSync(join(dir, 'scraped.test.yml'), stringify(file, { lineWidth: 0 }))
      const r = spawnSync('promtool', ['test', 'rules', join(dir, 'scraped.test.yml')], { encoding: 'utf8' })
      expect(r.status, r.stdout + r.stderr).toBe(0)
    })
  }
})
