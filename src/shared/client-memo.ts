/**
 * Values derived from a client (its environment key, then its IP; the document cache uses the URL
 * in the IP's place), remembered in bounded memory.
 *
 * Why: a request's derived strings (a bucket key, a top-talkers item, a cache key) built afresh
 * are new 40–70-character strings, which every Map lookup on them must flatten, hash and compare in full;
 * remembered ones are the same string objects every time, whose hashes V8 keeps. On a cache hit
 * the rate limiter's fresh bucket keys alone were a tenth of the CPU (bench/results.md). The
 * environment key is looked up as the header's own string: its hash is computed once per request
 * and reused by every other lookup on it; the IP of a direct connection is one string per socket.
 *
 * Bounded in estimated bytes (lru-cache's `maxSize`), and in addresses per key: a browser key is
 * seen from thousands of IPs, and those beyond `maxIpsPerKey` are simply computed each time.
 */
import { LRUCache } from 'lru-cache'
import { MEMO_ENTRY_OVERHEAD } from './memo.js'

export interface ClientMemoOptions<V> {
  maxBytes: number
  maxIpsPerKey: number
  /** estimated bytes of one value beyond its map entry (its strings and objects) */
  size: (v: V) => number
  /** characters of the strings one value holds, for {@link ClientMemo.retainedChars} */
  chars: (v: V) => number
}

interface KeyEntry<V> { readonly byIp: Map<string, V>; bytes: number }

export class ClientMemo<V> {
  readonly maxIpsPerKey: number
  readonly #byKey: LRUCache<string, KeyEntry<V>>
  readonly #size: (v: V) => number
  readonly #chars: (v: V) => number

  constructor (opts: ClientMemoOptions<V>) {
    this.maxIpsPerKey = opts.maxIpsPerKey
    this.#size = opts.size
    this.#chars = opts.chars
    this.#byKey = new LRUCache<string, KeyEntry<V>>({ maxSize: opts.maxBytes, sizeCalculation: (e) => e.bytes })
  }

  /** A client without a key is remembered under the empty key, by IP alone. */
  get (envKey: string | undefined, ip: string): V | undefined {
    return this.#byKey.get(envKey ?? '')?.byIp.get(ip)
  }

  /** Remembers (or replaces) the client's value; false when its key already has `maxIpsPerKey` addresses. */
  set (envKey: string | undefined, ip: string, value: V): boolean {
    const k = envKey ?? ''
    let entry = this.#byKey.get(k)
    const previous = entry?.byIp.get(ip)
    if (entry === undefined) entry = { byIp: new Map(), bytes: MEMO_ENTRY_OVERHEAD + k.length }
    else if (previous === undefined && entry.byIp.size >= this.maxIpsPerKey) return false
    if (previous !== undefined) entry.bytes -= MEMO_ENTRY_OVERHEAD + ip.length + this.#size(previous)
    entry.byIp.set(ip, value)
    entry.bytes += MEMO_ENTRY_OVERHEAD + ip.length + this.#size(value)
    // set again even when present, so that the LRU counts the entry's new size
    this.#byKey.set(k, entry)
    return true
  }

  /** estimated bytes held, as counted against `maxBytes` */
  get bytes (): number { return this.#byKey.calculatedSize }
  get maxBytes (): number { return this.#byKey.maxSize }

  /** characters of the keys, IPs and values actually held, counted from the entries themselves */
  retainedChars (): number {
    let n = 0
    for (const [k, e] of this.#byKey.entries()) {
      n += k.length
      for (const [ip, v] of e.byIp) n += ip.length + this.#chars(v)
    }
    return n
  }
}

/** [name, string, name, string, ...] */
type Named = readonly string[]

function namedChars (v: Named): number {
  let n = 0
  for (let i = 1; i < v.length; i += 2) n += v[i]!.length
  return n
}

/**
 * A client's derived strings by one more name (the route of a top-talkers item, the upstream of a
 * cache key): a short list of names per client, searched in order, since a client uses one or two.
 */
export class ClientStrings {
  readonly #memo: ClientMemo<Named>
  readonly #maxNames: number

  constructor (opts: { maxBytes: number; maxIpsPerKey: number; maxNames: number }) {
    this.#maxNames = opts.maxNames
    this.#memo = new ClientMemo<Named>({ maxBytes: opts.maxBytes, maxIpsPerKey: opts.maxIpsPerKey, size: (v) => v.length * 48 + namedChars(v), chars: namedChars })
  }

  get (envKey: string | undefined, ip: string, name: string): string | undefined {
    const known = this.#memo.get(envKey, ip)
    if (known === undefined) return undefined
    for (let i = 0; i < known.length; i += 2) if (known[i] === name) return known[i + 1]
    return undefined
  }

  /** Remembers `value` under `name`, unless the client already has `maxNames` names (or its key too many addresses). */
  set (envKey: string | undefined, ip: string, name: string, value: string): void {
    const known = this.#memo.get(envKey, ip)
    if (known === undefined) this.#memo.set(envKey, ip, [name, value])
    else if (known.length < 2 * this.#maxNames) this.#memo.set(envKey, ip, [...known, name, value])
  }

  get bytes (): number { return this.#memo.bytes }
  retainedChars (): number { return this.#memo.retainedChars() }
}
