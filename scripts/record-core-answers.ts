/**
 * Records the real Flagsmith Core's answers as test fixtures, for local evaluation's differential
 * tests (test/fixtures/real-core/README.md says what is recorded and how it is laid out).
 *
 *   node --import tsx scripts/record-core-answers.ts --core http://127.0.0.1:18500 --admin-token TOKEN \
 *     [--out test/fixtures/real-core] [--identities 300] [--seed 1]
 *
 * Against a running Core (v2.259.0; docs/real-core.md), with a superuser's admin API token:
 *   1. seeds, through Core's admin REST API, a new organisation of its own (a free-plan organisation
 *      allows one project) with one project and one environment: boolean, string, number,
 *      multivariate and server-key-only features; one segment per rule operator Core supports
 *      (EQUAL, NOT_EQUAL, GREATER_THAN, GREATER_THAN_INCLUSIVE, LESS_THAN, LESS_THAN_INCLUSIVE,
 *      CONTAINS, NOT_CONTAINS, REGEX, IS_SET, IS_NOT_SET, IN, MODULO, PERCENTAGE_SPLIT, and the
 *      `:semver` forms of the comparisons), nested ALL/ANY/NONE rules, each segment overriding its
 *      own feature, three segment overrides of one feature with priorities, a multivariate segment
 *      override, and an identity override; and a server-side key;
 *   2. records the environment document (and its 304 on If-Modified-Since), `flags/` with the
 *      client and the server key, `?feature=` for known, server-only and unknown features, and
 *      transient `POST identities/` with varied and tricky traits — each request and Core's answer.
 *
 * Nothing here is used by the test suite at run time: the suite reads the committed fixtures.
 */
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { compactIdentityAnswer, flagsBaseline, type IdentityAnswer, type RecordedExchange } from '../test/support/real-core-fixtures.js'

const { values } = parseArgs({
  options: {
    core: { type: 'string' },
    'admin-token': { type: 'string' },
    out: { type: 'string', default: 'test/fixtures/real-core' },
    identities: { type: 'string', default: '300' },
    seed: { type: 'string', default: '1' }
  }
})
if (values.core === undefined || values['admin-token'] === undefined) {
  process.stderr.write('usage: record-core-answers.ts --core URL --admin-token TOKEN [--out DIR] [--identities N] [--seed N]\n')
  process.exit(2)
}
const CORE = new URL(values.core).origin
const TOKEN = values['admin-token']
const OUT = values.out
const N_IDENTITIES = Number(values.identities)

// ----------------------------------------------------------------------------------- admin API

async function admin<T = Record<string, unknown>> (method: string, path: string, body?: unknown): Promise<T> {
  const res = await fetch(`${CORE}/api/v1/${path}`, {
    method,
    headers: { Authorization: `Token ${TOKEN}`, 'Content-Type': 'application/json', Accept: 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) })
  })
  const text = await res.text()
  if (!res.ok) throw new Error(`${method} /api/v1/${path} → ${res.status}: ${text.slice(0, 800)}`)
  return (text === '' ? {} : JSON.parse(text)) as T
}

type Value = string | number | boolean
function stateValue (v: Value): Record<string, unknown> {
  if (typeof v === 'boolean') return { type: 'bool', boolean_value: v }
  if (typeof v === 'number') return { type: 'int', integer_value: v }
  return { type: 'unicode', string_value: v }
}

interface Condition { property?: string; operator: string; value?: string }
interface Rule { type: 'ALL' | 'ANY' | 'NONE'; conditions?: Condition[]; rules?: Rule[] }
const all = (...conditions: Condition[]): Rule[] => [{ type: 'ALL', rules: [{ type: 'ANY', conditions, rules: [] }], conditions: [] }]
const c = (property: string | undefined, operator: string, value?: string): Condition => ({ ...(property === undefined ? {} : { property }), operator, ...(value === undefined ? {} : { value }) })

/**
 * One segment per operator case; each overrides its own feature `seg_<name>` (default: disabled,
 * "default"; override: enabled, "<name>"), so every identity's flags show which segments matched.
 */
const SEGMENTS: Array<{ name: string; rules: Rule[] }> = [
  { name: 'eq_str', rules: all(c('plan', 'EQUAL', 'premium')) },
  { name: 'eq_num', rules: all(c('age', 'EQUAL', '30')) },
  { name: 'eq_float', rules: all(c('score', 'EQUAL', '1.5')) },
  { name: 'eq_bool', rules: all(c('beta', 'EQUAL', 'true')) },
  { name: 'neq', rules: all(c('plan', 'NOT_EQUAL', 'free')) },
  { name: 'gt', rules: all(c('age', 'GREATER_THAN', '18')) },
  { name: 'gte', rules: all(c('age', 'GREATER_THAN_INCLUSIVE', '21')) },
  { name: 'lt', rules: all(c('age', 'LESS_THAN', '65')) },
  { name: 'lte', rules: all(c('score', 'LESS_THAN_INCLUSIVE', '2.5')) },
  { name: 'gt_frac', rules: all(c('age', 'GREATER_THAN', '29.5')) },
  { name: 'lt_text', rules: all(c('plan', 'LESS_THAN', 'm')) },
  { name: 'contains', rules: all(c('email', 'CONTAINS', '@example.com')) },
  { name: 'not_contains', rules: all(c('email', 'NOT_CONTAINS', 'test')) },
  { name: 'regex', rules: all(c('email', 'REGEX', '.*@corp\\.com$')) },
  { name: 'regex_unanchored', rules: all(c('country', 'REGEX', 'land')) },
  { name: 'regex_num', rules: all(c('age', 'REGEX', '^[0-9]{2}$')) },
  { name: 'regex_bool', rules: all(c('beta', 'REGEX', '[Tt]rue')) },
  { name: 'is_set', rules: all(c('plan', 'IS_SET')) },
  { name: 'is_not_set', rules: all(c('plan', 'IS_NOT_SET')) },
  { name: 'in_str', rules: all(c('country', 'IN', 'uk,fr,de')) },
  { name: 'in_num', rules: all(c('age', 'IN', '0,18,21')) },
  { name: 'in_float', rules: all(c('score', 'IN', '1.5,2.0')) },
  { name: 'modulo', rules: all(c('n', 'MODULO', '2|0')) },
  { name: 'modulo_frac', rules: all(c('n', 'MODULO', '2.5|0.5')) },
  { name: 'pct_identity', rules: all(c(undefined, 'PERCENTAGE_SPLIT', '50')) },
  { name: 'pct_trait', rules: all(c('plan', 'PERCENTAGE_SPLIT', '30')) },
  { name: 'semver_gt', rules: all(c('version', 'GREATER_THAN', '1.2.3:semver')) },
  { name: 'semver_gte', rules: all(c('version', 'GREATER_THAN_INCLUSIVE', '2.0.0:semver')) },
  { name: 'semver_lt', rules: all(c('version', 'LESS_THAN', '1.0.0:semver')) },
  { name: 'semver_lte', rules: all(c('version', 'LESS_THAN_INCLUSIVE', '1.10.0:semver')) },
  { name: 'semver_eq', rules: all(c('version', 'EQUAL', '1.0.0:semver')) },
  { name: 'semver_neq', rules: all(c('version', 'NOT_EQUAL', '1.0.0:semver')) },
  {
    name: 'nested',
    rules: [{
      type: 'ALL',
      conditions: [],
      rules: [
        { type: 'ALL', conditions: [c('plan', 'EQUAL', 'premium')], rules: [] },
        { type: 'ANY', conditions: [c('country', 'EQUAL', 'uk'), c('country', 'EQUAL', 'fr')], rules: [] },
        { type: 'NONE', conditions: [c('beta', 'EQUAL', 'true')], rules: [] }
      ]
    }]
  },
  { name: 'none_top', rules: [{ type: 'NONE', conditions: [c('plan', 'EQUAL', 'free')], rules: [] }] },
  { name: 'all_range', rules: [{ type: 'ALL', conditions: [c('age', 'GREATER_THAN', '18'), c('age', 'LESS_THAN', '30')], rules: [] }] },
  { name: 'any_deep', rules: [{ type: 'ANY', conditions: [], rules: [{ type: 'ALL', conditions: [], rules: [{ type: 'ANY', conditions: [c('n', 'EQUAL', '7'), c('email', 'IS_SET')], rules: [] }] }] }] }
]

interface Seeded {
  organisation: number
  project: number
  environment: { id: number; clientKey: string; serverKey: string }
  features: Record<string, number>
  segments: Record<string, number>
  overrideIdentity: string
}

async function seed (): Promise<Seeded> {
  const stamp = new Date().toISOString().replace(/[-:.TZ]/g, '')
  const org = await admin<{ id: number }>('POST', 'organisations/', { name: `recorder-${stamp}` })
  const project = await admin<{ id: number }>('POST', 'projects/', { name: 'recorder-project', organisation: org.id })
  const env = await admin<{ id: number; api_key: string }>('POST', 'environments/', { name: 'Recorded', project: project.id })
  const features: Record<string, number> = {}
  const feature = async (name: string, body: Record<string, unknown>): Promise<number> => {
    features[name] = (await admin<{ id: number }>('POST', `projects/${project.id}/features/`, { name, type: 'STANDARD', ...body })).id
    return features[name]!
  }
  await feature('bool_flag', { default_enabled: true })
  await feature('string_flag', { default_enabled: true, initial_value: 'hello' })
  await feature('number_flag', { default_enabled: true, initial_value: '42' })
  await feature('disabled_flag', { default_enabled: false, initial_value: 'off' })
  await feature('server_only_flag', { default_enabled: true, initial_value: 'secret', is_server_key_only: true })
  await feature('priority_flag', { default_enabled: true, initial_value: 'none' })
  await feature('mv_flag', {
    type: 'MULTIVARIATE',
    default_enabled: true,
    initial_value: 'control',
    multivariate_options: [
      { type: 'unicode', string_value: 'alpha', default_percentage_allocation: 30 },
      { type: 'unicode', string_value: 'beta', default_percentage_allocation: 20 },
      { type: 'int', integer_value: 7, default_percentage_allocation: 10 }
    ]
  })
  await feature('mv_even', {
    type: 'MULTIVARIATE',
    default_enabled: true,
    initial_value: 'none',
    multivariate_options: [
      { type: 'unicode', string_value: 'left', default_percentage_allocation: 50 },
      { type: 'unicode', string_value: 'right', default_percentage_allocation: 50 }
    ]
  })
  for (const s of SEGMENTS) await feature(`seg_${s.name}`, { default_enabled: false, initial_value: 'default' })

  const segments: Record<string, number> = {}
  for (const s of SEGMENTS) {
    segments[s.name] = (await admin<{ id: number }>('POST', `projects/${project.id}/segments/`, { name: s.name, project: project.id, rules: s.rules })).id
  }
  const override = async (featureName: string, segment: string, priority: number | undefined, enabled: boolean, value: Value, mv?: unknown[]): Promise<void> => {
    await admin('POST', `environments/${env.api_key}/features/${features[featureName]}/create-segment-override/`, {
      feature_segment: { segment: segments[segment], ...(priority === undefined ? {} : { priority }) },
      enabled,
      feature_state_value: stateValue(value),
      ...(mv === undefined ? {} : { multivariate_feature_state_values: mv })
    })
  }
  for (const s of SEGMENTS) await override(`seg_${s.name}`, s.name, undefined, true, s.name)
  // three overrides of one feature: the highest priority (0) wins when several segments match
  await override('priority_flag', 'is_set', 2, true, 'has plan')
  await override('priority_flag', 'eq_str', 1, true, 'premium')
  await override('priority_flag', 'gt', 0, false, 'adult')
  // a multivariate feature's segment override with its own weights
  const mv = await admin<{ multivariate_options: Array<{ id: number; string_value: string | null }> }>('GET', `projects/${project.id}/features/${features.mv_flag}/`)
  const optionId = (v: string): number => mv.multivariate_options.find((o) => o.string_value === v)!.id
  await override('mv_flag', 'in_str', 0, true, 'segment control', [
    { multivariate_feature_option: optionId('alpha'), percentage_allocation: 10 },
    { multivariate_feature_option: optionId('beta'), percentage_allocation: 80 }
  ])

  // an identity override: Core answers it even to a transient request for that identifier
  const overrideIdentity = 'override-user'
  const identity = await admin<{ id: number }>('POST', `environments/${env.api_key}/identities/`, { identifier: overrideIdentity })
  await admin('POST', `environments/${env.api_key}/identities/${identity.id}/featurestates/`, { feature: features.string_flag, enabled: true, feature_state_value: 'identity value' })
  await admin('POST', `environments/${env.api_key}/identities/${identity.id}/featurestates/`, { feature: features.bool_flag, enabled: false })
  const serverKey = (await admin<{ key: string }>('POST', `environments/${env.api_key}/api-keys/`, { name: 'recorder-server-key' })).key
  return { organisation: org.id, project: project.id, environment: { id: env.id, clientKey: env.api_key, serverKey }, features, segments, overrideIdentity }
}

// ----------------------------------------------------------------------------------- SDK API

interface Exchange {
  request: { method: string; path: string; key: 'client' | 'server'; headers?: Record<string, string>; body?: unknown }
  response: { status: number; headers: Record<string, string>; body: unknown }
}

/** The headers worth keeping: what a local answer must reproduce or a refresher must read. */
const KEPT_HEADERS = ['content-type', 'last-modified', 'x-flagsmith-document-updated-at', 'vary', 'allow', 'content-length']

async function sdk (keys: Seeded['environment'], request: Exchange['request']): Promise<Exchange> {
  const res = await fetch(`${CORE}${request.path}`, {
    method: request.method,
    headers: {
      'X-Environment-Key': request.key === 'client' ? keys.clientKey : keys.serverKey,
      ...(request.body === undefined ? {} : { 'Content-Type': 'application/json' }),
      ...request.headers
    },
    ...(request.body === undefined ? {} : { body: JSON.stringify(request.body) })
  })
  const text = await res.text()
  const headers: Record<string, string> = {}
  for (const h of KEPT_HEADERS) { const v = res.headers.get(h); if (v !== null) headers[h] = v }
  let body: unknown = text
  try { body = text === '' ? null : JSON.parse(text) } catch {}
  return { request, response: { status: res.status, headers, body } }
}

// ----------------------------------------------------------------------------------- traits

/** mulberry32: a small seeded generator, so a re-recording asks the same questions. */
function prng (seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6D2B79F5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/**
 * Trait values per key, tricky ones included: numeric strings against numeric conditions, ints
 * against fractional ones, floats, booleans and their spellings, negatives and non-numbers for
 * MODULO, semver with a `v` or a leading space, regex edge cases, 0 and floats for IN, nulls.
 */
const TRAIT_POOL: Record<string, Array<string | number | boolean | null>> = {
  plan: ['premium', 'free', 'pro', 'Premium', 'premium ', '', 'a', 'z', null, 7, true],
  age: [30, '30', 30.0, 29.9, 18, '18', 21, 0, '0', -5, 65, 64.5, 100, '30abc', '030', 'x', true, null, 29.5, 30.5],
  score: [1.5, '1.5', 2, 2.0, 2.5, '2.50', 1, 0, -1.5, 'abc', true, null],
  beta: [true, false, 'true', 'True', 'false', 1, 0, null, 'TRUE'],
  email: ['a@example.com', 'test@example.com', 'b@corp.com', 'x@corp.com.evil', 'CORP@corp.com', 'nobody', '', 'test', null, 5],
  country: ['uk', 'fr', 'de', 'us', 'UK', 'finland', 'land', 'uk,fr', 'fr ', null, 0],
  n: [0, 1, 2, 3, 4, 7, -1, -2, -3, 2.5, 3.0, '4', '7abc', 'x', true, false, null, 1e21],
  version: ['1.2.3', '1.2.4', '2.0.0', '1.0.0', '1.10.0', '1.9.9', 'v1.2.4', ' 1.2.4', '1.2.4-beta', '1.2.4+build', '1.2', '0.9.0', 'abc', 1, null, '2.0.0-rc.1']
}

function traitsFor (rand: () => number): Array<{ trait_key: string; trait_value: string | number | boolean | null }> {
  const out: Array<{ trait_key: string; trait_value: string | number | boolean | null }> = []
  for (const [key, pool] of Object.entries(TRAIT_POOL)) {
    if (rand() < 0.35) continue // a trait left out: IS_NOT_SET and missing-property paths
    out.push({ trait_key: key, trait_value: pool[Math.floor(rand() * pool.length)]! })
  }
  return out
}

// ----------------------------------------------------------------------------------- main

const seeded = await seed()
const keys = seeded.environment
process.stderr.write(`seeded organisation ${seeded.organisation}, environment ${keys.id} (${keys.clientKey}); recording…\n`)
mkdirSync(OUT, { recursive: true })

const doc = await sdk(keys, { method: 'GET', path: '/api/v1/environment-document/', key: 'server' })
const lastModified = doc.response.headers['last-modified']
const notModified = lastModified === undefined ? undefined : await sdk(keys, { method: 'GET', path: '/api/v1/environment-document/', key: 'server', headers: { 'If-Modified-Since': lastModified } })
const flags: Exchange[] = []
for (const key of ['client', 'server'] as const) {
  flags.push(await sdk(keys, { method: 'GET', path: '/api/v1/flags/', key }))
  for (const f of ['string_flag', 'mv_flag', 'server_only_flag', 'no_such_feature']) {
    flags.push(await sdk(keys, { method: 'GET', path: `/api/v1/flags/?feature=${f}`, key }))
  }
}

const rand = prng(Number(values.seed))
const identities: Exchange[] = []
for (let i = 0; i < N_IDENTITIES; i++) {
  // a few requests for the identity with overrides, and some without traits at all
  const identifier = i % 50 === 7 ? seeded.overrideIdentity : `user-${i}`
  const traits = i % 25 === 3 ? [] : traitsFor(rand)
  const key = i % 4 === 0 ? 'server' : 'client'
  identities.push(await sdk(keys, { method: 'POST', path: '/api/v1/identities/', key, body: { identifier, traits, transient: true } }))
}

const meta = {
  recordedAt: new Date().toISOString(),
  core: { url: CORE, version: (await fetch(`${CORE}/health/liveness/`)).headers.get('flagsmith-version') },
  ...seeded
}
const write = (name: string, data: unknown, indent?: number): void => writeFileSync(join(OUT, name), JSON.stringify(data, null, indent) + '\n')
write('meta.json', meta, 1)
write('environment-document.json', { document: doc, notModified })
write('flags.json', flags)
// one exchange per line: diffs of a re-recording stay readable
writeFileSync(join(OUT, 'identities.json'), `[\n${identities.map(compactIdentity).map((e) => JSON.stringify(e)).join(',\n')}\n]\n`)
process.stderr.write(`wrote ${OUT}: ${identities.length} identities, ${flags.length} flags exchanges\n`)

/**
 * Identity answers are ~45 flags each; in full, a few hundred of them would be megabytes. The
 * first three are kept verbatim (the shape); the rest keep only the flags that differ from
 * `GET flags/` with the same key (test/support/real-core-fixtures.ts compacts and expands).
 */
function compactIdentity (e: Exchange, i: number): unknown {
  if (i < 3 || e.response.status !== 200) return e
  const baseline = flagsBaseline(flags as RecordedExchange[])[e.request.key]
  return { request: e.request, response: { status: e.response.status, body: compactIdentityAnswer(e.response.body as IdentityAnswer, baseline) } }
}
