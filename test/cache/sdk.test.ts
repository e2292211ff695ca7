/**
 * The published Node SDK (flagsmith-nodejs 8.1.2) in local-evaluation mode through the gateway:
 * a fleet polling far faster than the TTL costs Core about one request per TTL, and a purge
 * reaches the fleet at its next poll.
 */
import { describe, expect, it, onTestFinished } from 'vitest'
import { Flagsmith } from 'flagsmith-nodejs'
import pino from 'pino'
import { raw, json } from '../support/http.js'
import { DEV_KEY, ENV_DOC, eventually, startCached } from './support.js'

describe('flagsmith-nodejs in local evaluation through the cache', () => {
  it('polls are served from the cache: Core sees at most one request per TTL', async () => {
    const ttlMs = 1000
    const { core, gw } = await startCached({ rule: { ttl: '1s', staleWhileRevalidate: '10s', staleIfError: '1m' } })
    const fleet = Array.from({ length: 20 }, () => new Flagsmith({
      environmentKey: DEV_KEY,
      apiUrl: `${gw.url}/api/v1/`,
      enableLocalEvaluation: true,
      environmentRefreshIntervalSeconds: 0.1,
      retries: 0,
      logger: pino({ level: 'silent' })
    }))
    onTestFinished(async () => { await Promise.all(fleet.map(async (sdk) => { await sdk.close() })) })

    const started = Date.now()
    for (const sdk of fleet) expect((await sdk.getEnvironmentFlags()).getFeatureValue('banner')).toBe('hello')
    // the fleet polls for at least 3.5 s (several TTLs) and until 400 polls went through the
    // gateway: a busy machine polls more slowly, so it is the count that is waited for, and Core's
    // bound below follows the time it took
    const served = async (): Promise<number> => {
      const status = json(await raw(gw.adminUrl, '/admin/status')) as { cache: { hits: number; misses: number; stale: number } }
      return status.cache.hits + status.cache.misses + status.cache.stale
    }
    let polls = 0
    const fleetPolled = await eventually(async () => Date.now() - started >= 3500 && (polls = await served()) > 400, 40_000, 100)
    const elapsed = Date.now() - started
    const coreSaw = core.counts(ENV_DOC, DEV_KEY)
    process.stdout.write(`sdk fleet: ${polls} env-doc requests through the gateway in ${elapsed} ms, Core saw ${coreSaw}\n`)
    expect(fleetPolled, `${polls} polls in ${elapsed} ms`).toBe(true)
    expect(polls).toBeGreaterThan(400)
    expect(coreSaw).toBeLessThanOrEqual(Math.ceil(elapsed / ttlMs) + 1)
    expect(core.requests.filter((r) => r.path === ENV_DOC).every((r) => r.status === 200 || r.status === 304)).toBe(true)

    // a flag change: Core is told, the gateway is purged, the fleet has it at its next poll
    core.envs[0]!.features[0]!.value = 'changed'
    core.touch(1)
    const purge = await raw(gw.adminUrl, '/admin/cache/purge', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ key: DEV_KEY }) })
    expect(json(purge)).toMatchObject({ purged: 1 })
    const everyone = await eventually(async () => {
      const values = await Promise.all(fleet.map(async (sdk) => (await sdk.getEnvironmentFlags()).getFeatureValue('banner')))
      return values.every((v) => v === 'changed')
    }, 2000)
    expect(everyone).toBe(true)
  }, 60_000)
})
