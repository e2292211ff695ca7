/**
 * Where runtime and automatic blocks live beyond this process: a state file (one replica) or
 * Redis (a fleet). The blocking capability calls these after changing the registry; a backend never blocks a
 * request and never throws at the caller.
 */
import type { Block } from './core.js'
import type { ComponentLogger } from '../shared/logger.js'

/** What blocking writes to: the one logger interface (shared/logger.ts). */
export type BlockLogger = ComponentLogger

export interface BlockBackend {
  /** loads what the previous run or the other replicas hold */
  start (): void
  /** resolves once the first load is done (or given up for now; it keeps trying) */
  ready (): Promise<void>
  added (block: Block): void
  removed (id: string): void
  expired (blocks: readonly Block[]): void
  status (): Record<string, unknown>
  /**
   * Waits until every change so far is stored; why it is not, or undefined. A backend whose store
   * accepts changes at once (Redis: the registry publishes, the sync retries) leaves it out.
   */
  flush? (): Promise<string | undefined>
  close (): Promise<void>
}
