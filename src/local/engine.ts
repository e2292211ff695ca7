/**
 * Flagsmith's own evaluation engine, the one the official Node SDK (`flagsmith-nodejs`, pinned
 * at an exact version in package.json) ships and runs in its local-evaluation mode. Nothing here
 * decides a segment, a percentage split or a priority: the SDK's functions do.
 *
 * Why a path inside the package: its `exports` map publishes only the SDK's root, and the root
 * exports the models but not the three functions the SDK itself calls to evaluate a document
 * (`buildEnvironmentModel`, `getEvaluationContext`, `getEvaluationResult`; sdk/index.ts does
 * exactly this sequence). We load its CommonJS build by file path, which the `exports` map does
 * not govern. The version is pinned, and test/local/engine.test.ts fails if the layout moves.
 */
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'

const require = createRequire(import.meta.url)
// the root of the CommonJS build (the `require` condition of the package's exports)
const sdkRoot = dirname(require.resolve('flagsmith-nodejs'))

/** A trait value as the engine takes it. */
export type EngineTraitValue = string | number | boolean | null

/** One feature (or override) in the engine's evaluation context. */
export interface EngineFeature {
  key: string
  name: string
  enabled: boolean
  value: unknown
  variants?: Array<{ value: unknown; weight: number; priority: number | bigint }>
  priority?: number
  metadata: Record<string, unknown> & { id: number }
}

export interface EngineContext {
  environment: { key: string; name: string }
  features: Record<string, EngineFeature>
  segments: Record<string, { key: string; name: string; rules: unknown[]; overrides?: EngineFeature[]; metadata?: Record<string, unknown> }>
  identity?: { identifier: string; key?: string; traits: Record<string, EngineTraitValue> }
}

export interface EngineFlag {
  name: string
  enabled: boolean
  value: unknown
  reason?: string
  metadata: Record<string, unknown> & { id: number }
}

export interface EngineResult {
  flags: Record<string, EngineFlag>
  segments: Array<{ name: string; metadata?: Record<string, unknown> }>
}

/** The SDK's EnvironmentModel, opaque here: only the engine reads it. */
export type EnvironmentModel = object & { readonly __environmentModel?: never }

interface Engine {
  buildEnvironmentModel: (document: unknown) => EnvironmentModel
  getEvaluationContext: (environment: EnvironmentModel, identity: undefined, overrideTraits: undefined, isEnvironmentEvaluation: true) => EngineContext
  getEvaluationResult: (context: EngineContext) => EngineResult
}

function load (): Engine {
  const env = require(join(sdkRoot, 'flagsmith-engine/environments/util.js')) as Pick<Engine, 'buildEnvironmentModel'>
  const mappers = require(join(sdkRoot, 'flagsmith-engine/evaluation/evaluationContext/mappers.js')) as Pick<Engine, 'getEvaluationContext'>
  const engine = require(join(sdkRoot, 'flagsmith-engine/index.js')) as Pick<Engine, 'getEvaluationResult'>
  for (const [name, fn] of [['buildEnvironmentModel', env.buildEnvironmentModel], ['getEvaluationContext', mappers.getEvaluationContext], ['getEvaluationResult', engine.getEvaluationResult]] as const) {
    if (typeof fn !== 'function') throw new Error(`flagsmith-nodejs no longer provides ${name} where this gateway expects it: pin the version in package.json`)
  }
  return { buildEnvironmentModel: env.buildEnvironmentModel, getEvaluationContext: mappers.getEvaluationContext, getEvaluationResult: engine.getEvaluationResult }
}

export const engine: Engine = load()

/** The version of flagsmith-nodejs whose engine answers (for the status page). */
export const ENGINE_VERSION: string = (require(join(sdkRoot, '..', '..', 'package.json')) as { version: string }).version
