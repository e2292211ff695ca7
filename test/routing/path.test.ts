/**
 * The canonicaliser on its own (routing/path.ts): what each spelling becomes, or why it is
 * refused. The gateway-level proof, over raw sockets, is canonical-path.test.ts.
 */
import { describe, expect, it } from 'vitest'
import { canonicalPath, canonicalTarget, REJECT } from '../../src/shared/path.js'
import { documentQuery } from '../../src/shared/document-query.js'
import { loadPolicy } from '../../src/policy/load.js'
import { resolveTarget } from '../../src/policy/resolve.js'

describe('canonicalPath', () => {
  it.each([
    ['/api/v1/flags/', '/api/v1/flags/'],
    ['/', '/'],
    ['/api/v1/./environment-document/', '/api/v1/environment-document/'],
    ['/api/v1/%2e/environment-document/', '/api/v1/environment-document/'],
    ['/api/v1/x/%2E%2e/environment-document/', '/api/v1/environment-document/'],
    ['/a/b/..', '/a/'],
    ['/a/b/.', '/a/b/'],
    ['/a/..', '/'],
    ['/.well-known/x', '/.well-known/x'],
    ['/a..b/...', '/a..b/...'],
    ['/api/v1/%66lags/', '/api/v1/flags/'],
    ['/%7euser/%2D%5f', '/~user/-_'],
    ['/a%3Ab%40c%21%24%26%27%28%29%2A%2B%2C%3B%3D', "/a:b@c!$&'()*+,;="],
    ['/x%20y', '/x%20y'],
    ['/x%3f%23%25%5b%5d', '/x%3F%23%25%5B%5D'],
    ['/a|b{c}^`"<>[]', '/a%7Cb%7Bc%7D%5E%60%22%3C%3E%5B%5D'],
    ['/%e2%9c%93', '/%E2%9C%93'],
    ['/\xe2\x9c\x93', '/%E2%9C%93'],
    ['/API/V1/Flags/', '/API/V1/Flags/']
  ])('%s → %s', (raw, expected) => {
    expect(canonicalPath(raw)).toBe(expected)
  })

  it('is idempotent: a canonical path is its own canonical form', () => {
    for (const raw of ['/a/./b/../c%7c/%2e%2e/%e2%9c%93/x%20y', '/api/v1/%66lags', '/a|b']) {
      const once = canonicalPath(raw) as string
      expect(canonicalPath(once)).toBe(once)
    }
  })

  it.each([
    ['/api//v1/', REJECT.emptySegment],
    ['//api/v1/', REJECT.emptySegment],
    ['/api/v1%2Fflags/', REJECT.encodedSlash],
    ['/api/v1%2fflags/', REJECT.encodedSlash],
    ['/api\\v1/', REJECT.backslash],
    ['/api%5cv1/', REJECT.backslash],
    ['/api%5Cv1/', REJECT.backslash],
    ['/a%00', REJECT.control],
    ['/a%0a', REJECT.control],
    ['/a%7F', REJECT.control],
    ['/a\x00', REJECT.control],
    ['/a b', REJECT.control],
    ['/a%zz', REJECT.badPercent],
    ['/a%4', REJECT.badPercent],
    ['/a%', REJECT.badPercent],
    ['/%C0%AE%C0%AE/', REJECT.badUtf8],
    ['/%ED%A0%80', REJECT.badUtf8],
    ['/%ff', REJECT.badUtf8],
    ['/%E2%9C', REJECT.badUtf8],
    ['/\u2713', REJECT.badUtf8],
    ['/..', REJECT.aboveRoot],
    ['/a/../..', REJECT.aboveRoot],
    ['/%2e%2e/x', REJECT.aboveRoot],
    ['api/v1/flags/', REJECT.notOriginForm]
  ])('%s is refused', (raw, reason) => {
    expect(canonicalPath(raw)).toBe(reason)
  })

  it('returns the same string, unallocated, for a plain path', () => {
    const p = '/api/v1/environment-document/'
    expect(canonicalPath(p)).toBe(p)
  })
})

describe('canonicalTarget', () => {
  it('splits off the query as received', () => {
    expect(canonicalTarget('/api/v1/./flags/?feature=a%2Fb&x=/../')).toEqual({ rejected: false, path: '/api/v1/flags/', query: '?feature=a%2Fb&x=/../' })
  })
  it.each([
    ['*', REJECT.notOriginForm],
    ['http://host/api/v1/flags/', REJECT.notOriginForm],
    ['host:443', REJECT.notOriginForm],
    ['', REJECT.notOriginForm],
    ['/a#b', REJECT.fragment],
    ['/a?x=1#b', REJECT.fragment]
  ])('%s is refused', (raw, reason) => {
    expect(canonicalTarget(raw)).toBe(reason)
  })
})

describe('documentQuery: only page_id varies a cached document and reaches Core', () => {
  it.each([
    ['', ''],
    ['?', ''],
    ['?cb=1', ''],
    ['?page_id=identity_override:1:abc', '?page_id=identity_override:1:abc'],
    ['?cb=1&page_id=p%3A2&x', '?page_id=p%3A2'],
    ['?page_id=a&page_id=b', '?page_id=b'],
    ['?page_id', '?page_id'],
    ['?page_idx=1&xpage_id=2', '']
  ])('%s → %s', (q, expected) => {
    expect(documentQuery(q)).toBe(expected)
  })
})

describe('resolveTarget: the one resolution the gateway and `flaggate explain` share', () => {
  const yaml = `upstreams:
  core: { url: "http://core.internal:8000/base/" }
routes:
  - name: environment-document
    match: { methods: [GET], path: /api/v1/environment-document/ }
    upstream: core
    cache: { ttl: 30s }
  - name: flags
    match: { methods: [GET], path: /api/v1/flags/ }
    upstream: core
  - name: default
    match: { pathPrefix: /api/ }
    upstream: core
`
  const r = loadPolicy('p.yaml', yaml, {})
  if (!r.ok) throw new Error(JSON.stringify(r.errors))
  const policy = r.policy

  it('the matched path and the upstream URL come from the same canonical string', () => {
    expect(resolveTarget(policy, 'GET', '/api/v1/./environment-document?cb=1&page_id=2')).toMatchObject({
      kind: 'route', path: '/api/v1/environment-document', upstreamUrl: '/base/api/v1/environment-document/?page_id=2'
    })
    expect(resolveTarget(policy, 'GET', '/api/v1/%66lags/?cb=1')).toMatchObject({ kind: 'route', path: '/api/v1/flags/', upstreamUrl: '/base/api/v1/flags/?cb=1' })
    expect(resolveTarget(policy, 'GET', '/api/v1//flags/')).toEqual({ kind: 'bad', message: REJECT.emptySegment.message })
    expect(resolveTarget(policy, 'GET', '/other/%2e/')).toEqual({ kind: 'none', path: '/other/' })
  })
})

describe('route paths in the policy', () => {
  it('must be canonical, or they could never match', () => {
    const r = loadPolicy('p.yaml', `upstreams:
  core: { url: "http://x" }
routes:
  - name: a
    match: { path: /api/v1/%66lags/ }
    upstream: core
  - name: b
    match: { pathPrefix: /api//x }
    upstream: core
`, {})
    expect(r.ok).toBe(false)
    if (r.ok) return
    expect(r.errors.map((e) => `${e.path}: ${e.message}`)).toEqual([
      'routes[0].match.path: `path` is not in canonical form: requests are matched on "/api/v1/flags/"',
      'routes[1].match.pathPrefix: can never match: The request path contains an empty segment (//).'
    ])
  })
})
