/**
 * Distinct webhooks that arrive close together make one purge. Publishing a version in Flagsmith
 * sends one FLAG_UPDATED per changed feature state, all within a moment; purging on each would
 * drop the environment's documents once per webhook, and every drop is one more document Core
 * builds (and one more forced refresh of a local-evaluation document).
 *
 * The first webhook opens a window of `windowMs`; every target named while it is open joins it;
 * when it closes the union of targets is purged once and every webhook of the window gets the
 * count. The window is measured from its first webhook and never extended, so a purge waits at
 * most `windowMs` whatever the stream of webhooks: no change is dropped, and none waits long.
 * `windowMs` 0 purges on the next turn of the event loop (still one purge per burst that arrives
 * in one turn).
 */
import type { PurgeTarget } from './document.js'

function keyOf (t: PurgeTarget): string {
  if ('all' in t) return 'all'
  if ('envId' in t) return `env:${t.envId}`
  if ('projectId' in t) return `project:${t.projectId}`
  if ('key' in t) return `key:${t.key}`
  return `digest:${t.keyDigest}`
}

/** The targets with duplicates removed; everything alone when one of them is everything. */
export function unionOf (targets: readonly PurgeTarget[]): PurgeTarget[] {
  const byKey = new Map<string, PurgeTarget>()
  for (const t of targets) {
    if ('all' in t) return [t]
    byKey.set(keyOf(t), t)
  }
  return [...byKey.values()]
}

export class PurgeCoalescer {
  readonly #purge: (targets: PurgeTarget[]) => number
  #windowMs: number
  #pending: PurgeTarget[] = []
  #done: Promise<number> | undefined

  /** `purge` is called once per window with the union; it returns what it dropped */
  constructor (purge: (targets: PurgeTarget[]) => number, windowMs: number) {
    this.#purge = purge
    this.#windowMs = windowMs
  }

  /** a reload may change the window; the open one keeps its own */
  set windowMs (ms: number) { this.#windowMs = ms }

  /** Joins the open window (or opens one); resolves with the window's purge count when it closes. */
  async add (targets: readonly PurgeTarget[]): Promise<number> {
    this.#pending.push(...targets)
    this.#done ??= new Promise<number>((resolve, reject) => {
      const fire = (): void => {
        const batch = unionOf(this.#pending)
        this.#pending = []
        this.#done = undefined
        try { resolve(batch.length === 0 ? 0 : this.#purge(batch)) } catch (err) { reject(err) }
      }
      if (this.#windowMs > 0) setTimeout(fire, this.#windowMs)
      else setImmediate(fire)
    })
    return await this.#done
  }
}
