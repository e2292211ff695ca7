/**
 * Local answers to the SDK endpoints, in Core's shape (`SDKFeatureStates` and `SDKIdentities`):
 *
 * - `GET flags/`: the environment's flags (precomputed bytes), `?feature=<name>` one object or
 *   404 `{"detail":"Given feature not found"}` (server-key-only features do not exist for a
 *   client key);
 * - `GET identities/?identifier=` (`&transient=`) and `POST identities/`
 *   (`{identifier, traits, transient}`): `{identifier, traits, flags}`, the flags evaluated by
 *   Flagsmith's engine for the identifier and the request's traits; a missing identifier on GET
 *   is Core's 200 `{"detail":"Missing identifier"}`.
 *
 * Pure: the request's parts in, status and bytes out, plus the write Core must still receive (a
 * non-transient POST with traits), which the caller queues.
 */
import type { EngineTraitValue } from './engine.js'
import { identityFlags, type LocalEnvironment } from './environment.js'

export interface LocalAnswer {
  status: number
  body: Buffer
  /** a POST whose traits Core must store: replay these bytes to Core, in order */
  write?: { body: Buffer }
}

/** Core's `Identity.identifier` is at most 2000 characters. */
export const MAX_IDENTIFIER = 2000

const FEATURE_NOT_FOUND = Buffer.from('{"detail":"Given feature not found"}')
const MISSING_IDENTIFIER = Buffer.from('{"detail":"Missing identifier"}')

const json = (status: number, value: unknown): LocalAnswer => ({ status, body: Buffer.from(JSON.stringify(value)) })
const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v)
const isTraitValue = (v: unknown): v is EngineTraitValue => v === null || typeof v === 'string' || typeof v === 'boolean' || (typeof v === 'number' && Number.isFinite(v))
/** DRF's BooleanField reading of a query parameter */
const truthy = (v: string | null): boolean => v !== null && ['true', 'True', '1', 'yes', 'on'].includes(v)

export function flagsAnswer (env: LocalEnvironment, isServer: boolean, query: URLSearchParams | undefined): LocalAnswer {
  const feature = query?.get('feature') ?? null
  if (feature === null) return { status: 200, body: isServer ? env.flagsBody.server : env.flagsBody.client }
  const body = (isServer ? env.featureBody.server : env.featureBody.client).get(feature)
  return body === undefined ? { status: 404, body: FEATURE_NOT_FOUND } : { status: 200, body }
}

interface InputTrait { trait_key: string; trait_value: EngineTraitValue; transient: boolean }

function identityBody (env: LocalEnvironment, isServer: boolean, identifier: string, traits: InputTrait[], transient: boolean, feature: string | null): LocalAnswer {
  const values = Object.create(null) as Record<string, EngineTraitValue>
  for (const t of traits) values[t.trait_key] = t.trait_value
  let flags = identityFlags(env, identifier, values, isServer)
  if (feature !== null) flags = flags.filter((f) => (f.feature as { name: string }).name === feature)
  // Core drops null-valued traits from its answer, except for an identity it already knows
  // (one with overrides in the document), whose answer echoes them (recorded on Core v2.259.0)
  const known = env.storedTraits.has(identifier)
  const shown = traits.filter((t) => known || t.trait_value !== null)
    .map((t) => ({ id: null, trait_key: t.trait_key, trait_value: t.trait_value, transient: transient || t.transient }))
  return json(200, { identifier, traits: shown, flags })
}

export function identityGetAnswer (env: LocalEnvironment, isServer: boolean, query: URLSearchParams): LocalAnswer {
  const identifier = query.get('identifier')
  if (identifier === null || identifier === '') return { status: 200, body: MISSING_IDENTIFIER }
  if (identifier.length > MAX_IDENTIFIER) return json(400, { identifier: [`Ensure this field has no more than ${MAX_IDENTIFIER} characters.`] })
  return identityBody(env, isServer, identifier, [], truthy(query.get('transient')), query.get('feature'))
}

export function identityPostAnswer (env: LocalEnvironment, isServer: boolean, body: Buffer | undefined): LocalAnswer {
  let input: unknown
  try { input = body === undefined || body.length === 0 ? {} : JSON.parse(body.toString('utf8')) } catch (err) {
    return json(400, { detail: `JSON parse error - ${(err as Error).message}` })
  }
  if (!isObject(input)) return json(400, { non_field_errors: ['Invalid data. Expected a dictionary, but got list.'] })
  const identifier = input.identifier
  if (typeof identifier !== 'string' || identifier === '') return json(400, { identifier: ['This field is required.'] })
  if (identifier.length > MAX_IDENTIFIER) return json(400, { identifier: [`Ensure this field has no more than ${MAX_IDENTIFIER} characters.`] })
  const raw = input.traits ?? []
  if (!Array.isArray(raw)) return json(400, { traits: ['Expected a list of items but got type "dict".'] })
  const traits: InputTrait[] = []
  for (const t of raw) {
    if (!isObject(t) || typeof t.trait_key !== 'string' || t.trait_key === '' || !isTraitValue(t.trait_value)) {
      return json(400, { traits: ['Each trait needs a trait_key (a string) and a trait_value (a string, number, boolean or null).'] })
    }
    traits.push({ trait_key: t.trait_key, trait_value: t.trait_value, transient: t.transient === true })
  }
  const transient = input.transient === true
  const answer = identityBody(env, isServer, identifier, traits, transient, null)
  // what Core would have stored: the identity and its non-transient traits
  if (!transient && traits.some((t) => !t.transient) && body !== undefined) answer.write = { body }
  return answer
}
