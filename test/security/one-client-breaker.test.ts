/**
 * Attack: one client's slow requests open the breaker for everyone. 25 slow POSTs from one key
 * and one address pushed p95 over `latency.above`, every other client was then shed with 503.
 * A trip must rest on slow (or failed) requests from at least 3 distinct clients (key + address).
 *
 * The POSTs are held by the stand-in Core until the test releases them, after more than
 * `latency.above` has passed: they are slow by construction, whatever the machine's speed.
 */
import { describe, expect, it } from 'vitest'
import { sleep } from '../cache/support.js'
import { as, breakerState, FLAGS, gatewayInFrontOf, IDENTITIES, startHoldingCore } from './breaker-support.js'

const BREAKER = 'latency: { percentile: 95, above: 800ms, window: 30s, minRequests: 20 }\nopenFor: 30s\nhalfOpenRequests: 3'
const ABOVE_MS = 800

async function slowPosts (clients: Array<{ key: string; ip: string }>, n: number) {
  const core = await startHoldingCore()
  const gw = await gatewayInFrontOf(core, BREAKER)
  // ordinary traffic from four other clients: fast answers in the window
  for (let i = 0; i < 20; i++) expect((await as(gw, `key-${i % 4}`, `10.0.0.${i % 4 + 1}`, 'GET', FLAGS)).status).toBe(200)
  const posts = Array.from({ length: n }, async (_, i) => await as(gw, clients[i % clients.length]!.key, clients[i % clients.length]!.ip, 'POST', IDENTITIES))
  await core.waitForCalls(20 + n)
  await sleep(ABOVE_MS + 200) // every held POST is now slower than latency.above
  core.release()
  const answers = await Promise.all(posts)
  expect(answers.map((a) => a.status)).toEqual(Array(n).fill(200))
  return { core, gw }
}

describe('attack 2: one client cannot open the breaker for everyone', () => {
  it('25 slow POSTs from one key and one address leave the breaker closed; other clients are served', async () => {
    const { gw } = await slowPosts([{ key: 'attacker-key', ip: '203.0.113.7' }], 25)
    expect((await breakerState(gw)).state).toBe('closed')
    const victim = await as(gw, 'victim-key', '198.51.100.1', 'GET', FLAGS)
    expect(victim.status).toBe(200)
  })

  it('the same slow POSTs from 3 distinct clients open it (the evidence rule is not a blanket exemption)', async () => {
    const { gw } = await slowPosts([
      { key: 'customer-a', ip: '198.51.100.10' },
      { key: 'customer-b', ip: '198.51.100.11' },
      { key: 'customer-a', ip: '198.51.100.12' } // the same key from another address is another client
    ], 25)
    const s = await breakerState(gw)
    expect(s.state).toBe('open')
    expect(s.reason).toMatch(/p95 latency .* > 800 ms/)
    const shed = await as(gw, 'victim-key', '198.51.100.1', 'GET', FLAGS)
    expect(shed.status).toBe(503)
  })
})
