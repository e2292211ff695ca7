/**
 * A route can be sent to Edge only when Edge serves its path and methods (src/edge/served.ts):
 * `flaggate validate` names the route and the reason, and reload refuses such a file.
 */
import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { formatPolicyError, loadPolicy } from '../../src/policy/load.js'
import { tempPolicyFile } from '../support/gateway.js'

const UPSTREAMS = `upstreams:
  core: { url: "http://127.0.0.1:9" }
  edge: { url: "http://127.0.0.1:10" }
routes:
`

function route (name: string, match: string, edge = '{ percent: 10, keys: [] }', upstream = 'core'): string {
  return `  - name: ${name}\n    match: ${match}\n    upstream: ${upstream}\n    edge: ${edge}\n`
}

function errorsOf (yaml: string): string[] {
  const r = loadPolicy('p.yaml', yaml, {})
  if (r.ok) throw new Error('expected the policy to be invalid')
  return r.errors.map(formatPolicyError)
}

const SERVED = 'Edge serves only /api/v1/flags/, /api/v1/identities/, /api/v1/environment-document/, /api/v1/analytics/flags/'

describe('edge routing validation', () => {
  it('accepts every path and method Edge serves', () => {
    const yaml = UPSTREAMS +
      route('flags', '{ methods: [GET], path: /api/v1/flags/ }') +
      route('identities', '{ methods: [GET, HEAD, POST], path: /api/v1/identities/ }') +
      route('env-doc', '{ methods: [GET], path: /api/v1/environment-document/ }') +
      route('analytics', '{ methods: [POST], path: /api/v1/analytics/flags/ }')
    const r = loadPolicy('p.yaml', yaml, {})
    expect(r.ok ? [] : r.errors.map(formatPolicyError)).toEqual([])
  })

  it.each([
    ['traits/', route('traits', '{ methods: [POST], path: /api/v1/traits/ }'),
      "p.yaml:8:11: routes[0].edge: route 'traits' cannot use edge routing: Edge does not serve /api/v1/traits/: traits/ exists only on Core, and a trait written to the other store splits the identity's data (Core's PostgreSQL and Edge's DynamoDB are no longer synchronised); " + SERVED],
    ['multivariate options', route('mv', '{ methods: [GET], path: /api/v1/flags/42/multivariate-options/ }'),
      "p.yaml:8:11: routes[0].edge: route 'mv' cannot use edge routing: Edge does not serve /api/v1/flags/42/multivariate-options/: flags/<id>/multivariate-options/ exists only on Core; " + SERVED],
    ['dashboard API', route('projects', '{ methods: [GET], path: /api/v1/projects/ }'),
      "p.yaml:8:11: routes[0].edge: route 'projects' cannot use edge routing: Edge does not serve /api/v1/projects/: outside the SDK endpoints it is Core's dashboard (admin) API; " + SERVED],
    ['v2 analytics', route('analytics-v2', '{ methods: [POST], path: /api/v2/analytics/flags/ }'),
      "p.yaml:8:11: routes[0].edge: route 'analytics-v2' cannot use edge routing: Edge does not serve /api/v2/analytics/flags/; " + SERVED],
    ['unslashed path', route('flags', '{ methods: [GET], path: /api/v1/flags }'),
      "p.yaml:8:11: routes[0].edge: route 'flags' cannot use edge routing: Edge serves /api/v1/flags/ (with the trailing slash): match that path; " + SERVED],
    ['pathPrefix route', route('sdk', '{ methods: [GET], pathPrefix: /api/v1/ }'),
      "p.yaml:8:11: routes[0].edge: route 'sdk' cannot use edge routing: a pathPrefix route (/api/v1/) also matches paths Edge does not serve (traits/, multivariate-options, the dashboard API); give it match.path, one of /api/v1/flags/, /api/v1/identities/, /api/v1/environment-document/, /api/v1/analytics/flags/"],
    ['every method', route('flags', '{ path: /api/v1/flags/ }'),
      "p.yaml:8:11: routes[0].edge: route 'flags' cannot use edge routing: it matches every method, and Edge serves only GET on /api/v1/flags/; list them in match.methods"],
    ['a method Edge does not serve', route('identities', '{ methods: [GET, POST, PUT, DELETE], path: /api/v1/identities/ }'),
      "p.yaml:8:11: routes[0].edge: route 'identities' cannot use edge routing: Edge does not serve PUT, DELETE on /api/v1/identities/ (only GET, POST)"],
    ['upstream already edge', route('flags', '{ methods: [GET], path: /api/v1/flags/ }', undefined, 'edge'),
      "p.yaml:8:11: routes[0].edge: route 'flags' cannot use edge routing: its upstream is already edge (the edge section moves traffic from another upstream to edge)"]
  ])('refuses %s, naming the route and the reason', (_name, yaml, expected) => {
    expect(errorsOf(UPSTREAMS + yaml)).toEqual([expected])
  })

  it('refuses an edge section even at 0% on a path Edge does not serve', () => {
    expect(errorsOf(UPSTREAMS + route('traits', '{ methods: [POST], path: /api/v1/traits/ }', '{ percent: 0, keys: [] }'))).toHaveLength(1)
  })

  it('needs an upstream named edge once keys or a percentage are set', () => {
    const yaml = 'upstreams:\n  core: { url: "http://127.0.0.1:9" }\nroutes:\n' + route('flags', '{ methods: [GET], path: /api/v1/flags/ }', '{ keys: [ser.abc] }')
    expect(errorsOf(yaml)).toEqual(["p.yaml:7:11: routes[0].edge: edge routing needs an upstream named 'edge'"])
  })

  it('the shipped config is valid', () => {
    const r = loadPolicy('config/gateway.yaml', readFileSync('config/gateway.yaml', 'utf8'), { FLAGGATE_ADMIN_TOKEN: '' })
    expect(r.ok ? [] : r.errors.map(formatPolicyError)).toEqual([])
  })

  it('`flaggate validate` prints the error and exits 1', () => {
    const file = tempPolicyFile(UPSTREAMS + route('flags', '{ methods: [GET], path: /api/v1/flags/ }') + route('traits', '{ methods: [POST], pathPrefix: /api/v1/traits/ }'))
    const r = spawnSync(process.execPath, ['dist/cli.js', 'validate', file], { encoding: 'utf8' })
    expect(r.status).toBe(1)
    expect(r.stderr).toContain(`${file}:12:11: routes[1].edge: route 'traits' cannot use edge routing: a pathPrefix route (/api/v1/traits/)`)
    expect(r.stderr).toContain(`${file}: 1 error`)
  })
})
