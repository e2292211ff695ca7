/**
 * The Edge fallback rule (upstream/fallback.ts), which the proxy and the cache's fill both follow:
 * the other upstream, the path on its base path, and what is left of the route upstream's timeout.
 * The end-to-end behaviour is in test/upstream/fallback.test.ts and test/edge/fallback.test.ts.
 */
import { describe, expect, it } from 'vitest'
import { planFallback, rebasePath } from '../../src/upstream/fallback.js'
import type { Policy, UpstreamTarget } from '../../src/policy/compile.js'

const target = (name: string, basePath: string, timeoutMs: number): UpstreamTarget => ({ name, origin: `http://${name}.test`, host: `${name}.test`, basePath, timeoutMs })
const targets: Policy['targets'] = { core: target('core', '/flagsmith', 5000), edge: target('edge', '', 2000) }

describe('the Edge fallback rule', () => {
  it('rebases a path from one upstream\'s base path onto the other\'s, query kept', () => {
    expect(rebasePath(targets, 'core', 'edge', '/flagsmith/api/v1/flags/?a=1')).toBe('/api/v1/flags/?a=1')
    expect(rebasePath(targets, 'edge', 'core', '/api/v1/flags/?a=1')).toBe('/flagsmith/api/v1/flags/?a=1')
  })

  it('asks the other upstream within what is left of the route upstream\'s timeout, capped by its own', () => {
    expect(planFallback({ targets, routeUpstream: 'core', from: 'edge', path: '/api/v1/flags/', fallback: 'core', elapsedMs: 1200.4 }))
      .toEqual({ from: 'edge', to: 'core', target: targets.core, path: '/flagsmith/api/v1/flags/', timeoutMs: 3799 })
    // the route's upstream is core (5 s budget) but Edge's own timeout is 2 s
    expect(planFallback({ targets, routeUpstream: 'core', from: 'core', path: '/flagsmith/api/v1/flags/', fallback: 'edge', elapsedMs: 100 })?.timeoutMs).toBe(2000)
  })

  it('does not fall back without a fallback, to the same upstream, to an unknown one, or with no time left', () => {
    const base = { targets, routeUpstream: 'core', from: 'edge', path: '/api/v1/flags/', elapsedMs: 10 }
    expect(planFallback({ ...base, fallback: undefined })).toBeUndefined()
    expect(planFallback({ ...base, fallback: 'edge' })).toBeUndefined()
    expect(planFallback({ ...base, fallback: 'nowhere' })).toBeUndefined()
    expect(planFallback({ ...base, fallback: 'core', elapsedMs: 4999.5 })).toBeUndefined()
    expect(planFallback({ ...base, fallback: 'core', elapsedMs: 4998 })?.timeoutMs).toBe(2)
  })
})
