/**
 * One environment document, compiled once per version into what every local answer needs:
 *
 * - the engine's evaluation context (the SDK's own mapping of the document), built once instead
 *   of per request, as the SDK's local mode also keeps its model between calls;
 * - the environment's `flags/` answers as ready bytes, one for client keys and one for server
 *   keys (and one per feature for `?feature=`): those depend on nothing in the request, so a
 *   local `flags/` costs a map lookup and a write;
 * - what turns an engine result back into Core's `Flag` objects: the winning feature state's id
 *   and the option key of the winning variant, which the engine's result does not carry. Both
 *   ride through the engine untouched: the feature state's key in each feature's `metadata`
 *   (the engine copies the winner's metadata into its result), and each variant's value wrapped
 *   in a {@link VariantTag} (the engine hands the winning variant's value back as it is).
 *
 * Pure: no I/O, no clock. Segment rules, splits, priorities and identity overrides are decided
 * by the engine (engine.ts), never here.
 */
import { engine, type EngineContext, type EngineFeature, type EngineFlag, type EngineTraitValue } from './engine.js'
import { normaliseTraits } from './traits.js'
import { rewriteConditions, withPythonViews, type Probe } from './conditions.js'

/** A variant's value as handed to the engine, so the winner can be named (`variant`). */
export class VariantTag {
  constructor (readonly value: unknown, readonly key: string | null) {}
}

interface StateInfo {
  /** the feature state's id (`django_id`), Core's `Flag.id` */
  readonly id: number | null
  /** the identity whose override this is (its `django_id`), Core's `Flag.identity` */
  readonly identity: number | null
  /** this feature state has multivariate values: its flags carry `variant` */
  readonly multivariate: boolean
}

export interface LocalEnvironment {
  readonly id: number
  readonly name: string
  /** the environment's client-side key (`api_key`), the identity hash's prefix */
  readonly clientKey: string
  /** the document's `updated_at`, as Core wrote it */
  readonly updatedAt: string | undefined
  readonly hideSensitiveData: boolean
  readonly hideDisabledFlags: boolean
  readonly serverKeyOnly: ReadonlySet<number>
  /** `flags/` bodies, ready to send */
  readonly flagsBody: { readonly client: Buffer; readonly server: Buffer }
  /** `flags/?feature=<name>` bodies; a name absent from the map is Core's 404 */
  readonly featureBody: { readonly client: ReadonlyMap<string, Buffer>; readonly server: ReadonlyMap<string, Buffer> }
  /** number of features and segments, for the status page */
  readonly size: { features: number; segments: number; identityOverrides: number }
  /** @internal */
  readonly context: EngineContext
  /** @internal feature-state key (as the engine context names it) → what Core's Flag needs */
  readonly states: ReadonlyMap<string, StateInfo>
  /** @internal the conditions rewritten to read values as Core's Python engine does (conditions.ts) */
  readonly probes: readonly Probe[]
  /** @internal identifiers with overrides → their stored traits (the SDK merges them under the request's) */
  readonly storedTraits: ReadonlyMap<string, Record<string, EngineTraitValue>>
}

export class DocumentRejected extends Error {}

type Json = Record<string, unknown>
const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v)

/** The engine's key for a feature state, exactly as the SDK's mapper computes it. */
function stateKey (fs: Json): string {
  const id = fs.django_id
  return (id !== undefined && id !== null && id !== 0 && String(id) !== '') ? String(id) : String(fs.featurestate_uuid)
}

function optionKeys (fs: Json): Array<string | null> {
  const mv = Array.isArray(fs.multivariate_feature_state_values) ? fs.multivariate_feature_state_values : []
  return mv.map((v) => {
    const o = isObject(v) && isObject(v.multivariate_feature_option) ? v.multivariate_feature_option : {}
    return typeof o.key === 'string' ? o.key : null
  })
}

/** Checks the parts the engine would otherwise trip over, so a broken Core never breaks a request. */
function checkShape (doc: unknown): asserts doc is Json {
  if (!isObject(doc)) throw new DocumentRejected('the document is not a JSON object')
  if (typeof doc.api_key !== 'string' || doc.api_key === '') throw new DocumentRejected('the document has no api_key')
  if (!Array.isArray(doc.feature_states)) throw new DocumentRejected('the document has no feature_states list')
  if (!isObject(doc.project) || !Array.isArray(doc.project.segments)) throw new DocumentRejected('the document has no project.segments list')
  if (doc.identity_overrides !== undefined && doc.identity_overrides !== null && !Array.isArray(doc.identity_overrides)) throw new DocumentRejected('identity_overrides is not a list')
}

/** Core's `Flag` object (SDKFeatureStateSerializer) for what the document holds. */
function flagObject (env: LocalEnvironment | Omit<LocalEnvironment, 'flagsBody' | 'featureBody'>, f: EngineFlag, identity: boolean): Json {
  const info = env.states.get(String(f.metadata.fsKey))
  let value = f.value
  let variant: string | null = null
  if (value instanceof VariantTag) { variant = value.key; value = value.value } else if (info?.multivariate === true) variant = 'control'
  const feature = f.metadata.feature as Json
  const out: Json = env.hideSensitiveData
    ? { feature, feature_state_value: value ?? null, enabled: f.enabled }
    : { id: info?.id ?? null, feature, feature_state_value: value ?? null, environment: env.id, identity: info?.identity ?? null, feature_segment: null, enabled: f.enabled }
  if (identity) out.variant = variant
  return out
}

/** Core's order (feature id) and filters (server-key-only features for client keys, hidden disabled flags). */
function visibleFlags (env: Pick<LocalEnvironment, 'serverKeyOnly' | 'hideDisabledFlags'>, flags: Record<string, EngineFlag>, isServer: boolean): EngineFlag[] {
  const out: EngineFlag[] = []
  for (const name in flags) {
    const f = flags[name]!
    if (!isServer && env.serverKeyOnly.has(f.metadata.id)) continue
    if (env.hideDisabledFlags && !f.enabled) continue
    out.push(f)
  }
  return out.sort((a, b) => a.metadata.id - b.metadata.id)
}

export function compileEnvironment (doc: unknown): LocalEnvironment {
  checkShape(doc)
  let context: EngineContext
  try {
    context = engine.getEvaluationContext(engine.buildEnvironmentModel(doc), undefined, undefined, true)
  } catch (err) {
    throw new DocumentRejected(`the engine could not read the document: ${(err as Error).message}`)
  }
  const project = doc.project as Json
  const probes = rewriteConditions(context)
  const states = new Map<string, StateInfo>()
  const featureJson = new Map<number, Json>()
  const record = (fs: unknown, identity: number | null): void => {
    if (!isObject(fs) || !isObject(fs.feature)) return
    const mv = Array.isArray(fs.multivariate_feature_state_values) && fs.multivariate_feature_state_values.length > 0
    states.set(stateKey(fs), { id: typeof fs.django_id === 'number' ? fs.django_id : null, identity, multivariate: mv })
    const f = fs.feature
    if (typeof f.id === 'number' && !featureJson.has(f.id)) featureJson.set(f.id, { id: f.id, name: f.name, type: f.type ?? 'STANDARD' })
  }
  // the option keys by feature-state key, for the variant tags below
  const options = new Map<string, Array<string | null>>()
  const collect = (fs: unknown): void => { if (isObject(fs)) options.set(stateKey(fs), optionKeys(fs)) }
  for (const fs of doc.feature_states as unknown[]) { record(fs, null); collect(fs) }
  for (const s of project.segments as unknown[]) {
    for (const fs of isObject(s) && Array.isArray(s.feature_states) ? s.feature_states : []) { record(fs, null); collect(fs) }
  }
  const storedTraits = new Map<string, Record<string, EngineTraitValue>>()
  const overrides = Array.isArray(doc.identity_overrides) ? doc.identity_overrides as unknown[] : []
  for (const o of overrides) {
    if (!isObject(o) || typeof o.identifier !== 'string') continue
    const identityId = typeof o.django_id === 'number' ? o.django_id : null
    for (const fs of Array.isArray(o.identity_features) ? o.identity_features : []) { record(fs, identityId); collect(fs) }
    const traits = Object.create(null) as Record<string, EngineTraitValue>
    for (const t of Array.isArray(o.identity_traits) ? o.identity_traits : []) {
      if (isObject(t) && typeof t.trait_key === 'string') traits[t.trait_key] = t.trait_value as EngineTraitValue
    }
    storedTraits.set(o.identifier, traits)
  }

  // tag every feature of the context: its state's key in metadata, its variants' values wrapped
  const tag = (f: EngineFeature): void => {
    f.metadata = { ...f.metadata, fsKey: f.key, feature: featureJson.get(f.metadata.id) ?? { id: f.metadata.id, name: f.name, type: 'STANDARD' } }
    const keys = options.get(f.key) ?? []
    if (f.variants !== undefined) f.variants = f.variants.map((v, i) => ({ ...v, value: new VariantTag(v.value, keys[i] ?? null) }))
  }
  for (const name in context.features) tag(context.features[name]!)
  for (const id in context.segments) for (const f of context.segments[id]!.overrides ?? []) tag(f)

  const hideDisabled = typeof doc.hide_disabled_flags === 'boolean' ? doc.hide_disabled_flags : project.hide_disabled_flags === true
  const serverOnly = new Set<number>(Array.isArray(project.server_key_only_feature_ids) ? project.server_key_only_feature_ids.filter((x): x is number => typeof x === 'number') : [])
  const base = {
    id: typeof doc.id === 'number' ? doc.id : 0,
    name: typeof doc.name === 'string' ? doc.name : '',
    clientKey: doc.api_key as string,
    updatedAt: typeof doc.updated_at === 'string' ? doc.updated_at : undefined,
    hideSensitiveData: doc.hide_sensitive_data === true,
    hideDisabledFlags: hideDisabled,
    serverKeyOnly: serverOnly,
    size: { features: Object.keys(context.features).length, segments: (project.segments as unknown[]).length, identityOverrides: overrides.length },
    context,
    probes,
    states,
    storedTraits
  }
  // the environment's own flags: the engine without an identity (no segment, no split applies)
  const result = engine.getEvaluationResult(context)
  const bodies = (isServer: boolean): { list: Buffer; byName: Map<string, Buffer> } => {
    const flags = visibleFlags(base, result.flags, isServer).map((f) => flagObject(base, f, false))
    const byName = new Map<string, Buffer>()
    for (const f of flags) byName.set(String((f.feature as Json).name), Buffer.from(JSON.stringify(f)))
    return { list: Buffer.from(JSON.stringify(flags)), byName }
  }
  const client = bodies(false)
  const server = bodies(true)
  return { ...base, flagsBody: { client: client.list, server: server.list }, featureBody: { client: client.byName, server: server.byName } }
}

/**
 * An identity's flags, as Core's `identities/` lists them: the engine evaluates the document's
 * segments and overrides against the identifier and these traits (the request's, over the
 * traits the document stores for an identity with overrides, as the SDK does).
 */
export function identityFlags (env: LocalEnvironment, identifier: string, traits: Record<string, EngineTraitValue>, isServer: boolean): Json[] {
  const stored = env.storedTraits.get(identifier)
  // a null in the request deletes a stored trait: normaliseTraits drops null-valued ones
  const merged = stored === undefined ? traits : Object.assign(Object.create(null) as Record<string, EngineTraitValue>, stored, traits)
  const context: EngineContext = { ...env.context, identity: { identifier, traits: withPythonViews(normaliseTraits(merged), env.probes) } }
  const result = engine.getEvaluationResult(context)
  return visibleFlags(env, result.flags, isServer).map((f) => flagObject(env, f, true))
}
