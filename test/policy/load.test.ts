import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { formatPolicyError, loadPolicy } from '../../src/policy/load.js'
import { BASE_POLICY, errorsOf } from '../support/policy-errors.js'
import { tempPolicyFile } from '../support/gateway.js'

const BASE = BASE_POLICY

describe('policy validation: every error, with file, line, column and path', () => {
  it('accepts the minimal policy and fills the defaults', () => {
    const r = loadPolicy('p.yaml', BASE, {})
    expect(r.ok).toBe(true)
    if (!r.ok) return
    expect(r.policy.data.server.listen).toEqual({ host: '0.0.0.0', port: 8080 })
    expect(r.policy.data.server.bodyLimit).toBe(1024 * 1024)
    expect(r.policy.data.upstreams.core!.timeout).toBe(10_000)
    expect(r.policy.data.cache.maxSize).toBe(256 * 1024 * 1024)
  })

  it.each([
    ['unknown key', BASE + '    limit: { rate: 10/s, burst: 5, windwMs: 3 }\n', ['p.yaml:7:36: routes[0].limit.windwMs: unknown key \'windwMs\'']],
    ['unknown top-level key', BASE + 'caches: {}\n', ['p.yaml:7:1: caches: unknown key \'caches\' (did you mean \'cache\'?)']],
    ['bad duration', BASE.replace('url: "http://127.0.0.1:9"', 'url: "http://127.0.0.1:9", timeout: 10 seconds'), ['p.yaml:2:47: upstreams.core.timeout: `timeout` must look like `30s` (a duration), not "10 seconds"']],
    ['number instead of duration', BASE.replace('url: "http://127.0.0.1:9"', 'url: "http://127.0.0.1:9", timeout: 10'), ['p.yaml:2:47: upstreams.core.timeout: `timeout` must look like `30s` (a duration), not the number 10: write the unit too']],
    ['bad rate', BASE + '    limit: { rate: 10 per second, burst: 5 }\n', ['p.yaml:7:20: routes[0].limit.rate: `rate` must look like `100/s` (a rate), not "10 per second"']],
    ['zero burst', BASE + '    limit: { rate: 10/s, burst: 0 }\n', ['p.yaml:7:33: routes[0].limit.burst: `burst` must be at least 1']],
    ['bad dimension in a list of limits', BASE + '    limit:\n      - { rate: 1/s, burst: 1, by: [ip, cookie] }\n', ['p.yaml:8:41: routes[0].limit[0].by[1]: "cookie" is not a client dimension: use environmentKey, ip or header:<Name>']],
    ['bad size', 'server: { bodyLimit: 1 megabyte }\n' + BASE, ['p.yaml:1:22: server.bodyLimit: `bodyLimit` must look like `512kb` (a size), not "1 megabyte"']],
    ['bad url', BASE.replace('"http://127.0.0.1:9"', '"ftp://x"'), ['p.yaml:2:16: upstreams.core.url: `url` must be an absolute http:// or https:// URL']],
    ['bad CIDR', 'server: { trustedProxies: [10.0.0.0/33] }\n' + BASE, ['p.yaml:1:28: server.trustedProxies[0]: must be an IP address or CIDR block such as 10.0.0.0/8']],
    ['path and pathPrefix', BASE.replace('{ pathPrefix: / }', '{ path: /a, pathPrefix: / }'), ['p.yaml:5:12: routes[0].match: needs exactly one of path or pathPrefix']],
    ['missing routes', 'upstreams:\n  core: { url: "http://127.0.0.1:9" }\n', ['p.yaml:1:1: routes: `routes` is required']],
    ['wrong type', BASE.replace('name: all', 'name: [all]'), ['p.yaml:4:11: routes[0].name: `name` must be a string, not a list']]
  ])('%s', (_name, yaml, expected) => {
    expect(errorsOf(yaml)).toEqual(expected)
  })

  it('reports every error of a file, not just the first, in file order', () => {
    const yaml = `server: { listen: "nowhere", bodyLimit: 0kb }
upstreams:
  core: { url: "http://127.0.0.1:9", timeout: 0s }
routes:
  - name: all
    match: { pathPrefix: / }
    upstream: core
    limit: { rate: 0/s, burst: 1 }
`
    expect(errorsOf(yaml)).toEqual([
      'p.yaml:1:19: server.listen: `listen` must look like `0.0.0.0:8080` (a listen address), not "nowhere"',
      'p.yaml:1:41: server.bodyLimit: `bodyLimit` must be greater than zero',
      'p.yaml:3:47: upstreams.core.timeout: `timeout` must be greater than zero',
      'p.yaml:8:20: routes[0].limit.rate: `rate` must be greater than zero'
    ])
  })

  it('checks references between sections', () => {
    const yaml = BASE.replace('upstream: core', 'upstream: cor') + `  - name: all
    match: { path: /x }
    upstream: core
overrides:
  - { key: k, routes: [nope], limit: { rate: 1/s, burst: 1 } }
`
    expect(errorsOf(yaml)).toEqual([
      "p.yaml:6:15: routes[0].upstream: unknown upstream 'cor' (defined: core)",
      "p.yaml:7:11: routes[1].name: duplicate route name 'all'",
      "p.yaml:11:24: overrides[0].routes[0]: unknown route 'nope'"
    ])
  })

  it('refuses an admin listener off loopback without a token', () => {
    expect(errorsOf('admin: { listen: "0.0.0.0:8081" }\n' + BASE)).toEqual([
      'p.yaml:1:18: admin.listen: admin API on non-loopback 0.0.0.0 needs admin.token (set FLAGGATE_ADMIN_TOKEN)'
    ])
  })

  it('refuses a placeholder admin token: the one deploy/k8s/secret.yaml ships, and the usual change-me kinds', () => {
    const shipped = /admin-token: (\S+)/.exec(readFileSync('deploy/k8s/secret.yaml', 'utf8'))![1]!
    const policy = 'admin: { listen: "0.0.0.0:8081", token: "${FLAGGATE_ADMIN_TOKEN}" }\n' + BASE
    expect(errorsOf(policy, { FLAGGATE_ADMIN_TOKEN: shipped })).toEqual([
      'p.yaml:1:41: admin.token: `token` is the placeholder shipped in deploy/k8s/secret.yaml: set a random token, e.g. `openssl rand -hex 24`'
    ])
    for (const [token, why] of [
      ['change-me-change-me', 'it contains "changeme"'],
      ['CHANGEME_admin_token_1', 'it contains "changeme"'],
      ['please replace me with a token', 'it contains "replaceme"'],
      ['<your-admin-token-here>', 'it contains "youradmintoken"'],
      ['<random 48 hex characters>', 'it is written in angle brackets'],
      ['xxxxxxxxxxxxxxxxxxxxxxxx', 'one character repeated']
    ]) expect(errorsOf(policy, { FLAGGATE_ADMIN_TOKEN: token }), token).toEqual([`p.yaml:1:41: admin.token: \`token\` is a placeholder (${why}): set a random token, e.g. \`openssl rand -hex 24\``])
    for (const token of ['3f9c1e0a7b2d4c6e8f0a1b2c3d4e5f60718293a4b5c6d7e8', 'test-admin-token-0123456789', 'Zr8yM2qL0vXcN5tW']) {
      expect(loadPolicy('p.yaml', policy, { FLAGGATE_ADMIN_TOKEN: token }).ok, token).toBe(true)
    }
  })

  it('interpolates ${VAR} and ${VAR:-default}, and names an unset variable', () => {
    const yaml = BASE.replace('"http://127.0.0.1:9"', '"${CORE_URL}"').replace('name: all', 'name: ${ROUTE:-everything}')
    const r = loadPolicy('p.yaml', yaml, { CORE_URL: 'http://core.internal:8000' })
    expect(r.ok).toBe(true)
    if (r.ok) {
      expect(r.policy.targets.core!.origin).toBe('http://core.internal:8000')
      expect(r.policy.routes[0]!.name).toBe('everything')
    }
    expect(errorsOf(yaml, {})).toEqual(['p.yaml:2:16: upstreams.core.url: environment variable CORE_URL is not set (use ${CORE_URL:-default} for a default)'])
  })

  it('parses the units into numbers once', () => {
    const yaml = BASE + `    limit:
      - { rate: 30/m, burst: 5 }
      - { by: [environmentKey, ip, "header:X-Client"], rate: 5/10s, burst: 2, shadow: true }
    cache: { ttl: 1.5s, staleWhileRevalidate: 2m, maxEntrySize: 512kb }
`
    const r = loadPolicy('p.yaml', yaml, {})
    if (!r.ok) throw new Error(r.errors.map(formatPolicyError).join('\n'))
    const route = r.policy.routes[0]!
    expect(route.limits.map((l) => [l.id, l.ratePerSec, l.burst, l.by, l.shadow, l.policyHeader])).toEqual([
      ['all.0', 0.5, 5, ['environmentKey'], false, '"all.0";q=5;w=10'],
      ['all.1', 0.5, 2, ['environmentKey', 'ip', 'header:x-client'], true, '"all.1";q=2;w=4']
    ])
    expect(route.cache).toEqual({ ttl: 1500, staleWhileRevalidate: 120_000, staleIfError: 0, maxEntrySize: 512 * 1024 })
  })

  it('rejects YAML syntax errors with their position', () => {
    expect(errorsOf('routes: [\n  - a\n')[0]).toMatch(/^p\.yaml:\d+:\d+: \(root\): /)
  })
})

describe('flaggate validate', () => {
  const run = (file: string) => spawnSync(process.execPath, ['dist/cli.js', 'validate', file], { encoding: 'utf8', env: { ...process.env, FLAGGATE_ADMIN_TOKEN: '' } })

  it('exits 0 for the shipped config/gateway.yaml', () => {
    const r = run('config/gateway.yaml')
    expect(r.stdout).toMatch(/^config\/gateway\.yaml: valid \(policy version [0-9a-f]{8}, \d+ routes\)\n$/)
    expect(r.status).toBe(0)
  })

  it('exits 1 and prints every error as FILE:LINE:COL: PATH: message', () => {
    const file = tempPolicyFile(BASE + '    limit: { rate: fast, burst: -1 }\n')
    const r = run(file)
    expect(r.status).toBe(1)
    expect(r.stderr.split('\n')).toEqual([
      `${file}:7:20: routes[0].limit.rate: \`rate\` must look like \`100/s\` (a rate), not "fast"`,
      `${file}:7:33: routes[0].limit.burst: \`burst\` must be at least 1`,
      `${file}: 2 errors`,
      ''
    ])
  })
})

describe('flaggate explain', () => {
  const explain = (...args: string[]) => spawnSync(process.execPath, ['dist/cli.js', 'explain', '--config', 'config/gateway.yaml', ...args], { encoding: 'utf8', env: { ...process.env, FLAGGATE_ADMIN_TOKEN: '', FLAGSMITH_CORE_URL: 'http://core.internal:8000' } })

  it('names the route, the upstream URL with the slash added, the limits and the cache rule', () => {
    const r = explain('--key', 'ser.abc', '--path', '/api/v1/environment-document', '--ip', '203.0.113.7')
    expect(r.status).toBe(0)
    expect(r.stdout.split('\n')).toEqual([
      'request:  GET /api/v1/environment-document  key ser.abc  ip 203.0.113.7',
      'path:     /api/v1/environment-document (canonical)',
      'route:    environment-document (#1 of 9, first match wins)',
      'upstream: core → http://core.internal:8000/api/v1/environment-document/  (timeout 10s)',
      '          trailing slash added: /api/v1/environment-document → /api/v1/environment-document/',
      'client:   key ser.abc, ip 203.0.113.7',
      'limit:    environment-document.0: 20/s, burst 100, by environmentKey; full again after 5s',
      'limit:    environment-document.1: 1/s, burst 10, by environmentKey+ip; full again after 10s',
      'cache:    ttl 30s, stale-while-revalidate 1m, stale-if-error 10m, max entry 10mb; keyed by environment key + path (page_id dropped: core does not paginate)',
      ''
    ])
  })

  it('matches the decoded path and HEAD like the gateway, and shows shadow limits as such', () => {
    expect(explain('--path', '/api/v1/%66lags/', '--method', 'HEAD').stdout).toContain('route:    flags (#2 of 9')
    const other = explain('--path', '/api/v1/projects/')
    expect(other.stdout).toContain('route:    default')
    expect(other.stdout).toContain('shadow: counted and logged, never rejects')
  })

  it('uses the gateway\'s canonical path: the incident spelling is the document route, ambiguous ones are 400', () => {
    const dot = explain('--path', '/api/v1/./environment-document/?cb=1&page_id=p2')
    expect(dot.stdout).toContain('path:     /api/v1/environment-document/ (canonical)')
    expect(dot.stdout).toContain('route:    environment-document (#1 of 9')
    expect(dot.stdout).toContain('upstream: core → http://core.internal:8000/api/v1/environment-document/?page_id=p2  (timeout 10s)')
    const slash = explain('--path', '/api/v1%2Fflags/')
    expect(slash.status).toBe(0)
    expect(slash.stdout).toContain('path:     refused: the gateway answers 400 FLAGGATE_BAD_REQUEST (The request path contains an encoded slash (%2F).)')
    expect(slash.stdout).not.toContain('route:')
  })
})
