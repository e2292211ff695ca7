/**
 * A memo of a string function over client-chosen strings (environment keys, identifiers),
 * bounded in bytes rather than entries: with entry counts, 10,000 entries of 15 KB keys are
 * 150 MB (issue 7). lru-cache's `memoMethod` + `maxSize`/`sizeCalculation` do the work.
 */
import { LRUCache } from 'lru-cache'

/** What one entry costs beyond its two strings (LRU slots, map entry, string headers), estimated. */
export const MEMO_ENTRY_OVERHEAD = 96

export class BoundedMemo {
  readonly #lru: LRUCache<string, string>

  constructor (fn: (input: string) => string, maxBytes: number) {
    this.#lru = new LRUCache<string, string>({
      maxSize: maxBytes,
      // header values are latin1: one byte per character
      sizeCalculation: (value, key) => MEMO_ENTRY_OVERHEAD + key.length + value.length,
      memoMethod: (key) => fn(key)
    })
  }

  get (input: string): string { return this.#lru.memo(input) }

  /** bytes held, as counted against `maxBytes` */
  get bytes (): number { return this.#lru.calculatedSize }
  get maxBytes (): number { return this.#lru.maxSize }
  get size (): number { return this.#lru.size }

  /** characters of the keys and values actually held, counted from the entries themselves */
  retainedChars (): number {
    let n = 0
    for (const [k, v] of this.#lru.entries()) n += k.length + v.length
    return n
  }
}
