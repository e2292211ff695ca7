/**
 * Hot child counters (src/metrics/hot-counter.ts): the request path counts in plain numbers, and
 * the registry adds them to prom-client's counters when it is read. Every read (a scrape, or a
 * counter's get()) must see every increment made before it, exactly once.
 */
import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { createMetrics } from '../../src/metrics/registry.js'
import { HotChildTable } from '../../src/metrics/hot-counter.js'

async function valueOf (metrics: ReturnType<typeof createMetrics>, labels: Record<string, string>): Promise<number> {
  const v = (await metrics.requests.get()).values.find((x) => Object.entries(labels).every(([k, want]) => (x.labels as Record<string, unknown>)[k] === want))
  return v?.value ?? 0
}

describe('hot child counters', () => {
  it('a scrape shows what was counted before it, and counts nothing twice', async () => {
    const metrics = createMetrics({ defaultMetrics: false })
    const table = new HotChildTable(metrics.hot.requests, (route, decision, status) => ({ route, decision, status: String(status) }))
    for (let i = 0; i < 3; i++) table.get('flags', 'allowed', 200).inc()
    table.get('flags', 'limited', 429).inc()
    expect(await metrics.registry.metrics()).toContain('flaggate_requests_total{route="flags",decision="allowed",status="200"} 3')
    table.get('flags', 'allowed', 200).inc()
    expect(await metrics.registry.metrics()).toContain('flaggate_requests_total{route="flags",decision="allowed",status="200"} 4')
    expect(await metrics.registry.metrics()).toContain('flaggate_requests_total{route="flags",decision="limited",status="429"} 1')
  })

  it('equals prom-client counting the same increments directly, for any interleaving of reads', async () => {
    const labelSets = [['flags', 'allowed', 200], ['flags', 'cached', 200], ['doc', 'limited', 429], ['doc', 'blocked', 403]] as const
    await fc.assert(fc.asyncProperty(
      fc.array(fc.oneof(fc.record({ inc: fc.nat({ max: 3 }), n: fc.integer({ min: 1, max: 5 }) }), fc.constant('read' as const)), { maxLength: 60 }),
      async (ops) => {
        const hot = createMetrics({ defaultMetrics: false })
        const direct = createMetrics({ defaultMetrics: false })
        const table = new HotChildTable(hot.hot.requests, (route, decision, status) => ({ route, decision, status: String(status) }))
        for (const op of ops) {
          if (op === 'read') { await hot.requests.get(); continue }
          const [route, decision, status] = labelSets[op.inc]!
          table.get(route, decision, status).inc(op.n)
          direct.requests.inc({ route, decision, status: String(status) }, op.n)
        }
        for (const [route, decision, status] of labelSets) {
          const labels = { route, decision, status: String(status) }
          expect(await valueOf(hot, labels)).toBe(await valueOf(direct, labels))
        }
      }), { numRuns: 200 })
  })
})
