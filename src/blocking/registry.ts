/**
 * The blocks in force on this replica: the policy's static ones and the shared ones (runtime,
 * automatic) that the persistence layer (state file or Redis) keeps in step with the others.
 * Every change goes through here, so the index, the counts and the `blocks_active` gauge never
 * disagree.
 */
import { BlockIndex, type Block, type BlockSource } from './core.js'

import { systemClock, type Clock } from '../shared/clock.js'

export type { Clock }

export class BlockRegistry {
  readonly index = new BlockIndex()
  readonly clock: Clock
  readonly #static = new Set<string>()
  readonly #onChange: () => void
  // kept as blocks come and go: a full load of 10,000 blocks must not count them 10,000 times
  readonly #counts: Record<BlockSource, number> = { static: 0, runtime: 0, abuse: 0 }

  constructor (opts: { clock?: Clock; onChange?: () => void } = {}) {
    this.clock = opts.clock ?? systemClock
    this.#onChange = opts.onChange ?? (() => {})
  }

  get size (): number { return this.index.size }
  isStatic (id: string): boolean { return this.#static.has(id) }
  has (id: string): boolean { return this.index.has(id) }
  get (id: string): Block | undefined { return this.index.get(id) }

  /** The policy's blocklist, on start and on every reload; unchanged entries keep their createdAt. */
  setStatic (blocks: readonly Block[]): void {
    const next = new Set(blocks.map((b) => b.id))
    for (const id of this.#static) if (!next.has(id)) this.#remove(id)
    for (const b of blocks) {
      // the id follows the target, so an edited reason replaces the entry but keeps its age
      const prev = this.#static.has(b.id) ? this.index.get(b.id) : undefined
      this.#add(prev === undefined ? b : { ...b, createdAt: prev.createdAt })
    }
    this.#static.clear()
    for (const id of next) this.#static.add(id)
    this.#onChange()
  }

  /** Adds or replaces a runtime or automatic block; false when it is expired or unusable. */
  upsert (block: Block): boolean {
    if (block.source === 'static' || this.#static.has(block.id)) return false
    if (block.expiresAt !== undefined && block.expiresAt <= this.clock()) return false
    if (!this.#add(block)) return false
    this.#onChange()
    return true
  }

  /** Lifts a runtime or automatic block; static ones live in the policy file. */
  delete (id: string): Block | undefined {
    if (this.#static.has(id)) return undefined
    const b = this.index.get(id)
    if (b === undefined) return undefined
    this.#remove(id)
    this.#onChange()
    return b
  }

  /** Drops the blocks whose time is up and returns them. */
  sweep (): Block[] {
    const ids = this.index.expired(this.clock())
    if (ids.length === 0) return []
    const gone: Block[] = []
    for (const id of ids) {
      gone.push(this.index.get(id)!)
      this.#remove(id)
    }
    this.#onChange()
    return gone
  }

  /** Every block, oldest first. */
  list (): Block[] {
    return this.index.blocks().sort((a, b) => a.createdAt - b.createdAt || a.id.localeCompare(b.id))
  }

  /** Runtime and automatic blocks: what is persisted and shared. */
  shared (): Block[] {
    return this.list().filter((b) => !this.#static.has(b.id))
  }

  counts (): Record<BlockSource, number> {
    return { ...this.#counts }
  }

  #add (block: Block): boolean {
    const prev = this.index.get(block.id)
    if (!this.index.add(block)) return false
    if (prev !== undefined) this.#counts[prev.source]--
    this.#counts[block.source]++
    return true
  }

  #remove (id: string): void {
    const prev = this.index.get(id)
    if (prev === undefined) return
    this.index.remove(id)
    this.#counts[prev.source]--
  }
}
