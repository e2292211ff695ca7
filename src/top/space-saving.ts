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

export class SpaceSaving {
  readonly capacity: number
  readonly #items: string[] = []
  readonly #counts: number[] = []
  readonly #errors: number[] = []
  readonly #where = new Map<string, number>()
  #total = 0

  constructor (capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new TypeError('capacity must be a positive integer')
    this.capacity = capacity
  }

  /** items tracked (≤ capacity) */
  get size (): number { return this.#items.length }
  /** N: everything counted so far */
  get total (): number { return this.#total }
  /** the guaranteed bound on any count's over-estimate: N / capacity */
  get errorBound (): number { return this.#total / this.capacity }

  add (item: string, n = 1): void {
    this.#total += n
    const i = this.#where.get(item)
    if (i !== undefined) {
      this.#counts[i]! += n
      this.#down(i)
      return
    }
    if (this.#items.length < this.capacity) {
      const j = this.#items.length
      this.#items.push(item)
      this.#counts.push(n)
      this.#errors.push(0)
      this.#where.set(item, j)
      this.#up(j)
      return
    }
    // replace the minimum (the heap's root): its count becomes the newcomer's possible error
    this.#where.delete(this.#items[0]!)
    const min = this.#counts[0]!
    this.#items[0] = item
    this.#errors[0] = min
    this.#counts[0] = min + n
    this.#where.set(item, 0)
    this.#down(0)
  }

  get (item: string): Counted | undefined {
    const i = this.#where.get(item)
    return i === undefined ? undefined : { item, count: this.#counts[i]!, error: this.#errors[i]! }
  }

  /** Every counter, largest count first. */
  entries (): Counted[] {
    const out: Counted[] = this.#items.map((item, i) => ({ item, count: this.#counts[i]!, error: this.#errors[i]! }))
    return out.sort((a, b) => b.count - a.count || a.item.localeCompare(b.item))
  }

  /** The `k` largest counts. */
  top (k: number): Counted[] { return this.entries().slice(0, k) }

  clear (): void {
    this.#items.length = 0
    this.#counts.length = 0
    this.#errors.length = 0
    this.#where.clear()
    this.#total = 0
  }

  #swap (a: number, b: number): void {
    const items = this.#items; const counts = this.#counts; const errors = this.#errors
    const ti = items[a]!; items[a] = items[b]!; items[b] = ti
    const tc = counts[a]!; counts[a] = counts[b]!; counts[b] = tc
    const te = errors[a]!; errors[a] = errors[b]!; errors[b] = te
    this.#where.set(items[a]!, a)
    this.#where.set(items[b]!, b)
  }

  #up (i: number): void {
    const counts = this.#counts
    while (i > 0) {
      const parent = (i - 1) >> 1
      if (counts[parent]! <= counts[i]!) return
      this.#swap(i, parent)
      i = parent
    }
  }

  #down (i: number): void {
    const counts = this.#counts
    const n = counts.length
    for (;;) {
      const l = 2 * i + 1
      if (l >= n) return
      const r = l + 1
      const m = r < n && counts[r]! < counts[l]! ? r : l
      if (counts[i]! <= counts[m]!) return
      this.#swap(i, m)
      i = m
    }
  }
}
