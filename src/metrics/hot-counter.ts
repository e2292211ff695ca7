/**
 * Counting on the request path. prom-client's `labels(...).inc()` formats its label hash and looks
 * it up on every call (a microsecond per request for three labels, a cache hit's tenth counter
 * and all: bench/results.md). A hot child is a plain number instead, added to its counter when the
 * registry is read (the counter's `collect`, which prom-client runs before every `get()` and so
 * before every scrape): a scrape sees every increment made before it. Written by hand; prom-client
 * has no such mode.
 */
import type { Counter } from 'prom-client'

export interface HotChild { inc (n?: number): void }

class Child implements HotChild {
  pending = 0
  constructor (readonly labels: Readonly<Record<string, string>>) {}
  inc (n = 1): void { this.pending += n }
}

/**
 * The hot children of one counter. Label values must come from a bounded set (policy names,
 * decisions, status codes), as for any label; callers keep the children they resolve.
 */
export class HotChildren {
  readonly #children: Child[] = []

  child (labels: Readonly<Record<string, string>>): HotChild {
    const c = new Child(labels)
    this.#children.push(c)
    return c
  }

  /** Adds what the children counted to `counter`; pass it as the counter's `collect`. */
  flush (counter: Counter<string>): void {
    for (const c of this.#children) {
      if (c.pending === 0) continue
      counter.inc(c.labels, c.pending)
      c.pending = 0
    }
  }
}

/**
 * A child per distinct (a, b, c) of bounded values, resolved once: nested maps, so a lookup
 * formats no string on the request path.
 */
export class HotChildTable {
  readonly #byA = new Map<string, Map<string, Map<string | number, HotChild>>>()
  constructor (readonly children: HotChildren, readonly labelsOf: (a: string, b: string, c: string | number) => Record<string, string>) {}

  get (a: string, b: string, c: string | number): HotChild {
    let byB = this.#byA.get(a)
    if (byB === undefined) { byB = new Map(); this.#byA.set(a, byB) }
    let byC = byB.get(b)
    if (byC === undefined) { byC = new Map(); byB.set(b, byC) }
    let child = byC.get(c)
    if (child === undefined) { child = this.children.child(this.labelsOf(a, b, c)); byC.set(c, child) }
    return child
  }
}
