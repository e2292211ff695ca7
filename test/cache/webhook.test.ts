import { describe, expect, it } from 'vitest'
import { purgeTargetsOf, signatureMatches } from '../../src/cache/webhook.js'
import { pythonJsonDumps, signWebhook, webhookBody } from '../support/fake-flagsmith.js'

describe('Flagsmith webhook payloads → purge targets', () => {
  it('environment webhooks name the environment in new_state / previous_state', () => {
    expect(purgeTargetsOf(JSON.parse(webhookBody(1, 'banner')))).toEqual([{ envId: 1 }])
    expect(purgeTargetsOf(JSON.parse(webhookBody(2, 'banner', { eventType: 'FLAG_DELETED' })))).toEqual([{ envId: 2 }])
  })

  it('organisation webhooks: the environment, else the whole project, else everything', () => {
    const audit = (data: Record<string, unknown>): unknown => ({ event_type: 'AUDIT_LOG_CREATED', data: { id: 9, log: 'x', ...data } })
    expect(purgeTargetsOf(audit({ environment: { id: 3, name: 'Prod', api_key: 'k' }, project: { id: 1 } }))).toEqual([{ envId: 3 }])
    expect(purgeTargetsOf(audit({ environment: null, project: { id: 1, name: 'P' } }))).toEqual([{ projectId: 1 }])
    expect(purgeTargetsOf(audit({ environment: null, project: null }))).toEqual([{ all: true }])
  })

  it('NEW_VERSION_PUBLISHED needs nothing (its FLAG_UPDATEDs purge); unknown shapes drop everything', () => {
    expect(purgeTargetsOf({ event_type: 'NEW_VERSION_PUBLISHED', data: { uuid: 'u', feature: { id: 1 } } })).toEqual([])
    expect(purgeTargetsOf({ event_type: 'SOMETHING_NEW', data: {} })).toEqual([{ all: true }])
    expect(purgeTargetsOf([1, 2])).toEqual([{ all: true }])
  })
})

describe('X-Flagsmith-Signature', () => {
  const body = pythonJsonDumps({ data: { a: 1 }, event_type: 'FLAG_UPDATED' })
  it('is hex HMAC-SHA256 over the raw bytes', () => {
    const sig = signWebhook('s3cret', body)
    expect(signatureMatches('s3cret', Buffer.from(body), sig)).toBe(true)
    expect(signatureMatches('s3cret', Buffer.from(body), sig.toUpperCase())).toBe(true)
    expect(signatureMatches('other', Buffer.from(body), sig)).toBe(false)
    expect(signatureMatches('s3cret', Buffer.from(JSON.stringify(JSON.parse(body))), sig)).toBe(false)
    expect(signatureMatches('s3cret', Buffer.from(body), undefined)).toBe(false)
    expect(signatureMatches('s3cret', Buffer.from(body), sig.slice(0, 63))).toBe(false)
    expect(signatureMatches('s3cret', Buffer.from(body), [sig])).toBe(false)
  })
})

describe('replays and coalescing (pure cores, stepped clock)', () => {
  it('a digest is first once per window; forgotten after it, or when forget() is called', async () => {
    const { ReplayFilter } = await import('../../src/cache/webhook-replay.js')
    let now = 1_000_000
    const f = new ReplayFilter({ clock: () => now, maxEntries: 2 })
    const d = ReplayFilter.digest(Buffer.from('{"a": 1}'))
    expect(f.first(d, 60_000)).toBe(true)
    expect(f.first(d, 60_000)).toBe(false)
    now += 60_001
    expect(f.first(d, 60_000)).toBe(true)
    f.forget(d)
    expect(f.first(d, 60_000)).toBe(true)
    // bounded: the least recently seen goes first
    expect(f.first('b', 60_000)).toBe(true)
    expect(f.first('c', 60_000)).toBe(true)
    expect(f.size).toBe(2)
  })

  it('the union of a window: duplicates once, everything alone', async () => {
    const { unionOf } = await import('../../src/cache/webhook-coalesce.js')
    expect(unionOf([{ envId: 1 }, { envId: 2 }, { envId: 1 }, { projectId: 1 }])).toEqual([{ envId: 1 }, { envId: 2 }, { projectId: 1 }])
    expect(unionOf([{ envId: 1 }, { all: true }, { envId: 2 }])).toEqual([{ all: true }])
  })

  it('webhooks within one window make one purge, and each gets its count', async () => {
    const { PurgeCoalescer } = await import('../../src/cache/webhook-coalesce.js')
    const calls: unknown[] = []
    const c = new PurgeCoalescer((targets) => { calls.push(targets); return 7 }, 0)
    const counts = await Promise.all([c.add([{ envId: 1 }]), c.add([{ envId: 2 }]), c.add([{ envId: 1 }])])
    expect(counts).toEqual([7, 7, 7])
    expect(calls).toEqual([[{ envId: 1 }, { envId: 2 }]])
    expect(await c.add([])).toBe(0)
    expect(calls).toHaveLength(1)
  })
})
