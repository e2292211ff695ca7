/** The tests' one reader of /metrics: what it reads, and that it refuses what it cannot. */
import { describe, expect, it } from 'vitest'
import { metricsOf, parseExposition } from './metrics.js'

const TEXT = `# HELP flaggate_requests_total Requests answered.
# TYPE flaggate_requests_total counter
flaggate_requests_total{route="flags",decision="allowed",status="200"} 3
flaggate_requests_total{route="flags",decision="limited",status="429"} 2
flaggate_requests_total{route="env",decision="allowed",status="200"} 10
# TYPE flaggate_store_fallback_total counter
flaggate_store_fallback_total 0
flaggate_odd{path="a \\"quoted\\" \\\\ back\\nslash, comma"} 1.5e-3 1700000000000
`

describe('parseExposition / metricsOf', () => {
  it('reads samples with their labels, escapes and timestamps, and the # TYPE lines', () => {
    const { types, samples } = parseExposition(TEXT)
    expect(types.get('flaggate_requests_total')).toBe('counter')
    expect(samples).toHaveLength(5)
    expect(samples[0]).toEqual({ name: 'flaggate_requests_total', labels: { route: 'flags', decision: 'allowed', status: '200' }, value: 3 })
    expect(samples[4]).toEqual({ name: 'flaggate_odd', labels: { path: 'a "quoted" \\ back\nslash, comma' }, value: 0.0015 })
  })

  it('answers the first matching sample, a sum over matches, and 0 for a series not exported', () => {
    const m = metricsOf(TEXT)
    expect(m.value('flaggate_requests_total', { decision: 'limited' })).toBe(2)
    expect(m.sum('flaggate_requests_total', { route: 'flags' })).toBe(5)
    expect(m.sum('flaggate_requests_total')).toBe(15)
    expect(m.value('flaggate_store_fallback_total')).toBe(0)
    expect(m.value('flaggate_requests_total', { route: 'nowhere' })).toBe(0)
  })

  it('throws on a line that is not a sample, rather than reading it as a value', () => {
    expect(() => parseExposition('flaggate_x{route="a"\n')).toThrow(/not a Prometheus sample/)
    expect(() => parseExposition('flaggate_x{route=a} 1\n')).toThrow(/bad labels/)
  })
})
