/**
 * Issue 7, "memory grows with client-chosen keys": 40,000 unique 15 KB keys took the heap from
 * 30 MB to 696 MB because the key-digest, log-redaction and negative caches were bounded by entry
 * count. Keys over 256 bytes now get 431 before reaching them (test/routing/door.test.ts), but
 * each structure is bounded in bytes on its own: here each takes unique 15 KB inputs through the
 * code path that fills it, and what it retains, counted from its own entries, stays within its
 * byte budget. 4,000 inputs (60 MB) are 7× the largest budget and all fit the old entry-count
 * bounds (10,000 and 50,000), so the old structures would retain all 60 MB; 40,000 would only
 * take ten times longer on a shared machine (V8 hashes a 15 KB string whole for every Map lookup).
 */
import { describe, expect, it } from 'vitest'
import { CLIENT_MEMO_BYTES, bucketKeys, bucketRequests, planFor } from '../../src/rate-limit/keys.js'
import { keyDigests } from '../../src/shared/key-digest.js'
import { loggableQuery, loggableUrl, redactions } from '../../src/observe/access-log.js'
import { DocumentCache } from '../../src/cache/core.js'
import { loadPolicy } from '../../src/policy/load.js'

const N = 4_000
const FILLER = 'x'.repeat(15_000)
/** a unique 15 KB key; built lazily so the test itself holds one at a time */
const hugeKey = (i: number): string => `${i.toString(36)}-${FILLER}`

describe('caches keyed by client input are bounded in bytes', () => {
  it('the key-digest memo of the rate limiter', () => {
    const r = loadPolicy('p.yaml', 'upstreams:\n  core: { url: "http://x" }\nroutes:\n  - name: d\n    match: { pathPrefix: / }\n    upstream: core\n    limit: { by: environmentKey, rate: 1/s, burst: 1 }\n', {})
    if (!r.ok) throw new Error('policy')
    const plan = planFor('d', r.policy.routes[0]!.limits)
    for (let i = 0; i < N; i++) bucketKeys(plan, { envKey: hugeKey(i), clientIp: '203.0.113.7', headers: {} })
    expect(keyDigests.size).toBeGreaterThan(0)
    expect(keyDigests.retainedChars()).toBeLessThanOrEqual(keyDigests.maxBytes)
    expect(keyDigests.bytes).toBeLessThanOrEqual(keyDigests.maxBytes)
    expect(keyDigests.maxBytes).toBeLessThanOrEqual(16 * 1024 * 1024)
  })

  it("the rate limiter's memo of recent clients' bucket keys", () => {
    const r = loadPolicy('p.yaml', 'upstreams:\n  core: { url: "http://x" }\nroutes:\n  - name: d\n    match: { pathPrefix: / }\n    upstream: core\n    limit:\n      - { by: environmentKey, rate: 1/s, burst: 1 }\n      - { by: [environmentKey, ip], rate: 1/s, burst: 1 }\n', {})
    if (!r.ok) throw new Error('policy')
    const plan = planFor('d', r.policy.routes[0]!.limits)
    const memo = plan.clients!
    for (let i = 0; i < N; i++) bucketRequests(plan, { envKey: hugeKey(i), clientIp: `203.0.113.${i % 250}`, headers: {} })
    expect(memo.retainedChars()).toBeGreaterThan(15_000)
    expect(memo.retainedChars()).toBeLessThanOrEqual(memo.bytes)
    expect(memo.bytes).toBeLessThanOrEqual(CLIENT_MEMO_BYTES)
    expect(CLIENT_MEMO_BYTES).toBeLessThanOrEqual(16 * 1024 * 1024)
  })

  it('the redaction memos of the access log (keys in headers and paths, identifiers)', () => {
    for (let i = 0; i < N; i++) {
      redactions.keys.get(hugeKey(i))
      loggableUrl(`/api/v1/environments/${hugeKey(i)}/featurestates/`, '')
      loggableQuery(`?identifier=${hugeKey(i)}`)
    }
    for (const memo of [redactions.keys, redactions.identifiers]) {
      expect(memo.size).toBeGreaterThan(0)
      expect(memo.retainedChars()).toBeLessThanOrEqual(memo.maxBytes)
      expect(memo.bytes).toBeLessThanOrEqual(memo.maxBytes)
      expect(memo.maxBytes).toBeLessThanOrEqual(16 * 1024 * 1024)
    }
  })

  it("the cache's negative (403) cache", async () => {
    const negativeMaxBytes = 8 * 1024 * 1024
    const cache = new DocumentCache({ maxSize: 1024 * 1024, negativeMaxBytes })
    const forbidden = { statusCode: 403, headers: { 'content-type': 'application/json' }, body: Buffer.from('{"detail":"Invalid or missing Environment Key"}') }
    const rule = { ttl: 30_000, staleWhileRevalidate: 0, staleIfError: 0, maxEntrySize: 1024 * 1024 }
    for (let i = 0; i < N; i++) {
      await cache.lookup({ envKey: hugeKey(i), url: '/api/v1/environment-document/', rule, fill: async () => forbidden })
    }
    const s = cache.stats()
    expect(s.negativeEntries).toBeGreaterThan(0)
    // each entry holds at least its 15 KB key: counted from the entries, not from the cache's own sum
    expect(s.negativeEntries * 15_000).toBeLessThanOrEqual(negativeMaxBytes)
    expect(s.negativeBytes).toBeLessThanOrEqual(negativeMaxBytes)
    // and the last key's 403 is still remembered
    const again = await cache.lookup({ envKey: hugeKey(N - 1), url: '/api/v1/environment-document/', rule, fill: async () => { throw new Error('should be remembered') } })
    expect(again).toMatchObject({ kind: 'response', status: 'HIT' })
  })
})
