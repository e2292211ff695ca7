/**
 * Space-Saving (Metwally, Agrawal, El Abbadi, 2005): the heavy hitters of a stream in a fixed
 * number of counters.
 *
 * With `capacity` counters over a stream of N items:
 * - every item seen more than N / capacity times is among the counters;
 * - each counter over-estimates its item by at most its `error` (≤ N / capacity):
 *   `count - error ≤ true count ≤ count`.
 * When a new item arrives and every counter is taken, it replaces the item with the smallest
 * count and inherits that count as its error. The counters sit in a binary min-heap indexed by a
 * Map, so an update costs O(log capacity) and memory is `capacity` entries whatever the stream.
 *
 * Written by hand: npm has no maintained package for it (the few "space-saving"/"heavy hitters"
 * packages are single-release experiments, some without types); it is 100 lines.
 */

export interface Counted { item: string; count: number; error: number }

interface Counter { item: string; count: number; error: number; /** position in the heap */ pos: number }

export class SpaceSaving {
  readonly capacity: number
  /** min-heap on count; each counter knows its position, so moving one never touches the Map */
  readonly #heap: Counter[] = []
  readonly #where = new Map<string, Counter>()
  #total = 0

  constructor (capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new TypeError('capacity must be a positive integer')
    this.capacity = capacity
  }

  /** items tracked (≤ capacity) */
  get size (): number { return this.#heap.length }
  /** N: everything counted so far */
  get total (): number { return this.#total }
  /** the guaranteed bound on any count's over-estimate: N / capacity */
  get errorBound (): number { return this.#total / this.capacity }

  add (item: string, n = 1): void {
    this.#total += n
    const c = this.#where.get(item)
    if (c !== undefined) {
      c.count += n
      this.#down(c.pos)
      return
    }
    const heap = this.#heap
    if (heap.length < this.capacity) {
      const fresh: Counter = { item, count: n, error: 0, pos: heap.length }
      heap.push(fresh)
      this.#where.set(item, fresh)
      this.#up(fresh.pos)
      return
    }
    // replace the minimum (the heap's root): its count becomes the newcomer's possible error
    const min = heap[0]!
    this.#where.delete(min.item)
    min.item = item
    min.error = min.count
    min.count += n
    this.#where.set(item, min)
    this.#down(0)
  }

  get (item: string): Counted | undefined {
    const c = this.#where.get(item)
    return c === undefined ? undefined : { item, count: c.count, error: c.error }
  }

  /** Every counter, largest count first. */
  entries (): Counted[] {
    const out: Counted[] = this.#heap.map((c) => ({ item: c.item, count: c.count, error: c.error }))
    return out.sort((a, b) => b.count - a.count || a.item.localeCompare(b.item))
  }

  /** The `k` largest counts. */
  top (k: number): Counted[] { return this.entries().slice(0, k) }

  clear (): void {
    this.#heap.length = 0
    this.#where.clear()
    this.#total = 0
  }

  #up (i: number): void {
    const heap = this.#heap
    const c = heap[i]!
    while (i > 0) {
      const parent = (i - 1) >> 1
      const p = heap[parent]!
      if (p.count <= c.count) break
      this.#place(p, i)
      i = parent
    }
    this.#place(c, i)
  }

  #down (i: number): void {
    const heap = this.#heap
    const n = heap.length
    const c = heap[i]!
    for (;;) {
      const l = 2 * i + 1
      if (l >= n) break
      const r = l + 1
      const m = r < n && heap[r]!.count < heap[l]!.count ? r : l
      const child = heap[m]!
      if (c.count <= child.count) break
      this.#place(child, i)
      i = m
    }
    this.#place(c, i)
  }

  /** puts `c` at heap index `i`, and tells it so */
  #place (c: Counter, i: number): void {
    this.#heap[i] = c
    c.pos = i
  }
}
