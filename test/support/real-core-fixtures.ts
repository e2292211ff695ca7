/**
 * Reads the recorded answers of the real Flagsmith Core (test/fixtures/real-core/, layout in its
 * README) and gives every identity answer back in Core's full shape, so a differential test
 * compares a local answer with Core's whole answer, not with the compact form kept on disk.
 *
 * On disk an identity answer keeps only the flags that differ from `GET flags/` with the same key
 * ({@link compactIdentityAnswer}; the recorder uses it); {@link expandIdentityAnswer} puts the rest
 * back from that recorded `flags/` answer (the same serializer, the same order: by feature id).
 */
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

export const REAL_CORE_FIXTURES = fileURLToPath(new URL('../fixtures/real-core/', import.meta.url))

export interface RecordedRequest { method: string; path: string; key: 'client' | 'server'; headers?: Record<string, string>; body?: unknown }
export interface RecordedResponse { status: number; headers?: Record<string, string>; body: unknown }
export interface RecordedExchange { request: RecordedRequest; response: RecordedResponse }

export interface CoreFlag {
  id: number
  feature: { id: number; name: string; [field: string]: unknown }
  feature_state_value: unknown
  environment: number
  identity: unknown
  feature_segment: unknown
  enabled: boolean
  variant?: string | null
}

export interface IdentityAnswer { identifier: string; traits: unknown[]; flags: CoreFlag[] }

export interface RealCoreFixtures {
  meta: {
    recordedAt: string
    core: { url: string; version: string | null }
    environment: { id: number; clientKey: string; serverKey: string }
    features: Record<string, number>
    segments: Record<string, number>
    overrideIdentity: string
  }
  document: RecordedExchange
  notModified: RecordedExchange | undefined
  flags: RecordedExchange[]
  /** Every identity exchange, its body in Core's full shape. */
  identities: Array<RecordedExchange & { response: { body: IdentityAnswer } }>
}

function read (name: string): unknown {
  return JSON.parse(readFileSync(`${REAL_CORE_FIXTURES}${name}`, 'utf8'))
}

export function loadRealCoreFixtures (): RealCoreFixtures {
  const meta = read('meta.json') as RealCoreFixtures['meta']
  const doc = read('environment-document.json') as { document: RecordedExchange; notModified?: RecordedExchange }
  const flags = read('flags.json') as RecordedExchange[]
  const raw = read('identities.json') as RecordedExchange[]
  const base = flagsBaseline(flags)
  const identities = raw.map((e) => ({ request: e.request, response: { ...e.response, body: expandIdentityAnswer(e.response.body as CompactIdentityAnswer | IdentityAnswer, base[e.request.key]) } }))
  return { meta, document: doc.document, notModified: doc.notModified, flags, identities }
}

/** `GET flags/` as recorded for each key: what an identity's flags are compared with. */
export function flagsBaseline (flags: RecordedExchange[]): Record<'client' | 'server', CoreFlag[]> {
  const list = (key: 'client' | 'server'): CoreFlag[] => {
    const e = flags.find((x) => x.request.key === key && x.request.path === '/api/v1/flags/')
    if (e === undefined || !Array.isArray(e.response.body)) throw new Error(`flags.json lacks GET flags/ with the ${key} key`)
    return e.response.body as CoreFlag[]
  }
  return { client: list('client'), server: list('server') }
}

/** `[id, enabled, feature_state_value, variant, feature_segment, identity]`, trailing nulls left out. */
export type CompactFlag = [number, boolean, unknown?, (string | null)?, unknown?, unknown?]
export interface CompactIdentityAnswer { identifier: string; traits: unknown[]; flags: Record<string, CompactFlag> }

/**
 * Keeps of an identity answer only the flags that differ from `GET flags/` with the same key
 * (a few of the ~45 here), each as a {@link CompactFlag}: the recorder's form on disk.
 */
export function compactIdentityAnswer (answer: IdentityAnswer, baseline: CoreFlag[]): CompactIdentityAnswer {
  const byName = new Map(baseline.map((f) => [f.feature.name, f]))
  const names = answer.flags.map((f) => f.feature.name)
  if (names.join() !== baseline.map((f) => f.feature.name).join()) throw new Error(`identity answer lists other features than flags/: ${names.join()}`)
  const flags: Record<string, CompactFlag> = {}
  for (const f of answer.flags) {
    const b = byName.get(f.feature.name)!
    const variant = f.variant ?? null
    if (f.id === b.id && f.enabled === b.enabled && same(f.feature_state_value, b.feature_state_value) && variant === null &&
        same(f.feature_segment, b.feature_segment) && same(f.identity, b.identity) && same(f.feature, b.feature)) continue
    const tuple: unknown[] = [f.id, f.enabled, f.feature_state_value, variant, f.feature_segment, f.identity]
    while (tuple.length > 2 && tuple[tuple.length - 1] === null) tuple.pop()
    flags[f.feature.name] = tuple as CompactFlag
  }
  return { identifier: answer.identifier, traits: answer.traits, flags }
}

/** The inverse of {@link compactIdentityAnswer}; an answer already in full is returned as it is. */
export function expandIdentityAnswer (answer: CompactIdentityAnswer | IdentityAnswer, baseline: CoreFlag[]): IdentityAnswer {
  if (Array.isArray(answer.flags)) return answer as IdentityAnswer
  const compact = answer.flags as Record<string, CompactFlag>
  for (const name of Object.keys(compact)) if (!baseline.some((b) => b.feature.name === name)) throw new Error(`identities.json names a feature flags.json does not: ${name}`)
  const flags = baseline.map((b): CoreFlag => {
    const c = compact[b.feature.name]
    if (c === undefined) return { ...b, variant: null }
    const [id, enabled, value = null, variant = null, featureSegment = null, identity = null] = c
    return { id, feature: b.feature, feature_state_value: value, environment: b.environment, identity, feature_segment: featureSegment, enabled, variant }
  })
  return { identifier: answer.identifier, traits: answer.traits, flags }
}

function same (a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b)
}
