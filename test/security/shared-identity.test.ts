/**
 * Attacks 1 and 9: automatic measures aimed at others, and IPv6 rotation.
 *
 * 1. A client-side key is public (it ships in every web page). An attacker who uses a customer's
 *    key from many addresses past the per-key limit must get only themselves blocked: the
 *    customer's real users, at other addresses, keep being served.
 * 9. One IPv6 subscriber owns a /64 and can rotate through it: `by: ip` limits and automatic
 *    blocks must count the /64 as one client, while a neighbour /64 is untouched.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startRecordingUpstream, type RecordingUpstream } from '../support/recording-upstream.js'
import { policyYaml, startTestGateway, type TestGateway } from '../support/gateway.js'
import { json, raw } from '../support/http.js'
import { from, TRUST_LOOPBACK, until } from './support.js'

const TOKEN = 'security-test-token-0123456789'
const KEY = 'public_client_key'

let up: RecordingUpstream
let gw: TestGateway

beforeAll(async () => {
  up = await startRecordingUpstream()
  gw = await startTestGateway(policyYaml({
    coreUrl: up.url,
    adminToken: TOKEN,
    server: TRUST_LOOPBACK,
    routes: `  - name: flags
    match: { methods: [GET], path: /api/v1/flags/ }
    upstream: core
    limit: { by: environmentKey, rate: 1/m, burst: 20 }
  - name: identities
    match: { methods: [GET], path: /api/v1/identities/ }
    upstream: core
    limit: { by: ip, rate: 1/m, burst: 10 }
  - name: default
    match: { pathPrefix: / }
    upstream: core`,
    extra: 'abuse:\n  rejections: 10 per 1m\n  blockFor: 10m\n'
  }))
})
afterAll(async () => { await gw?.close(); await up?.close() })

async function blocks (): Promise<Array<Record<string, unknown>>> {
  return json(await raw(gw.adminUrl, '/admin/blocks', { headers: { authorization: `Bearer ${TOKEN}` } })) as Array<Record<string, unknown>>
}

describe('attack 1: a customer\'s public key used from many addresses past its limit', () => {
  it('blocks the addresses that were refused, never the key: the customer\'s users elsewhere are served', async () => {
    // 30 attacker addresses × 15 requests = 450 (the issue used 1,500 from 60): the key's bucket
    // (burst 20) empties at once, and every later request is a 429 counted against the key
    const attackers = Array.from({ length: 30 }, (_, i) => `198.51.100.${i + 1}`)
    for (let round = 0; round < 15; round++) {
      await Promise.all(attackers.map((ip) => from(gw.url, '/api/v1/flags/', ip, { key: KEY })))
    }
    // the abuse counter decides in the background: wait for the first automatic block
    const list = await until(blocks, (l) => l.some((b) => b.source === 'abuse'))
    const auto = list.filter((b) => b.source === 'abuse')
    expect(auto.length).toBeGreaterThan(0)
    // every automatic block names an address (the key from that address): none is the key alone
    for (const b of auto) expect(b.ip, JSON.stringify(b)).toBeDefined()
    // and the attacker's own addresses are blocked
    const blocked = await until(() => from(gw.url, '/api/v2/other/', attackers[0]!, { key: KEY }), (r) => r.status === 403)
    expect(blocked.status).toBe(403)

    // a real user of the customer, at an address the attacker never used: not blocked. The key's
    // bucket is empty (the attacker spent it), so a 429 is what a fleet over its limit gets; the
    // point is that no 403 shuts the whole customer out for the block's lifetime.
    const user = await from(gw.url, '/api/v1/flags/', '192.0.2.200', { key: KEY })
    expect(user.status).not.toBe(403)
    expect(json(user)).toMatchObject({ code: 'FLAGGATE_RATE_LIMITED' })
    // and on a route whose own limit is not spent, the user is served by Core
    const other = await from(gw.url, '/api/v2/other/', '192.0.2.200', { key: KEY })
    expect(other.status).toBe(200)
  })
})

describe('attack 9: rotating through one IPv6 /64', () => {
  it('a `by: ip` limit counts the /64: 300 addresses of one /64 get 10 through, not 300', async () => {
    up.reset()
    let allowed = 0
    for (let i = 0; i < 300; i += 30) {
      const batch = await Promise.all(Array.from({ length: 30 }, (_, j) => from(gw.url, '/api/v1/identities/', `2001:db8:aa:1::${(i + j + 1).toString(16)}`)))
      allowed += batch.filter((r) => r.status === 200).length
    }
    expect(allowed).toBe(10)
    // a neighbouring /64 is another subscriber, with its own budget
    expect((await from(gw.url, '/api/v1/identities/', '2001:db8:aa:2::1')).status).toBe(200)
    // an IPv4-mapped address is its IPv4 address
    expect((await from(gw.url, '/api/v1/identities/', '::ffff:192.0.2.77')).status).toBe(200)
  })

  it('the automatic block covers the whole /64 (every rotated address), not the one address', async () => {
    const list = await until(blocks, (l) => l.some((b) => b.source === 'abuse' && typeof b.ip === 'string' && (b.ip as string).startsWith('2001:db8:aa:1:')))
    const auto = list.find((b) => b.source === 'abuse' && typeof b.ip === 'string' && (b.ip as string).startsWith('2001:db8:aa:1:'))
    expect(auto?.ip).toBe('2001:db8:aa:1::/64')
    // an address of that /64 never used before is blocked; the neighbour /64 is not
    expect((await from(gw.url, '/api/v2/other/', '2001:db8:aa:1:ffff::42')).status).toBe(403)
    expect((await from(gw.url, '/api/v2/other/', '2001:db8:aa:2::42')).status).toBe(200)
  })
})
