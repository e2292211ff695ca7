/**
 * Everything the composition (gateway.ts) needs from Edge routing: the `edge` step, which reads
 * whether the route's upstream breaker is open through `isOpen` (the upstream gate).
 */
import type { Capability, PluginEntry } from '../contracts/capability.js'
import edgeRouting, { type EdgePluginOptions } from './plugin.js'

export interface EdgeCapability extends Capability {
  steps: { edge: PluginEntry }
}

export function createEdge (opts: EdgePluginOptions): EdgeCapability {
  return { name: 'edge', steps: { edge: { plugin: edgeRouting, opts } } }
}
