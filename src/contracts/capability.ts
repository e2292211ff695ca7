/**
 * The one shape every capability factory returns (`createBlocking`, `createCache`, ...), and what
 * the composition root (gateway.ts) does with it: register its steps in the order of the pipeline
 * table (contracts/pipeline.ts), its routes beside the proxied scope, its admin extension on the
 * admin listener; call `reload` on every policy reload and `close` on shutdown, in reverse order
 * of creation. A factory never wires itself into another part: it returns what it offers.
 */
import type { FastifyInstance, FastifyPluginAsync } from 'fastify'
import type { Policy } from '../policy/compile.js'
import type { CapabilityStep } from './pipeline.js'

/** Shared by both listeners: `/readyz` turns 503 once `draining` is set (shutdown). */
export interface Lifecycle {
  draining: boolean
  /** lines `/readyz` names in `warnings` while staying 200 (e.g. a stale local-evaluation document) */
  warnings?: () => string[]
}

/** A fastify plugin and its options, registered by the composition. */
export interface PluginEntry { plugin: FastifyPluginAsync<never>; opts: unknown }

/** What a capability adds to the admin listener. */
export interface AdminExtension {
  /** adds routes under /admin; they run after the token check */
  routes?: (admin: FastifyInstance) => void | Promise<void>
  /** contributes a section of GET /admin/status */
  status?: () => Record<string, unknown> | Promise<Record<string, unknown>>
}

/** What an admin route throws for a bad request: the admin app answers `statusCode` and the message. */
export class AdminError extends Error {
  constructor (readonly statusCode: number, message: string) { super(message) }
}

/** The plugins a capability offers for steps of the request pipeline, by step name. */
export type Steps = Partial<Record<CapabilityStep, PluginEntry>>

export interface Capability {
  /** the component name: the `component` field of its log lines */
  name: string
  /** its hooks on the request path, each in the step of the pipeline table it implements */
  steps?: Steps
  /** routes on the public listener outside the proxied scope (e.g. the Flagsmith webhook) */
  routes?: PluginEntry[]
  admin?: AdminExtension
  /** called on every policy reload, after the policy is in force */
  reload?: (policy: Policy) => void
  close?: () => Promise<void> | void
}
