/**
 * Where runtime and automatic blocks live beyond this process: a state file (one replica) or
 * Redis (a fleet). The blocking capability calls these after changing the registry; a backend never blocks a
 * request and never throws at the caller.
 */
import type { Block } from './core.js'

export interface BlockLogger {
  info (obj: object, msg: string): void
  warn (obj: object, msg: string): void
  error (obj: object, msg: string): void
}

export interface BlockBackend {
  /** loads what the previous run or the other replicas hold */
  start (): void
  /** resolves once the first load is done (or given up for now; it keeps trying) */
  ready (): Promise<void>
  added (block: Block): void
  removed (id: string): void
  expired (blocks: readonly Block[]): void
  status (): Record<string, unknown>
  close (): Promise<void>
}
