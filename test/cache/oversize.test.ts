/**
 * Documents larger than `maxEntrySize` (issue 11): Core builds them once per client request. The
 * fill that finds one too large hands its answer, still streaming, to the request that started
 * it; requests that were waiting on that fill, and later ones within the rule's ttl, go to the
 * proxy, one upstream request each. Every client gets Core's bytes exactly.
 */
import { describe, expect, it } from 'vitest'
import { json, raw } from '../support/http.js'
import { DEV_KEY, ENV_DOC, envDoc, startCached } from './support.js'

/** Core's document for DEV_KEY grown to about 240 KB (400 identity overrides), against a 64 KB limit. */
async function startLarge (core: { db?: { queryLatencyMs: number } } = {}) {
  const setup = await startCached({ rule: { ttl: '30s', maxEntrySize: '64kb' }, ...(core.db !== undefined ? { core: { db: core.db } } : {}) })
  setup.core.envs[0]!.identityOverrides = 400
  const direct = await raw(setup.core.url, ENV_DOC, { headers: { 'x-environment-key': DEV_KEY } })
  expect(direct.status).toBe(200)
  expect(direct.body.length).toBeGreaterThan(200 * 1024)
  setup.core.reset()
  return { ...setup, direct }
}

describe('documents larger than maxEntrySize', () => {
  it('three requests one after another: three Core requests, every body Core\'s, nothing stored', async () => {
    const { core, gw, direct } = await startLarge()
    for (let i = 0; i < 3; i++) {
      const r = await envDoc(gw, DEV_KEY)
      expect(r.status).toBe(200)
      expect(r.headers['x-cache-status']).toBe('BYPASS')
      expect(r.headers['x-flaggate-upstream']).toBe('core')
      expect(Number(r.headers['content-length'])).toBe(direct.body.length)
      expect(r.body.equals(direct.body)).toBe(true)
      expect(core.counts(ENV_DOC, DEV_KEY)).toBe(i + 1)
    }
    const status = json(await raw(gw.adminUrl, '/admin/status')) as { cache: { entries: number; tooLargeEntries: number } }
    expect(status.cache.entries).toBe(0)
    expect(status.cache.tooLargeEntries).toBe(1)
  })

  it('three requests at once: three Core requests, every body Core\'s', async () => {
    // Core slow enough that the other two join the first one's fill before it answers
    const { core, gw, direct } = await startLarge({ db: { queryLatencyMs: 30 } })
    const all = await Promise.all([0, 1, 2].map(async () => await envDoc(gw, DEV_KEY)))
    for (const r of all) {
      expect(r.status).toBe(200)
      expect(r.headers['x-cache-status']).toBe('BYPASS')
      expect(r.body.equals(direct.body)).toBe(true)
    }
    expect(core.counts(ENV_DOC, DEV_KEY)).toBe(3)
    // every answer was complete: Core sent each of its answers whole
    expect(core.requests.filter((r) => r.path === ENV_DOC).map((r) => r.status)).toEqual([200, 200, 200])
  })

  it('a key purge forgets that the document was too large: the next request tries to cache it again', async () => {
    const { core, gw } = await startLarge()
    await envDoc(gw, DEV_KEY)
    core.envs[0]!.identityOverrides = 0
    expect((await envDoc(gw, DEV_KEY)).headers['x-cache-status']).toBe('BYPASS')
    const purge = await raw(gw.adminUrl, '/admin/cache/purge', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ key: DEV_KEY }) })
    expect(purge.status).toBe(200)
    expect((await envDoc(gw, DEV_KEY)).headers['x-cache-status']).toBe('MISS')
    expect((await envDoc(gw, DEV_KEY)).headers['x-cache-status']).toBe('HIT')
    expect(core.counts(ENV_DOC, DEV_KEY)).toBe(3)
  })
})
