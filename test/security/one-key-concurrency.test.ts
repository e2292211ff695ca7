/**
 * Attack: one key takes all of Core's concurrency. 80 outstanding slow POSTs from one key filled
 * `maxInFlight`; every other key got 503 until they finished. Admission beyond the limit must be
 * fair between environment keys: a storm gets at most its share while others want theirs.
 *
 * The POSTs are held by the stand-in Core for as long as the test runs: "outstanding" is exact.
 */
import { describe, expect, it } from 'vitest'
import { as, breakerState, FLAGS, gatewayInFrontOf, IDENTITIES, startHoldingCore } from './breaker-support.js'

const LIMIT = 20

describe('attack 3: one key cannot take all of Core\'s concurrency', () => {
  it('80 outstanding slow POSTs from one key: five other keys still get 200 on every request', async () => {
    const core = await startHoldingCore()
    const gw = await gatewayInFrontOf(core, `maxInFlight: ${LIMIT}`)

    // the storm: one (public) key from eight addresses, 80 POSTs that Core does not answer
    const storm = Array.from({ length: 80 }, async (_, i) => await as(gw, 'storm-key', `203.0.113.${i % 8 + 1}`, 'POST', IDENTITIES))
    const stormStatuses: number[] = []
    // (a failed assertion closes the stand-in with the POSTs held: their resets are expected then)
    const settled = storm.map(async (p) => { const r = await p.catch(() => ({ status: 0 })); stormStatuses.push(r.status); return r })
    // alone, the storm may use the whole limit (work-conserving): LIMIT held, the rest shed at once
    await core.waitForCalls(LIMIT)
    while (stormStatuses.length < 80 - LIMIT) await new Promise((resolve) => setTimeout(resolve, 10))
    expect(core.held()).toBe(LIMIT)
    expect(stormStatuses.every((s) => s === 503)).toBe(true)

    // five other keys, concurrently, three requests each
    const others = await Promise.all(Array.from({ length: 5 }, async (_, k) => {
      const statuses: number[] = []
      for (let i = 0; i < 3; i++) statuses.push((await as(gw, `other-key-${k}`, `198.51.100.${k + 1}`, 'GET', FLAGS)).status)
      return statuses
    }))
    expect(others).toEqual(Array(5).fill([200, 200, 200]))

    // the storm itself is over its share: its next request is still shed
    expect((await as(gw, 'storm-key', '203.0.113.99', 'POST', IDENTITIES)).status).toBe(503)
    expect(core.held()).toBe(LIMIT)
    expect((await breakerState(gw)).inFlight).toBe(LIMIT)

    core.release()
    await Promise.all(settled)
  })
})
