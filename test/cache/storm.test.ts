/**
 * The August 2022 outage, replayed: a Node SDK with a seconds-vs-milliseconds bug gave up on each
 * environment-document request after a few milliseconds and asked again at once, from every
 * instance of a customer's fleet. Each attempt cost Core a full document build (11 queries).
 *
 * Here: a fleet of clients with a 5 ms timeout and immediate retries, 600 attempts in all, against (1) the fake
 * Core directly and (2) the gateway. A client giving up does not cancel the gateway's fill, so the
 * first fill completes, is stored, and from then on the storm is answered from memory.
 */
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { describe, expect, it, onTestFinished } from 'vitest'
import { startFakeCore, type FakeCore } from '../support/fake-flagsmith.js'
import { policyYaml, spawnGateway } from '../support/gateway.js'
import { DEFAULT_NEGATIVE_TTL_MS } from '../../src/cache/core.js'
import { DEV_KEY, ENV_DOC, PROD_KEY, cachedRoutes } from './support.js'

interface StormResult { sent: number; answered: number; timedOut: number; errors: number; ms: number }

const CLIENT_TIMEOUT_MS = 5
/** the storm is this many attempts, however long a busy machine takes to make them ... */
const ATTEMPTS = 600
/** ... within a bound well inside the cache's 30 s TTL, so every attempt after the fill is a HIT */
const MAX_MS = 20_000
const CLIENTS = 12
/** the third key is unknown to Core: a storm of bad keys must not reach the database either */
const KEYS = [DEV_KEY, PROD_KEY, 'ser.revoked-key']
const run = promisify(execFile)

/** The fleet runs in its own process (storm-client.ts), so it does not starve what it attacks. */
async function storm (base: string): Promise<StormResult> {
  const { stdout } = await run(process.execPath, ['--import', 'tsx', 'test/cache/storm-client.ts', base, ENV_DOC, String(CLIENTS), String(ATTEMPTS), String(MAX_MS), String(CLIENT_TIMEOUT_MS), KEYS.join(',')], { timeout: MAX_MS + 20_000 })
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
      `storm, ${CLIENTS} clients, ${ATTEMPTS} attempts, ${CLIENT_TIMEOUT_MS} ms timeout, immediate retry:`,
      `  straight at Core: clients sent ${withoutGateway.sent} in ${withoutGateway.ms} ms (${withoutGateway.answered} answered in time), Core received ${directCount}, DB queries ${direct.dbStats().queries}`,
      `  through flaggate: clients sent ${withGateway.sent} in ${withGateway.ms} ms (${withGateway.answered} answered in time), Core received ${coreCount}, DB queries ${core.dbStats().queries}`,
      ''
    ].join('\n'))

    // Whether an answer beats a 5 ms deadline depends on the box, not on the cache, so only what
    // reaches Core is asserted, against the attempts the fleet made (all of them: the storm is a
    // count, so a slow machine makes it take longer, not smaller). Every attempt reaches Core
    // without the gateway ...
    expect(withoutGateway.sent, `attempts made within ${MAX_MS} ms`).toBe(ATTEMPTS)
    // (an attempt whose socket dies before a starved fake Core has read it is not counted there,
    // so "every attempt" is at least half of them, and Core's cost must scale with attempts: at
    // least 50 times what reaches it through the gateway)
    expect(directCount).toBeGreaterThanOrEqual(withoutGateway.sent * 0.5)
    // ... and a handful with it: one fill per good key, one 403 per bad key per negative TTL of
    // the time the storm lasted
    expect(withGateway.sent, `attempts made within ${MAX_MS} ms`).toBe(ATTEMPTS)
    expect(core.counts(ENV_DOC, DEV_KEY)).toBe(1)
    expect(core.counts(ENV_DOC, PROD_KEY)).toBe(1)
    const badKeyAtCore = core.counts(ENV_DOC, KEYS[2])
    expect(badKeyAtCore).toBeGreaterThanOrEqual(1)
    expect(badKeyAtCore).toBeLessThanOrEqual(1 + Math.ceil(withGateway.ms / DEFAULT_NEGATIVE_TTL_MS))
    expect(coreCount).toBe(2 + badKeyAtCore)
    expect(directCount).toBeGreaterThanOrEqual(50 * coreCount)
    // and the gateway is fine afterwards
    const after = await fetch(`${gw.url}${ENV_DOC}`, { headers: { 'x-environment-key': DEV_KEY } })
    expect(after.status).toBe(200)
    expect(after.headers.get('x-cache-status')).toBe('HIT')
  })
})
