/**
 * IP and CIDR lookup for thousands of blocks. node:net's BlockList (src/shared/ip.ts, fine for a
 * handful of trusted proxies) checks its rules one by one; here a rule set of 10,000 CIDRs costs
 * one hash lookup per distinct prefix length present (at most 33 for IPv4, 129 for IPv6, in
 * practice a few), most specific first, whatever the number of rules.
 *
 * Addresses are numbers (IPv4) or bigints (IPv6), masked to each prefix length and looked up in
 * a Map per length. Written by hand: the npm packages for this (ip-cidr, ipaddr.js, netmask) parse
 * and compare, they do not index.
 */
import { isIP } from 'node:net'

export interface Cidr {
  readonly family: 4 | 6
  /** network address, host bits cleared */
  readonly net: number | bigint
  readonly prefix: number
  /** canonical text: `10.0.0.0/8`, `2001:db8::/32`, or a bare address for a full-length prefix */
  readonly text: string
}

/** `a.b.c.d` → unsigned 32-bit number, or -1; no allocation (runs per request). */
export function parseV4 (s: string): number {
  let n = 0
  let part = -1
  let parts = 0
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c === 46) { // '.'
      if (part < 0 || parts === 3) return -1
      n = n * 256 + part
      part = -1
      parts++
    } else if (c >= 48 && c <= 57) {
      part = part < 0 ? c - 48 : part * 10 + c - 48
      if (part > 255) return -1
    } else {
      return -1
    }
  }
  if (part < 0 || parts !== 3) return -1
  return n * 256 + part
}

/** An IPv6 address (with `::`, an embedded IPv4 tail or a zone) → 128-bit bigint, or undefined. */
export function parseV6 (input: string): bigint | undefined {
  const pct = input.indexOf('%')
  const s = pct === -1 ? input : input.slice(0, pct)
  if (isIP(s) !== 6) return undefined
  let groups: string[]
  const dbl = s.indexOf('::')
  const expand = (t: string): string[] => {
    if (t === '') return []
    const out = t.split(':')
    const last = out[out.length - 1]!
    if (last.includes('.')) {
      const v4 = parseV4(last)
      if (v4 < 0) return [] // isIP already refused that
      out.splice(out.length - 1, 1, (v4 >>> 16).toString(16), (v4 & 0xffff).toString(16))
    }
    return out
  }
  if (dbl === -1) {
    groups = expand(s)
  } else {
    const head = expand(s.slice(0, dbl))
    const tail = expand(s.slice(dbl + 2))
    groups = [...head, ...new Array<string>(8 - head.length - tail.length).fill('0'), ...tail]
  }
  if (groups.length !== 8) return undefined
  let n = 0n
  for (const g of groups) n = (n << 16n) | BigInt(parseInt(g, 16))
  return n
}

const V6_ALL = (1n << 128n) - 1n
const maskV4 = (ip: number, prefix: number): number => prefix === 0 ? 0 : ((ip >>> (32 - prefix)) << (32 - prefix)) >>> 0
const maskV6 = (ip: bigint, prefix: number): bigint => prefix === 0 ? 0n : ip & (V6_ALL ^ ((1n << BigInt(128 - prefix)) - 1n))

function v4Text (n: number): string {
  return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`
}

function v6Text (n: bigint): string {
  const g: number[] = []
  for (let i = 7; i >= 0; i--) g.push(Number((n >> BigInt(i * 16)) & 0xffffn))
  // RFC 5952: the longest run (≥ 2) of zero groups becomes `::`
  let best = -1
  let bestLen = 1
  for (let i = 0; i < 8;) {
    if (g[i] !== 0) { i++; continue }
    let j = i
    while (j < 8 && g[j] === 0) j++
    if (j - i > bestLen) { best = i; bestLen = j - i }
    i = j
  }
  const hex = g.map((x) => x.toString(16))
  if (best === -1) return hex.join(':')
  return `${hex.slice(0, best).join(':')}::${hex.slice(best + bestLen).join(':')}`
}

/**
 * `10.1.2.3/8` → the network `10.0.0.0/8` (host bits are cleared rather than refused: an
 * operator pasting an address with its prefix means that network). Undefined when not an IP or
 * CIDR.
 */
export function parseCidr (text: string): Cidr | undefined {
  const t = text.trim()
  const slash = t.indexOf('/')
  const addr = slash === -1 ? t : t.slice(0, slash)
  const prefixText = slash === -1 ? undefined : t.slice(slash + 1)
  if (prefixText !== undefined && !/^\d{1,3}$/.test(prefixText)) return undefined
  const v4 = parseV4(addr)
  if (v4 >= 0) {
    const prefix = prefixText === undefined ? 32 : Number(prefixText)
    if (prefix > 32) return undefined
    const net = maskV4(v4, prefix)
    return { family: 4, net, prefix, text: prefix === 32 ? v4Text(net) : `${v4Text(net)}/${prefix}` }
  }
  const v6 = parseV6(addr)
  if (v6 === undefined) return undefined
  // an IPv4-mapped address is how Node reports IPv4 peers on a dual-stack socket; the gateway
  // normalises those to IPv4, so rules are normalised the same way
  if (v6 >> 32n === 0xffffn && (prefixText === undefined || Number(prefixText) >= 96)) {
    const p = prefixText === undefined ? 32 : Number(prefixText) - 96
    if (p > 32) return undefined
    const net = maskV4(Number(v6 & 0xffffffffn), p)
    return { family: 4, net, prefix: p, text: p === 32 ? v4Text(net) : `${v4Text(net)}/${p}` }
  }
  const prefix = prefixText === undefined ? 128 : Number(prefixText)
  if (prefix > 128) return undefined
  const net = maskV6(v6, prefix)
  return { family: 6, net, prefix, text: prefix === 128 ? v6Text(net) : `${v6Text(net)}/${prefix}` }
}

/** Items (blocks) filed under the networks they cover. */
export class PrefixIndex<T> {
  readonly #v4 = new Map<number, Map<number, T[]>>()
  readonly #v6 = new Map<number, Map<bigint, T[]>>()
  /** prefix lengths present, longest first: the most specific rule is found first */
  #v4Lens: number[] = []
  #v6Lens: number[] = []
  #size = 0

  get size (): number { return this.#size }

  add (c: Cidr, item: T): void {
    if (c.family === 4) {
      let m = this.#v4.get(c.prefix)
      if (m === undefined) { m = new Map(); this.#v4.set(c.prefix, m); this.#v4Lens = [...this.#v4.keys()].sort((a, b) => b - a) }
      const list = m.get(c.net as number)
      if (list === undefined) m.set(c.net as number, [item]); else list.push(item)
    } else {
      let m = this.#v6.get(c.prefix)
      if (m === undefined) { m = new Map(); this.#v6.set(c.prefix, m); this.#v6Lens = [...this.#v6.keys()].sort((a, b) => b - a) }
      const list = m.get(c.net as bigint)
      if (list === undefined) m.set(c.net as bigint, [item]); else list.push(item)
    }
    this.#size++
  }

  remove (c: Cidr, item: T): boolean {
    const byLen = c.family === 4 ? this.#v4 : this.#v6
    const m = byLen.get(c.prefix) as Map<number | bigint, T[]> | undefined
    const list = m?.get(c.net)
    const i = list === undefined ? -1 : list.indexOf(item)
    if (i === -1) return false
    list!.splice(i, 1)
    if (list!.length === 0) m!.delete(c.net)
    if (m!.size === 0) {
      byLen.delete(c.prefix)
      if (c.family === 4) this.#v4Lens = [...this.#v4.keys()].sort((a, b) => b - a)
      else this.#v6Lens = [...this.#v6.keys()].sort((a, b) => b - a)
    }
    this.#size--
    return true
  }

  /**
   * The lists of items whose network contains `ip`, most specific first, handed to `visit` until
   * it returns something other than undefined. `ip` is the gateway's normalised client address.
   */
  find<C, R> (ip: string, ctx: C, visit: (items: readonly T[], ctx: C) => R | undefined): R | undefined {
    if (this.#size === 0) return undefined
    const v4 = parseV4(ip)
    if (v4 >= 0) {
      if (this.#v4Lens.length === 0) return undefined
      for (const len of this.#v4Lens) {
        const list = this.#v4.get(len)!.get(maskV4(v4, len))
        if (list !== undefined) { const r = visit(list, ctx); if (r !== undefined) return r }
      }
      return undefined
    }
    if (this.#v6Lens.length === 0) return undefined
    const v6 = parseV6(ip)
    if (v6 === undefined) return undefined
    for (const len of this.#v6Lens) {
      const list = this.#v6.get(len)!.get(maskV6(v6, len))
      if (list !== undefined) { const r = visit(list, ctx); if (r !== undefined) return r }
    }
    return undefined
  }
}
