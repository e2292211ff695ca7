/**
 * The August 2022 outage, replayed: a Node SDK with a seconds-vs-milliseconds bug gave up on each
 * environment-document request after a few milliseconds and asked again at once, from every
 * instance of a customer's fleet. Each attempt cost Core a full document build (11 queries).
 *
 * Here: a fleet of clients with a 5 ms timeout and immediate retries, for 3 s, against (1) the fake
 * Core directly and (2) the gateway. A client giving up does not cancel the gateway's fill, so the
 * first fill completes, is stored, and from then on the storm is answered from memory.
 */
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { describe, expect, it, onTestFinished } from 'vitest'
import { startFakeCore, type FakeCore } from '../support/fake-flagsmith.js'
import { policyYaml, spawnGateway } from '../support/gateway.js'
import { DEV_KEY, ENV_DOC, PROD_KEY, cachedRoutes } from './support.js'

interface StormResult { sent: number; answered: number; timedOut: number; errors: number }

const CLIENT_TIMEOUT_MS = 5
const DURATION_MS = 3000
const CLIENTS = 12
/** the third key is unknown to Core: a storm of bad keys must not reach the database either */
const KEYS = [DEV_KEY, PROD_KEY, 'ser.revoked-key']
const run = promisify(execFile)

/** The fleet runs in its own process (storm-client.ts), so it does not starve what it attacks. */
async function storm (base: string): Promise<StormResult> {
  const { stdout } = await run(process.execPath, ['--import', 'tsx', 'test/cache/storm-client.ts', base, ENV_DOC, String(CLIENTS), String(DURATION_MS), String(CLIENT_TIMEOUT_MS), KEYS.join(',')], { timeout: DURATION_MS + 20_000 })
  return JSON.parse(stdout.trim().split('\n').at(-1)!) as StormResult
}

async function fakeCore (db: { queryLatencyMs: number; poolSize: number }): Promise<FakeCore> {
  const core = await startFakeCore({ db })
  onTestFinished(core.close)
  return core
}

describe('the 2022 retry storm', () => {
  it('costs Core a handful of requests through the gateway, instead of every attempt', async () => {
    // a database where a document build takes ~30 ms: longer than any client waits
    const db = { queryLatencyMs: 3, poolSize: 10 }

    const direct = await fakeCore(db)
    const withoutGateway = await storm(direct.url)
    const directCount = direct.counts(ENV_DOC)

    const core = await fakeCore(db)
    const gw = await spawnGateway(policyYaml({ coreUrl: core.url, routes: cachedRoutes({ ttl: '30s', staleWhileRevalidate: '60s', staleIfError: '10m' }) }))
    onTestFinished(async () => { await gw.stop() })
    const withGateway = await storm(gw.url)
    const coreCount = core.counts(ENV_DOC)

    process.stdout.write([
      `storm, ${CLIENTS} clients x ${DURATION_MS} ms, ${CLIENT_TIMEOUT_MS} ms timeout, immediate retry:`,
      `  straight at Core: clients sent ${withoutGateway.sent} (${withoutGateway.answered} answered in time), Core received ${directCount}, DB queries ${direct.dbStats().queries}`,
      `  through flaggate: clients sent ${withGateway.sent} (${withGateway.answered} answered in time), Core received ${coreCount}, DB queries ${core.dbStats().queries}`,
      ''
    ].join('\n'))

    // Whether an answer beats a 5 ms deadline depends on the box, not on the cache, so only what
    // reaches Core is asserted. Every attempt reaches it without the gateway ...
    expect(withoutGateway.sent).toBeGreaterThan(500)
    expect(directCount).toBeGreaterThanOrEqual(withoutGateway.sent * 0.9)
    // ... and a handful with it: one fill per good key, one 403 per bad key per negative TTL
    expect(withGateway.sent).toBeGreaterThan(500)
    expect(coreCount).toBeLessThanOrEqual(6)
    expect(core.counts(ENV_DOC, DEV_KEY)).toBe(1)
    expect(core.counts(ENV_DOC, PROD_KEY)).toBe(1)
    // and the gateway is fine afterwards
    const after = await fetch(`${gw.url}${ENV_DOC}`, { headers: { 'x-environment-key': DEV_KEY } })
    expect(after.status).toBe(200)
    expect(after.headers.get('x-cache-status')).toBe('HIT')
  })
})
