/**
 * Attack 5: a User-Agent block pattern that safe-regex2 accepted (`^([a-z]|[0-9a-f])*-bot$`) took
 * 14.5 s on one 28-byte User-Agent on V8's backtracking engine, blocking the event loop for every
 * client, each extra character doubling it. Patterns come from the policy and, as runtime blocks,
 * from the admin API and Redis. On RE2 (re2js) the match is linear in the User-Agent.
 *
 * Scale: the issue's 28 bytes (2^27 paths: seconds on the old engine, even once V8 has compiled
 * the pattern to native code); the bound asserted is
 * 1 s for the whole exchange, hundreds of times what the linear engine needs.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startRecordingUpstream, type RecordingUpstream } from '../support/recording-upstream.js'
import { policyYaml, startTestGateway, type TestGateway } from '../support/gateway.js'
import { json, raw } from '../support/http.js'
import { compileUserAgentPattern } from '../../src/shared/ua-pattern.js'

const PATTERN = '^([a-z]|[0-9a-f])*-bot$'
const HOSTILE_UA = 'a'.repeat(27) + '!'
const TOKEN = 'security-test-token-0123456789'

let up: RecordingUpstream
let gw: TestGateway

beforeAll(async () => {
  up = await startRecordingUpstream()
  gw = await startTestGateway(policyYaml({
    coreUrl: up.url,
    adminToken: TOKEN,
    extra: `blocklist:\n  - { userAgent: "${PATTERN}", routes: [flags], reason: "bots" }\n`
  }))
})
afterAll(async () => { await gw?.close(); await up?.close() })

async function timed (path: string, ua: string): Promise<{ status: number; ms: number }> {
  const t0 = performance.now()
  const r = await raw(gw.url, path, { headers: { 'user-agent': ua, 'x-environment-key': 'k' } })
  return { status: r.status, ms: performance.now() - t0 }
}

describe('attack 5: a User-Agent pattern with exponential backtracking', () => {
  it('from the policy: the hostile User-Agent is answered at once, the pattern still blocks bots', async () => {
    const r = await timed('/api/v1/flags/', HOSTILE_UA)
    expect(r.status).toBe(200)
    expect(r.ms).toBeLessThan(1000)
    expect((await timed('/api/v1/flags/', 'abc12-bot')).status).toBe(403)
  })

  it('as a runtime block (admin API, the same path as one from Redis)', async () => {
    const add = await raw(gw.adminUrl, '/admin/blocks', {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ userAgent: PATTERN, routes: ['identities'], reason: 'bots', ttl: '1h' })
    })
    expect(add.status, add.body.toString()).toBe(201)
    const r = await timed('/api/v1/identities/', HOSTILE_UA)
    expect(r.status).toBe(200)
    expect(r.ms).toBeLessThan(1000)
    expect(json(await raw(gw.url, '/api/v1/identities/', { headers: { 'user-agent': 'deadbeef-bot' } }))).toMatchObject({ code: 'FLAGGATE_BLOCKED' })
  })

  it('what RE2 cannot match in linear time is refused with a reason', () => {
    expect(compileUserAgentPattern('(a)\\1')).toMatch(/no backreferences or lookaround/)
    expect(compileUserAgentPattern('^(?!good)')).toMatch(/no backreferences or lookaround/)
  })
})
