/**
 * Attack 18: a policy that validates failed at run time. A rate of 400 digits per second gave a
 * 500 on every request; `1/99999999999999999999d` gave `Retry-After: 402417651` and `w=8.64e+24`.
 * Rates and durations are bounded at validation, with an error naming file:line:col; the extreme
 * values that do validate work at run time.
 */
import { afterAll, describe, expect, it } from 'vitest'
import { loadPolicy } from '../../src/policy/load.js'
import { startRecordingUpstream, type RecordingUpstream } from '../support/recording-upstream.js'
import { policyYaml, startTestGateway, type TestGateway } from '../support/gateway.js'
import { json, raw } from '../support/http.js'

const BASE = 'upstreams:\n  core: { url: "http://127.0.0.1:1" }\n'

function route (limit: string): string {
  return `${BASE}routes:\n  - name: flags\n    match: { pathPrefix: / }\n    upstream: core\n    limit: ${limit}\n`
}

function verdict (text: string): { ok: boolean; message: string; line?: number } {
  const r = loadPolicy('p.yaml', text, {})
  if (r.ok) return { ok: true, message: '' }
  return { ok: false, message: r.errors.map((e) => `${e.path}: ${e.message}`).join('; '), line: r.errors[0]!.line }
}

describe('attack 18: numbers a policy can carry are bounded at validation', () => {
  it.each([
    ['a rate of 400 digits per second', route(`{ rate: ${'9'.repeat(400)}/s, burst: 10 }`), /at most 1000000\/s/],
    ['one per 10^20 days', route('{ rate: 1/99999999999999999999d, burst: 10 }'), /at least 1\/d/],
    ['a burst past a billion', route('{ rate: 1/s, burst: 99999999999999 }'), /at most 1000000000/],
    ['a 400-digit duration', `${BASE}routes:\n  - name: d\n    match: { pathPrefix: / }\n    upstream: core\n    cache: { ttl: ${'9'.repeat(400)}s }\n`, /at most 24d/],
    ['a block lasting 100 years', `${BASE}routes:\n  - name: d\n    match: { pathPrefix: / }\n    upstream: core\nabuse: { rejections: 10 per 1m, blockFor: 36500d }\n`, /at most 24d/],
    ['an abuse window of 10^20 days', `${BASE}routes:\n  - name: d\n    match: { pathPrefix: / }\n    upstream: core\nabuse: { rejections: 10 per 99999999999999999999d, blockFor: 1m }\n`, /window must be at most 24d/]
  ])('%s is refused with a clear, positioned error', (_what, text, message) => {
    const v = verdict(text)
    expect(v.ok).toBe(false)
    expect(v.message).toMatch(message)
    expect(v.line).toBeGreaterThan(1)
  })
})

describe('the extreme values that validate work at run time', () => {
  let up: RecordingUpstream | undefined
  let gw: TestGateway | undefined
  afterAll(async () => { await gw?.close(); await up?.close() })

  it('1000000/s and 1/d limits answer with sane headers, no 500', async () => {
    up = await startRecordingUpstream()
    gw = await startTestGateway(policyYaml({
      coreUrl: up.url,
      routes: `  - name: fast
    match: { pathPrefix: /fast/ }
    upstream: core
    limit: { by: ip, rate: 1000000/s, burst: 1000000000 }
  - name: slow
    match: { pathPrefix: / }
    upstream: core
    limit: { by: ip, rate: 1/d, burst: 1 }`
    }))
    const fast = await raw(gw.url, '/fast/x')
    expect(fast.status).toBe(200)
    expect(fast.headers['ratelimit-policy']).toMatch(/^"fast";q=1000000000;w=\d+$/)
    expect((await raw(gw.url, '/slow/x')).status).toBe(200)
    const refused = await raw(gw.url, '/slow/x')
    expect(refused.status).toBe(429)
    expect(json(refused)).toMatchObject({ code: 'FLAGGATE_RATE_LIMITED' })
    // at most a day: the longest wait a validated policy can ask for
    expect(Number(refused.headers['retry-after'])).toBeLessThanOrEqual(86_400)
    expect(refused.headers['ratelimit-policy']).toMatch(/^"slow";q=1;w=86400$/)
  })
})
