import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { CORE_LAST_MODIFIED_LAG_MS, DocumentCache } from '../../src/cache/core.js'
import { TooLargeToCache, type CacheRule, type OversizeAnswer, type Fill, type LookupResult, type UpstreamAnswer } from '../../src/cache/document.js'
import { clientHasCurrent, etagOf } from '../../src/cache/validators.js'

const RULE: CacheRule = { ttl: 30_000, staleWhileRevalidate: 60_000, staleIfError: 600_000, maxEntrySize: 1024 * 1024 }
const KEY = 'ser.test-key'
const URL_ = '/api/v1/environment-document/'

class FakeClock { t = 1_700_000_000_000; now (): number { return this.t } advance (ms: number): void { this.t += ms } }

function doc (id: number, extra: Record<string, unknown> = {}): Buffer {
  return Buffer.from(JSON.stringify({ id, api_key: 'client-key', project: { id: 7, segments: [] }, feature_states: [], ...extra }))
}

function ok (body: Buffer, headers: Record<string, string> = {}): UpstreamAnswer {
  return { statusCode: 200, headers: { 'content-type': 'application/json', ...headers }, body }
}

/** A fill whose answers the test controls; counts calls and records the conditional header. */
function fakeUpstream (answer: (n: number) => UpstreamAnswer | Promise<UpstreamAnswer>) {
  const calls: Array<{ ifModifiedSince?: string }> = []
  const fill: Fill = async (conditional) => { calls.push(conditional); return await answer(calls.length) }
  return { fill, calls }
}

function deferred<T> () {
  let resolve!: (v: T) => void
  let reject!: (e: unknown) => void
  const promise = new Promise<T>((res, rej) => { resolve = res; reject = rej })
  return { promise, resolve, reject }
}

function setup (opts: { maxSize?: number } = {}) {
  const clock = new FakeClock()
  const events: Record<string, number> = {}
  const cache = new DocumentCache({ maxSize: opts.maxSize ?? 50 * 1024 * 1024, clock: () => clock.now(), onEvent: (e, n) => { events[e] = (events[e] ?? 0) + n } })
  return { clock, cache, events }
}

function bodyOf (r: LookupResult): string {
  if (r.kind === 'document') return r.document.body.toString()
  if (r.kind === 'response') return r.response.body.toString()
  return '<unavailable>'
}

function statusOf (r: LookupResult): string {
  return r.kind === 'unavailable' || r.kind === 'pass' ? r.kind : r.status
}

const flush = async (): Promise<void> => { for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r)) }

describe('single flight', () => {
  it('500 concurrent cold lookups make one upstream call and all get the same document', async () => {
    const { cache } = setup()
    const gate = deferred<UpstreamAnswer>()
    const up = fakeUpstream(() => gate.promise)
    const all = Array.from({ length: 500 }, async () => await cache.lookup({ envKey: KEY, url: URL_, rule: RULE, fill: up.fill }))
    await flush()
    gate.resolve(ok(doc(1)))
    const results = await Promise.all(all)
    expect(up.calls).toHaveLength(1)
    const first = results[0]!
    expect(first.kind).toBe('document')
    for (const r of results) {
      expect(r).toMatchObject({ kind: 'document', status: 'MISS' })
      if (r.kind === 'document' && first.kind === 'document') expect(r.document).toBe(first.document)
    }
    const again = await cache.lookup({ envKey: KEY, url: URL_, rule: RULE, fill: up.fill })
    expect(again).toMatchObject({ kind: 'document', status: 'HIT', freshForMs: RULE.ttl })
    expect(up.calls).toHaveLength(1)
  })

  it('all waiters share the same error, and nothing is cached', async () => {
    const { cache } = setup()
    const gate = deferred<UpstreamAnswer>()
    const up = fakeUpstream(() => gate.promise)
    const all = Array.from({ length: 50 }, async () => await cache.lookup({ envKey: KEY, url: URL_, rule: RULE, fill: up.fill }).then(() => undefined, (e: unknown) => e))
    await flush()
    const boom = new Error('connection refused')
    gate.reject(boom)
    const errors = await Promise.all(all)
    expect(up.calls).toHaveLength(1)
    for (const e of errors) expect(e).toBe(boom)
    expect(cache.stats().entries).toBe(0)
  })

  it('an uncacheable answer is shared by all waiters of the fill', async () => {
    const { cache } = setup()
    const gate = deferred<UpstreamAnswer>()
    const up = fakeUpstream(() => gate.promise)
    const all = Array.from({ length: 20 }, async () => await cache.lookup({ envKey: KEY, url: URL_, rule: RULE, fill: up.fill }))
    await flush()
    gate.resolve({ statusCode: 404, headers: { 'content-type': 'application/json' }, body: Buffer.from('{"detail":"Not found."}') })
    for (const r of await Promise.all(all)) expect(r).toMatchObject({ kind: 'response', status: 'MISS', response: { statusCode: 404 } })
    expect(up.calls).toHaveLength(1)
  })

  it('one key\'s document is never served to another key', async () => {
    const { cache } = setup()
    const a = fakeUpstream(() => ok(doc(1, { name: 'A' })))
    const b = fakeUpstream(() => ok(doc(2, { name: 'B' })))
    await cache.lookup({ envKey: 'ser.a', url: URL_, rule: RULE, fill: a.fill })
    const rb = await cache.lookup({ envKey: 'ser.b', url: URL_, rule: RULE, fill: b.fill })
    expect(statusOf(rb)).toBe('MISS')
    expect(JSON.parse(bodyOf(rb))).toMatchObject({ name: 'B' })
    expect(JSON.parse(bodyOf(await cache.lookup({ envKey: 'ser.a', url: URL_, rule: RULE, fill: a.fill })))).toMatchObject({ name: 'A' })
    // page_id is part of the key
    const p = fakeUpstream(() => ok(doc(1, { page: 2 })))
    const rp = await cache.lookup({ envKey: 'ser.a', url: `${URL_}?page_id=identity_override:1:abc`, rule: RULE, fill: p.fill })
    expect(statusOf(rp)).toBe('MISS')
    expect(JSON.parse(bodyOf(rp))).toMatchObject({ page: 2 })
  })

  it('every (key, URL, upstream) gets its own document, in any order of lookups and hits', async () => {
    // the cache remembers each one's key string (shared/client-memo.ts): a wrong memo would hand
    // one key's, page's or upstream's document to another
    const keys = ['ser.a', 'ser.b', 'ser.a\n']
    const urls = [URL_, `${URL_}?page_id=identity_override:1:x`, `${URL_}?page_id=2`]
    const upstreams = ['', 'core', 'edge']
    const target = fc.record({ k: fc.nat(keys.length - 1), u: fc.nat(urls.length - 1), up: fc.nat(upstreams.length - 1), fresh: fc.boolean() })
    await fc.assert(fc.asyncProperty(fc.array(target, { minLength: 1, maxLength: 60 }), async (seq) => {
      const { cache } = setup()
      for (const t of seq) {
        const name = `${t.k}/${t.u}/${t.up}`
        const req = { envKey: keys[t.k]!, url: urls[t.u]!, upstream: upstreams[t.up]!, rule: RULE }
        const up = fakeUpstream(() => ok(doc(1, { name })))
        if (t.fresh) {
          const d = cache.fresh(req.envKey, req.url, RULE, req.upstream)
          if (d !== undefined) expect(JSON.parse(d.body.toString())).toMatchObject({ name })
        } else {
          expect(JSON.parse(bodyOf(await cache.lookup({ ...req, fill: up.fill })))).toMatchObject({ name })
        }
      }
    }), { numRuns: 100 })
  })
})

describe('freshness', () => {
  it('stale-while-revalidate: serves stale at once while exactly one refresh runs', async () => {
    const { cache, clock } = setup()
    let gate = deferred<UpstreamAnswer>()
    const up = fakeUpstream((n) => n === 1 ? ok(doc(1, { v: 1 })) : gate.promise)
    await cache.lookup({ envKey: KEY, url: URL_, rule: RULE, fill: up.fill })
    clock.advance(RULE.ttl + 1000)
    const during = await Promise.all(Array.from({ length: 100 }, async () => await cache.lookup({ envKey: KEY, url: URL_, rule: RULE, fill: up.fill })))
    for (const r of during) {
      expect(r).toMatchObject({ kind: 'document', status: 'UPDATING', freshForMs: 0 })
      expect(JSON.parse(bodyOf(r))).toMatchObject({ v: 1 })
    }
    expect(up.calls).toHaveLength(2)
    gate.resolve(ok(doc(1, { v: 2 })))
    await flush()
    const after = await cache.lookup({ envKey: KEY, url: URL_, rule: RULE, fill: up.fill })
    expect(statusOf(after)).toBe('HIT')
    expect(JSON.parse(bodyOf(after))).toMatchObject({ v: 2 })
    gate = deferred()
  })

  it('beyond staleWhileRevalidate a request waits for the fill', async () => {
    const { cache, clock } = setup()
    const up = fakeUpstream((n) => ok(doc(1, { v: n })))
    await cache.lookup({ envKey: KEY, url: URL_, rule: RULE, fill: up.fill })
    clock.advance(RULE.ttl + RULE.staleWhileRevalidate + 1)
    const r = await cache.lookup({ envKey: KEY, url: URL_, rule: RULE, fill: up.fill })
    expect(statusOf(r)).toBe('MISS')
    expect(JSON.parse(bodyOf(r))).toMatchObject({ v: 2 })
  })

  it('stale-if-error: serves stale on upstream errors and 5xx within staleIfError, then fails', async () => {
    const { cache, clock } = setup()
    const boom = new Error('timeout')
    const up = fakeUpstream((n) => {
      if (n === 1) return ok(doc(1))
      if (n === 2) throw boom
      return { statusCode: 502, headers: { 'content-type': 'text/html' }, body: Buffer.from('<h1>Bad gateway</h1>') }
    })
    await cache.lookup({ envKey: KEY, url: URL_, rule: RULE, fill: up.fill })
    clock.advance(RULE.ttl + RULE.staleWhileRevalidate + 1)
    expect(await cache.lookup({ envKey: KEY, url: URL_, rule: RULE, fill: up.fill })).toMatchObject({ kind: 'document', status: 'STALE' })
    expect(await cache.lookup({ envKey: KEY, url: URL_, rule: RULE, fill: up.fill })).toMatchObject({ kind: 'document', status: 'STALE' })
    clock.advance(RULE.staleIfError)
    const after = await cache.lookup({ envKey: KEY, url: URL_, rule: RULE, fill: up.fill })
    expect(after).toMatchObject({ kind: 'response', status: 'MISS', response: { statusCode: 502 } })
    const thrower = fakeUpstream(() => { throw boom })
    await expect(cache.lookup({ envKey: KEY, url: URL_, rule: RULE, fill: thrower.fill })).rejects.toBe(boom)
  })

  it('breaker open: fresh is a HIT, stale within staleIfError is served without calling upstream, else unavailable', async () => {
    const { cache, clock } = setup()
    const up = fakeUpstream(() => ok(doc(1)))
    await cache.lookup({ envKey: KEY, url: URL_, rule: RULE, fill: up.fill })
    expect(statusOf(await cache.lookup({ envKey: KEY, url: URL_, rule: RULE, fill: up.fill, breakerOpen: true }))).toBe('HIT')
    clock.advance(RULE.ttl + 1)
    expect(statusOf(await cache.lookup({ envKey: KEY, url: URL_, rule: RULE, fill: up.fill, breakerOpen: true }))).toBe('STALE')
    expect(up.calls).toHaveLength(1)
    expect(await cache.lookup({ envKey: 'ser.other', url: URL_, rule: RULE, fill: up.fill, breakerOpen: true })).toEqual({ kind: 'unavailable' })
    clock.advance(RULE.staleIfError)
    expect(await cache.lookup({ envKey: KEY, url: URL_, rule: RULE, fill: up.fill, breakerOpen: true })).toEqual({ kind: 'unavailable' })
    expect(up.calls).toHaveLength(1)
  })

  it('revalidates with If-Modified-Since; a 304 refreshes the entry without a body', async () => {
    const { cache, clock, events } = setup()
    const lm = 'Tue, 14 Nov 2023 22:13:20 GMT'
    const up = fakeUpstream((n) => n === 1
      ? ok(doc(1), { 'last-modified': lm, 'x-flagsmith-document-updated-at': '1700000000.0', 'cache-control': 'no-store' })
      : { statusCode: 304, headers: {}, body: Buffer.alloc(0) })
    const first = await cache.lookup({ envKey: KEY, url: URL_, rule: RULE, fill: up.fill })
    expect(up.calls[0]).toEqual({})
    if (first.kind !== 'document') throw new Error('expected a document')
    expect(first.document.headers).toEqual({ 'content-type': 'application/json', 'x-flagsmith-document-updated-at': '1700000000.0' })
    expect(first.document.lastModified).toBe(lm)
    clock.advance(RULE.ttl + RULE.staleWhileRevalidate + 1)
    const second = await cache.lookup({ envKey: KEY, url: URL_, rule: RULE, fill: up.fill })
    expect(up.calls[1]).toEqual({ ifModifiedSince: lm })
    expect(second).toMatchObject({ kind: 'document', status: 'MISS', freshForMs: RULE.ttl })
    if (second.kind !== 'document') throw new Error('expected a document')
    expect(second.document.body).toBe(first.document.body)
    expect(second.document.etag).toBe(first.document.etag)
    expect(events.revalidated).toBe(1)
    expect(statusOf(await cache.lookup({ envKey: KEY, url: URL_, rule: RULE, fill: up.fill }))).toBe('HIT')
  })

  it('after a purge the next fetches are unconditional for a minute (Core\'s Last-Modified lags)', async () => {
    const { cache, clock } = setup()
    const lm = 'Tue, 14 Nov 2023 22:13:20 GMT'
    const up = fakeUpstream(() => ok(doc(1), { 'last-modified': lm }))
    await cache.lookup({ envKey: KEY, url: URL_, rule: RULE, fill: up.fill })
    expect(cache.purge({ envId: 1 })).toBe(1)
    await cache.lookup({ envKey: KEY, url: URL_, rule: RULE, fill: up.fill })
    expect(up.calls[1]).toEqual({})
    clock.advance(RULE.ttl + RULE.staleWhileRevalidate + 1)
    await cache.lookup({ envKey: KEY, url: URL_, rule: RULE, fill: up.fill })
    // 91 s after the purge: past the lag window, so conditional again
    expect(RULE.ttl + RULE.staleWhileRevalidate + 1).toBeGreaterThan(CORE_LAST_MODIFIED_LAG_MS)
    expect(up.calls[2]).toEqual({ ifModifiedSince: lm })

    const short: CacheRule = { ...RULE, ttl: 1000, staleWhileRevalidate: 0 }
    cache.purge({ key: KEY })
    await cache.lookup({ envKey: KEY, url: URL_, rule: short, fill: up.fill })
    clock.advance(1001)
    await cache.lookup({ envKey: KEY, url: URL_, rule: short, fill: up.fill })
    expect(up.calls[3]).toEqual({})
    expect(up.calls[4]).toEqual({})
  })

  it('Last-Modified moves forward when the body changes but Core\'s does not', async () => {
    const { cache, clock } = setup()
    const lm = 'Tue, 14 Nov 2023 22:13:20 GMT'
    const up = fakeUpstream((n) => ok(doc(1, { v: n }), { 'last-modified': lm }))
    const a = await cache.lookup({ envKey: KEY, url: URL_, rule: RULE, fill: up.fill })
    clock.advance(RULE.ttl + RULE.staleWhileRevalidate + 1)
    const b = await cache.lookup({ envKey: KEY, url: URL_, rule: RULE, fill: up.fill })
    if (a.kind !== 'document' || b.kind !== 'document') throw new Error('expected documents')
    expect(b.document.etag).not.toBe(a.document.etag)
    expect(b.document.lastModifiedMs).toBeGreaterThan(a.document.lastModifiedMs)
    expect(clientHasCurrent(b.document, undefined, a.document.lastModified)).toBe(false)
    expect(clientHasCurrent(b.document, undefined, b.document.lastModified)).toBe(true)
  })
})

describe('what is stored', () => {
  it('a document larger than maxEntrySize passes through uncached', async () => {
    const { cache } = setup()
    const big = doc(1, { pad: 'x'.repeat(5000) })
    const up = fakeUpstream(() => ok(big))
    const rule = { ...RULE, maxEntrySize: 4096 }
    for (let i = 0; i < 3; i++) {
      const r = await cache.lookup({ envKey: KEY, url: URL_, rule, fill: up.fill })
      expect(r).toMatchObject({ kind: 'response', status: 'MISS', response: { statusCode: 200 } })
      expect(bodyOf(r)).toBe(big.toString())
    }
    expect(up.calls).toHaveLength(3)
    expect(cache.stats()).toMatchObject({ entries: 0, bytes: 0 })
  })

  it('a fill that finds the document too large: its answer goes to the fill\'s owner only, and the key passes for the rule\'s ttl', async () => {
    const { cache, clock } = setup()
    const gate = deferred<UpstreamAnswer>()
    const up = fakeUpstream(() => gate.promise)
    const owner = {}
    const answer: OversizeAnswer = { statusCode: 200, take: (o) => o === owner ? 'the stream' : undefined }
    const waiting = Array.from({ length: 3 }, async () => await cache.lookup({ envKey: KEY, url: URL_, rule: RULE, fill: up.fill }))
    await flush()
    gate.reject(new TooLargeToCache(answer))
    const results = await Promise.all(waiting)
    expect(up.calls).toHaveLength(1)
    for (const r of results) expect(r).toEqual({ kind: 'pass', answer })
    expect(answer.take(owner)).toBe('the stream')
    expect(answer.take({})).toBeUndefined()

    // within the ttl: straight to the proxy, no fill; after it, a fill tries again
    clock.advance(RULE.ttl - 1)
    expect(await cache.lookup({ envKey: KEY, url: URL_, rule: RULE, fill: up.fill })).toEqual({ kind: 'pass' })
    expect(cache.stats().tooLargeEntries).toBe(1)
    expect(up.calls).toHaveLength(1)
    clock.advance(2)
    const small = fakeUpstream(() => ok(doc(1)))
    expect(statusOf(await cache.lookup({ envKey: KEY, url: URL_, rule: RULE, fill: small.fill }))).toBe('MISS')
    expect(small.calls).toHaveLength(1)
  })

  it('a large error page is passed on but not remembered as a large document', async () => {
    const { cache } = setup()
    const up = fakeUpstream(() => { throw new TooLargeToCache({ statusCode: 502, take: () => undefined }) })
    expect((await cache.lookup({ envKey: KEY, url: URL_, rule: RULE, fill: up.fill })).kind).toBe('pass')
    expect((await cache.lookup({ envKey: KEY, url: URL_, rule: RULE, fill: up.fill })).kind).toBe('pass')
    expect(up.calls).toHaveLength(2)
    expect(cache.stats().tooLargeEntries).toBe(0)
  })

  it('only 200 JSON is stored; a refresh answered otherwise keeps the old copy, unless Core refuses the key', async () => {
    const { cache, clock } = setup()
    const html = fakeUpstream(() => ({ statusCode: 200, headers: { 'content-type': 'text/html' }, body: Buffer.from('<html>') }))
    expect((await cache.lookup({ envKey: KEY, url: URL_, rule: RULE, fill: html.fill })).kind).toBe('response')
    const broken = fakeUpstream(() => ({ statusCode: 200, headers: { 'content-type': 'application/json' }, body: Buffer.from('{"id":') }))
    expect((await cache.lookup({ envKey: KEY, url: URL_, rule: RULE, fill: broken.fill })).kind).toBe('response')
    expect(cache.stats().entries).toBe(0)

    // a 404 (or 406, an HTML page…) to a refresh says nothing about the document: STALE (attack 11)
    const up = fakeUpstream((n) => n === 1 ? ok(doc(1)) : { statusCode: 404, headers: {}, body: Buffer.from('{"detail":"Not found."}') })
    await cache.lookup({ envKey: KEY, url: URL_, rule: RULE, fill: up.fill })
    clock.advance(RULE.ttl + RULE.staleWhileRevalidate + 1)
    expect(await cache.lookup({ envKey: KEY, url: URL_, rule: RULE, fill: up.fill })).toMatchObject({ kind: 'document', status: 'STALE' })
    expect(cache.stats().entries).toBe(1)
    // past staleIfError the 404 is the answer, and the copy is still not replaced by it
    clock.advance(RULE.staleIfError)
    expect(await cache.lookup({ envKey: KEY, url: URL_, rule: RULE, fill: up.fill })).toMatchObject({ kind: 'response', response: { statusCode: 404 } })

    // Core refusing the key on a refresh drops the copy: a revoked key stops being served
    const revoked = fakeUpstream((n) => n === 1 ? ok(doc(1)) : { statusCode: 403, headers: {}, body: Buffer.from('{"detail":"Invalid or missing Environment Key"}') })
    await cache.lookup({ envKey: 'ser.revoked', url: URL_, rule: RULE, fill: revoked.fill })
    clock.advance(RULE.ttl + RULE.staleWhileRevalidate + 1)
    expect(await cache.lookup({ envKey: 'ser.revoked', url: URL_, rule: RULE, fill: revoked.fill })).toMatchObject({ kind: 'response', response: { statusCode: 403 } })
    expect(cache.stats().entries).toBe(0)
  })

  it('total bytes stay under maxSize with many keys; least recently used go first', async () => {
    const maxSize = 100 * 1024
    const { cache, events } = setup({ maxSize })
    const body = doc(1, { pad: 'y'.repeat(1000) })
    for (let i = 0; i < 1000; i++) {
      await cache.lookup({ envKey: `ser.key-${i}`, url: URL_, rule: RULE, fill: async () => ok(body) })
      expect(cache.bytes).toBeLessThanOrEqual(maxSize)
    }
    const s = cache.stats()
    expect(s.bytes).toBeLessThanOrEqual(maxSize)
    expect(s.bytes).toBeGreaterThan(maxSize * 0.9)
    expect(s.entries).toBeLessThan(100)
    expect(events.evict).toBeGreaterThan(900)
    const newest = await cache.lookup({ envKey: 'ser.key-999', url: URL_, rule: RULE, fill: async () => { throw new Error('not expected') } })
    expect(statusOf(newest)).toBe('HIT')
  })

  it('negative caching: Core\'s 403 for a key is answered from memory for a few seconds', async () => {
    const { cache, clock } = setup()
    const forbidden: UpstreamAnswer = { statusCode: 403, headers: { 'content-type': 'application/json' }, body: Buffer.from('{"detail":"Invalid or missing Environment Key"}') }
    const up = fakeUpstream(() => forbidden)
    expect(await cache.lookup({ envKey: 'bad', url: URL_, rule: RULE, fill: up.fill })).toMatchObject({ kind: 'response', status: 'MISS', response: { statusCode: 403 } })
    for (let i = 0; i < 100; i++) {
      expect(await cache.lookup({ envKey: 'bad', url: `${URL_}?x=${i}`, rule: RULE, fill: up.fill })).toMatchObject({ kind: 'response', status: 'HIT', response: { statusCode: 403 } })
    }
    expect(up.calls).toHaveLength(1)
    const good = fakeUpstream(() => ok(doc(1)))
    expect(statusOf(await cache.lookup({ envKey: 'good', url: URL_, rule: RULE, fill: good.fill }))).toBe('MISS')
    clock.advance(5001)
    await cache.lookup({ envKey: 'bad', url: URL_, rule: RULE, fill: up.fill })
    expect(up.calls).toHaveLength(2)
    // a purge of the key forgets the 403 at once (a key that was just created)
    expect(cache.purge({ key: 'bad' })).toBe(1)
    await cache.lookup({ envKey: 'bad', url: URL_, rule: RULE, fill: up.fill })
    expect(up.calls).toHaveLength(3)
  })
})

describe('purge', () => {
  async function fillThree (cache: DocumentCache): Promise<void> {
    await cache.lookup({ envKey: 'ser.a', url: URL_, rule: RULE, fill: async () => ok(doc(1, { project: { id: 7 } })) })
    await cache.lookup({ envKey: 'ser.a', url: `${URL_}?page_id=p2`, rule: RULE, fill: async () => ok(doc(1, { project: { id: 7 } })) })
    await cache.lookup({ envKey: 'ser.b', url: URL_, rule: RULE, fill: async () => ok(doc(2, { project: { id: 8 } })) })
  }

  it('by key drops every page of that key only', async () => {
    const { cache } = setup()
    await fillThree(cache)
    expect(cache.purge({ key: 'ser.a' })).toBe(2)
    expect(cache.stats().entries).toBe(1)
    expect(cache.purge({ key: 'ser.a' })).toBe(0)
  })

  it('by environment id, by project id, and all', async () => {
    const { cache } = setup()
    await fillThree(cache)
    expect(cache.purge({ envId: 2 })).toBe(1)
    expect(cache.purge({ projectId: 7 })).toBe(2)
    await fillThree(cache)
    expect(cache.purge({ all: true })).toBe(3)
    expect(cache.stats()).toMatchObject({ entries: 0, bytes: 0 })
  })

  it('a fill in flight during a purge answers its waiters but is not stored', async () => {
    const { cache } = setup()
    const gate = deferred<UpstreamAnswer>()
    const up = fakeUpstream((n) => n === 1 ? gate.promise : ok(doc(1, { v: 'new' })))
    const waiting = cache.lookup({ envKey: KEY, url: URL_, rule: RULE, fill: up.fill })
    await flush()
    cache.purge({ envId: 1 })
    gate.resolve(ok(doc(1, { v: 'old' })))
    expect(JSON.parse(bodyOf(await waiting))).toMatchObject({ v: 'old' })
    const next = await cache.lookup({ envKey: KEY, url: URL_, rule: RULE, fill: up.fill })
    expect(statusOf(next)).toBe('MISS')
    expect(JSON.parse(bodyOf(next))).toMatchObject({ v: 'new' })
  })

  it('a refresh in flight during a purge is not stored and its stale copy is gone', async () => {
    const { cache, clock } = setup()
    const gate = deferred<UpstreamAnswer>()
    const up = fakeUpstream((n) => n === 1 ? ok(doc(1, { v: 1 })) : n === 2 ? gate.promise : ok(doc(1, { v: 3 })))
    await cache.lookup({ envKey: KEY, url: URL_, rule: RULE, fill: up.fill })
    clock.advance(RULE.ttl + 1)
    expect(statusOf(await cache.lookup({ envKey: KEY, url: URL_, rule: RULE, fill: up.fill }))).toBe('UPDATING')
    expect(cache.purge({ key: KEY })).toBe(1)
    gate.resolve(ok(doc(1, { v: 2 })))
    await flush()
    const next = await cache.lookup({ envKey: KEY, url: URL_, rule: RULE, fill: up.fill })
    expect(statusOf(next)).toBe('MISS')
    expect(JSON.parse(bodyOf(next))).toMatchObject({ v: 3 })
  })
})

describe('conditional requests from clients', () => {
  it('matches If-None-Match (weak or strong, lists, *) and If-Modified-Since, only while fresh', async () => {
    const { cache, clock } = setup()
    const lm = 'Tue, 14 Nov 2023 22:13:20 GMT'
    const body = doc(1)
    await cache.lookup({ envKey: KEY, url: URL_, rule: RULE, fill: async () => ok(body, { 'last-modified': lm }) })
    const etag = etagOf(body)
    expect(cache.notModified(KEY, URL_, RULE, etag, undefined)?.document.etag).toBe(etag)
    expect(cache.notModified(KEY, URL_, RULE, `"nope", W/${etag}`, undefined)).toBeDefined()
    expect(cache.notModified(KEY, URL_, RULE, '*', undefined)).toBeDefined()
    expect(cache.notModified(KEY, URL_, RULE, '"nope"', lm)).toBeUndefined() // If-None-Match wins
    expect(cache.notModified(KEY, URL_, RULE, undefined, lm)).toBeDefined()
    expect(cache.notModified(KEY, URL_, RULE, undefined, 'Tue, 14 Nov 2023 22:13:19 GMT')).toBeUndefined()
    expect(cache.notModified(KEY, URL_, RULE, undefined, 'garbage')).toBeUndefined()
    expect(cache.notModified('ser.other', URL_, RULE, etag, undefined)).toBeUndefined()
    clock.advance(RULE.ttl)
    expect(cache.notModified(KEY, URL_, RULE, etag, undefined)).toBeUndefined()
  })
})

describe('resize', () => {
  it('keeps the most recently used entries that fit the new budget', async () => {
    const { cache } = setup({ maxSize: 100_000 })
    const body = doc(1, { pad: 'z'.repeat(1000) })
    for (let i = 0; i < 50; i++) await cache.lookup({ envKey: `ser.k${i}`, url: URL_, rule: RULE, fill: async () => ok(body) })
    expect(cache.stats().entries).toBe(50)
    cache.resize(10_000)
    expect(cache.bytes).toBeLessThanOrEqual(10_000)
    expect(statusOf(await cache.lookup({ envKey: 'ser.k49', url: URL_, rule: RULE, fill: async () => { throw new Error('not expected') } }))).toBe('HIT')
  })
})

describe('pages (attack 10, src/cache/pages.ts)', () => {
  const page = (i: number): string => `${URL_}?page_id=identity_override:1:${i}`

  it('page_id is dropped for an upstream that does not paginate and kept for edge', () => {
    const { cache } = setup()
    expect(cache.documentUrl(page(1), 'core')).toBe(URL_)
    expect(cache.documentUrl(page(1), 'edge')).toBe(page(1))
    expect(cache.documentUrl('/api/v1/flags/?feature=x', 'core')).toBe('/api/v1/flags/?feature=x')
  })

  it('an upstream whose document names a next page paginates from then on', async () => {
    const { cache } = setup()
    const link = { link: `<${URL_}?page_id=identity_override%3A1%3Aabc>; rel="next"` }
    await cache.lookup({ envKey: KEY, url: URL_, upstream: 'core', rule: RULE, fill: async () => ok(doc(1), link) })
    expect(cache.documentUrl(page(1), 'core')).toBe(page(1))
    expect(cache.documentUrl(page(1), 'other')).toBe(URL_)
  })

  it('distinct pages filled at once store at most 16; every waiter still gets its page', async () => {
    const { cache } = setup()
    const gate = deferred<void>()
    const all = Array.from({ length: 40 }, async (_, i) => await cache.lookup({
      envKey: KEY, url: page(i), upstream: 'edge', rule: RULE, fill: async () => { await gate.promise; return ok(doc(1, { page: i })) }
    }))
    await flush()
    gate.resolve()
    const results = await Promise.all(all)
    for (const [i, r] of results.entries()) expect(JSON.parse(bodyOf(r))).toMatchObject({ page: i })
    expect(cache.stats().entries).toBe(16)
    // past the bound: not looked up (proxied)
    expect(statusOf(await cache.lookup({ envKey: KEY, url: page(99), upstream: 'edge', rule: RULE, fill: async () => ok(doc(1)) }))).toBe('pass')
    // another key has its own 16
    expect(statusOf(await cache.lookup({ envKey: 'ser.other', url: page(99), upstream: 'edge', rule: RULE, fill: async () => ok(doc(1)) }))).toBe('MISS')
  })

  it('a page slot is free again once its entry could no longer be served, or after a purge of the key', async () => {
    const { cache, clock } = setup()
    for (let i = 0; i < 16; i++) await cache.lookup({ envKey: KEY, url: page(i), upstream: 'edge', rule: RULE, fill: async () => ok(doc(1)) })
    const next = { envKey: KEY, url: page(16), upstream: 'edge', rule: RULE, fill: async () => ok(doc(1)) }
    expect(statusOf(await cache.lookup(next))).toBe('pass')
    cache.purge({ key: KEY })
    expect(statusOf(await cache.lookup(next))).toBe('MISS')
    for (let i = 17; i < 32; i++) await cache.lookup({ ...next, url: page(i) })
    expect(statusOf(await cache.lookup({ ...next, url: page(40) }))).toBe('pass')
    clock.advance(RULE.ttl + Math.max(RULE.staleWhileRevalidate, RULE.staleIfError))
    expect(statusOf(await cache.lookup({ ...next, url: page(40) }))).toBe('MISS')
  })
})
