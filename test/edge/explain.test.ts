/**
 * `flaggate explain` shows where a key goes and why, from the gateway's own decision function
 * (the compiled CLI in dist/, as operators run it).
 */
import { spawnSync } from 'node:child_process'
import { describe, expect, it } from 'vitest'
import { tempPolicyFile } from '../support/gateway.js'

const FILE = tempPolicyFile(`upstreams:
  core: { url: "http://core.internal:8000" }
  edge: { url: "http://edge.internal:9000", timeout: 3s }
routes:
  - name: flags
    match: { methods: [GET], path: /api/v1/flags/ }
    upstream: core
    edge: { percent: 1, keys: [ser.listed] }
  - name: identities
    match: { methods: [GET, POST], path: /api/v1/identities/ }
    upstream: core
    edge: { percent: 100 }
  - name: default
    match: { pathPrefix: / }
    upstream: core
`)

function explain (...args: string[]): string[] {
  const r = spawnSync(process.execPath, ['dist/cli.js', 'explain', '--config', FILE, ...args], { encoding: 'utf8' })
  expect(r.stderr).toBe('')
  expect(r.status).toBe(0)
  return r.stdout.split('\n').filter((l) => l.startsWith('upstream:') || l.startsWith('edge:'))
}

describe('flaggate explain: edge routing', () => {
  it('a listed key goes to Edge, with Core as the fallback of a read', () => {
    expect(explain('--key', 'ser.listed', '--path', '/api/v1/flags')).toEqual([
      'upstream: edge → http://edge.internal:9000/api/v1/flags/  (timeout 3s)',
      'edge:     split: 1% of keys (buckets 0..99 of 10000), plus 1 listed in edge.keys',
      'edge:     key listed in edge.keys → edge (listed)',
      'edge:     if edge fails (connection error, timeout, 5xx), GET is retried once on core'
    ])
  })

  it('a key whose bucket is not below the percentage stays on Core, and says from which percentage it moves', () => {
    // ser.prod_server_key is in bucket 166 (test/edge/core.test.ts)
    expect(explain('--key', 'ser.prod_server_key', '--path', '/api/v1/flags/')).toEqual([
      'upstream: core → http://core.internal:8000/api/v1/flags/  (timeout 10s)',
      'edge:     split: 1% of keys (buckets 0..99 of 10000), plus 1 listed in edge.keys',
      'edge:     key in bucket 166, not below 100 → stays on core (not-selected); moves to edge at edge.percent ≥ 1.67%',
      'edge:     while core\'s breaker is open, GET stays on core (no edge.whenOpen)'
    ])
  })

  it('a hashed key\'s write goes to Edge and is never retried on Core; no key stays on Core', () => {
    expect(explain('--key', 'ser.prod_server_key', '--path', '/api/v1/identities/', '--method', 'post')).toEqual([
      'upstream: edge → http://edge.internal:9000/api/v1/identities/  (timeout 3s)',
      'edge:     split: 100% of keys (buckets 0..9999 of 10000), plus 0 listed in edge.keys',
      'edge:     key in bucket 166, below 10000 → edge (hashed)',
      'edge:     POST is a write: never retried on core (it would land in the other store)'
    ])
    expect(explain('--path', '/api/v1/identities/?identifier=x')).toEqual([
      'upstream: core → http://core.internal:8000/api/v1/identities/?identifier=x  (timeout 10s)',
      'edge:     split: 100% of keys (buckets 0..9999 of 10000), plus 0 listed in edge.keys',
      'edge:     no X-Environment-Key → stays on core (no-key)'
    ])
  })

  it('routes without an edge section say nothing about Edge', () => {
    expect(explain('--key', 'ser.listed', '--path', '/api/v1/traits/', '--method', 'POST')).toEqual([
      'upstream: core → http://core.internal:8000/api/v1/traits/  (timeout 10s)'
    ])
  })
})
