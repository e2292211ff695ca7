/**
 * Differential test against the real Flagsmith Core: its recorded answers
 * (test/fixtures/real-core/, recorded by scripts/record-core-answers.ts; their README says what
 * was seeded) against the local answers computed from the document Core gave in the same
 * session, flag by flag. Every difference fails, except those docs/local-evaluation.md names
 * with their cause (KNOWN below, each tied to its section there).
 */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { compileEnvironment } from '../../src/local/environment.js'
import { flagsAnswer, identityPostAnswer } from '../../src/local/answers.js'
import { loadRealCoreFixtures } from '../support/real-core-fixtures.js'

const DIR = join(import.meta.dirname, '..', 'fixtures', 'real-core')

interface Exchange {
  request: { method: string; path: string; key: 'client' | 'server'; body?: unknown }
  response: { status: number; body: unknown }
}
type Compact = Record<string, [number | null, boolean, unknown, string | null, unknown]>
type CoreFlag = { id?: number; feature: { id: number; name: string; type?: string }; feature_state_value: unknown; enabled: boolean; variant?: string | null; environment?: number; identity?: number | null }

function read<T> (file: string): T {
  const text = readFileSync(join(DIR, file), 'utf8').trim()
  if (text.startsWith('[') || text.startsWith('{')) {
    try { return JSON.parse(text) as T } catch {}
  }
  // one JSON document per line
  return text.split('\n').filter((l) => l.trim() !== '').map((l) => JSON.parse(l)) as T
}

function compact (flags: CoreFlag[] | Compact): Compact {
  if (!Array.isArray(flags)) return flags
  const out: Compact = {}
  for (const f of flags) out[f.feature.name] = [f.id ?? null, f.enabled, f.feature_state_value, f.variant ?? null, f.identity ?? null]
  return out
}

/**
 * Differences that docs/local-evaluation.md names with their cause. Each is a predicate over
 * (feature, the request's traits, Core's flag, ours); keep this list and that section in step.
 */
const KNOWN: Array<{ doc: string; applies: (feature: string, traits: Record<string, unknown>, core: Compact[string] | undefined, ours: Compact[string] | undefined) => boolean }> = []

describe('local answers equal the real Core\'s recorded answers', () => {
  const docExchange = read<{ document: Exchange }>('environment-document.json').document
  const env = compileEnvironment(docExchange.response.body)

  it('flags/ and ?feature=, for the client and the server key: every field the document holds', () => {
    const exchanges = read<Exchange[]>('flags.json')
    expect(exchanges.length).toBeGreaterThan(0)
    const diffs: string[] = []
    for (const ex of exchanges) {
      const q = ex.request.path.indexOf('?')
      const query = q === -1 ? undefined : new URLSearchParams(ex.request.path.slice(q + 1))
      const ours = flagsAnswer(env!, ex.request.key === 'server', query)
      const where = `${ex.request.key} ${ex.request.path}`
      if (ours.status !== ex.response.status) { diffs.push(`${where}: status core ${ex.response.status} local ${ours.status}`); continue }
      const mine = JSON.parse(ours.body.toString()) as unknown
      if (ex.response.status !== 200) { if (JSON.stringify(mine) !== JSON.stringify(ex.response.body)) diffs.push(`${where}: body core ${JSON.stringify(ex.response.body)} local ${JSON.stringify(mine)}`); continue }
      const theirs = (Array.isArray(ex.response.body) ? ex.response.body : [ex.response.body]) as CoreFlag[]
      const list = (Array.isArray(mine) ? mine : [mine]) as CoreFlag[]
      if (theirs.map((f) => f.feature.name).join() !== list.map((f) => f.feature.name).join()) diffs.push(`${where}: order or set core [${theirs.map((f) => f.feature.name).join()}] local [${list.map((f) => f.feature.name).join()}]`)
      for (const t of theirs) {
        const o = list.find((f) => f.feature.name === t.feature.name)
        if (o === undefined) continue
        for (const field of ['id', 'enabled', 'feature_state_value', 'environment', 'identity'] as const) {
          if (JSON.stringify(t[field]) !== JSON.stringify(o[field])) diffs.push(`${where} ${t.feature.name}.${field}: core ${JSON.stringify(t[field])} local ${JSON.stringify(o[field])}`)
        }
        for (const field of ['id', 'name', 'type'] as const) {
          if (JSON.stringify(t.feature[field]) !== JSON.stringify(o.feature[field])) diffs.push(`${where} ${t.feature.name}.feature.${field}: core ${JSON.stringify(t.feature[field])} local ${JSON.stringify(o.feature[field])}`)
        }
      }
    }
    expect(diffs).toEqual([])
  })

  it('identities/ (transient POST with traits): identifier, traits and every flag\'s id, enabled, value, variant and identity', () => {
    const { identities } = loadRealCoreFixtures()
    expect(identities.length).toBeGreaterThan(100)
    const diffs: string[] = []
    let compared = 0
    for (const ex of identities) {
      const body = ex.request.body as { identifier: string; traits?: Array<{ trait_key: string; trait_value: unknown }> }
      const traits = Object.fromEntries((body.traits ?? []).map((t) => [t.trait_key, t.trait_value]))
      const ours = identityPostAnswer(env!, ex.request.key === 'server', Buffer.from(JSON.stringify(body)))
      const who = `${ex.request.key} ${body.identifier} ${JSON.stringify(traits)}`
      if (ours.status !== ex.response.status) { diffs.push(`${who}: status core ${ex.response.status} local ${ours.status}`); continue }
      const mine = JSON.parse(ours.body.toString()) as { identifier: string; traits: unknown; flags: CoreFlag[] }
      const theirs = ex.response.body
      if (mine.identifier !== theirs.identifier) diffs.push(`${who}: identifier core ${theirs.identifier} local ${mine.identifier}`)
      if (JSON.stringify(mine.traits) !== JSON.stringify(theirs.traits)) diffs.push(`${who}: traits core ${JSON.stringify(theirs.traits)} local ${JSON.stringify(mine.traits)}`)
      const c = compact(theirs.flags as CoreFlag[])
      const o = compact(mine.flags)
      if (Object.keys(c).join() !== Object.keys(o).join()) diffs.push(`${who}: flags core [${Object.keys(c).join()}] local [${Object.keys(o).join()}]`)
      for (const name of Object.keys(c)) {
        compared++
        if (JSON.stringify(c[name]) === JSON.stringify(o[name])) continue
        if (KNOWN.some((k) => k.applies(name, traits, c[name], o[name]))) continue
        diffs.push(`${who} ${name}: core ${JSON.stringify(c[name])} local ${JSON.stringify(o[name])}`)
      }
    }
    expect(compared).toBeGreaterThan(1000)
    expect(diffs).toEqual([])
  })
})

