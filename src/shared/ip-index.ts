/**
 * IP and CIDR lookup for thousands of blocks. node:net's BlockList (src/shared/ip.ts, fine for a
 * handful of trusted proxies) checks its rules one by one; here a rule set of 10,000 CIDRs costs
 * one hash lookup per distinct prefix length present (at most 33 for IPv4, 129 for IPv6, in
 * practice a few), most specific first, whatever the number of rules.
 *
 * An IPv4 address is a number masked to each prefix length; an IPv6 one, four 32-bit words whose
 * first `prefix` bits make a short string key; either is looked up in a Map per length. Written by hand: the npm packages for this (ip-cidr, ipaddr.js, netmask) parse
 * and compare, they do not index.
 */
export interface Cidr {
  readonly family: 4 | 6
  /** IPv4: the network address, host bits cleared; IPv6: its prefix bits as a lookup key */
  readonly net: number | string
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

// Scratch space of the IPv6 parser: a lookup is synchronous, so one buffer serves every request.
const GROUPS = new Uint16Array(8)
const WORDS = new Uint32Array(4)

function hexValue (c: number): number {
  if (c >= 48 && c <= 57) return c - 48
  if (c >= 97 && c <= 102) return c - 87
  if (c >= 65 && c <= 70) return c - 55
  return -1
}

/**
 * An IPv6 address (with `::`, an embedded IPv4 tail or a zone) into {@link GROUPS}; false when it
 * is not one. By hand and allocation-free: it runs for every IPv6 client while IPv6 rules exist
 * (node:net's isIP plus a split and BigInt arithmetic cost microseconds).
 */
function parseV6Groups (s: string): boolean {
  const pct = s.indexOf('%')
  const end = pct === -1 ? s.length : pct
  if (end < 2) return false
  let gi = 0
  let dbl = -1
  let i = 0
  if (s.charCodeAt(0) === 58) {
    if (s.charCodeAt(1) !== 58) return false
    dbl = 0
    i = 2
  }
  while (i < end) {
    if (gi >= 8) return false
    const start = i
    let v = 0
    let digits = 0
    while (i < end) {
      const h = hexValue(s.charCodeAt(i))
      if (h < 0) break
      if (++digits > 4) return false
      v = v * 16 + h
      i++
    }
    if (i < end && s.charCodeAt(i) === 46) { // an IPv4 tail: the last 32 bits
      if (gi > 6) return false
      const v4 = parseV4(s.slice(start, end))
      if (v4 < 0) return false
      GROUPS[gi++] = v4 >>> 16
      GROUPS[gi++] = v4 & 0xffff
      i = end
      break
    }
    if (digits === 0) return false
    GROUPS[gi++] = v
    if (i === end) break
    if (s.charCodeAt(i) !== 58) return false
    i++
    if (i === end) return false
    if (s.charCodeAt(i) === 58) {
      if (dbl !== -1) return false
      dbl = gi
      i++
    }
  }
  if (dbl === -1) return gi === 8
  if (gi > 7) return false
  const tail = gi - dbl
  for (let k = 0; k < tail; k++) GROUPS[7 - k] = GROUPS[gi - 1 - k]!
  for (let k = dbl; k < 8 - tail; k++) GROUPS[k] = 0
  return true
}

/** `prefix` bits of the address in {@link WORDS}, as a Map key (one per prefix length, so the length is implied). */
function v6Key (prefix: number): string {
  let key = ''
  let rem = prefix
  for (let k = 0; k < 4 && rem > 0; k++) {
    const bits = rem >= 32 ? 32 : rem
    const w = WORDS[k]!
    key += (k === 0 ? '' : ',') + String(bits === 32 ? w : ((w >>> (32 - bits)) << (32 - bits)) >>> 0)
    rem -= bits
  }
  return key
}

function parseV6Words (s: string): boolean {
  if (!parseV6Groups(s)) return false
  for (let k = 0; k < 4; k++) WORDS[k] = GROUPS[2 * k]! * 65536 + GROUPS[2 * k + 1]!
  return true
}

/** An IPv6 address → its eight 16-bit groups, or undefined (for tests and tools). */
export function parseV6 (s: string): number[] | undefined {
  return parseV6Groups(s) ? [...GROUPS] : undefined
}

const maskV4 = (ip: number, prefix: number): number => prefix === 0 ? 0 : ((ip >>> (32 - prefix)) << (32 - prefix)) >>> 0
/** The first `prefix` bits as a number: up to /30 a small integer, which V8 hashes fastest. */
const v4Key = (ip: number, prefix: number): number => prefix === 0 ? 0 : ip >>> (32 - prefix)

function v4Text (n: number): string {
  return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`
}

/** RFC 5952 text of {@link GROUPS} with the bits past `prefix` cleared. */
function v6Text (prefix: number): string {
  const g: number[] = []
  for (let i = 0; i < 8; i++) {
    const bits = Math.max(0, Math.min(16, prefix - 16 * i))
    g.push(bits === 0 ? 0 : (GROUPS[i]! >> (16 - bits)) << (16 - bits))
  }
  // the longest run (≥ 2) of zero groups becomes `::`
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
  if (addr.includes('%') || !parseV6Words(addr)) return undefined
  // an IPv4-mapped address is how Node reports IPv4 peers on a dual-stack socket; the gateway
  // normalises those to IPv4, so rules are normalised the same way
  if (WORDS[0] === 0 && WORDS[1] === 0 && WORDS[2] === 0xffff && (prefixText === undefined || Number(prefixText) >= 96)) {
    const p = prefixText === undefined ? 32 : Number(prefixText) - 96
    if (p > 32) return undefined
    const net = maskV4(WORDS[3]!, p)
    return { family: 4, net, prefix: p, text: p === 32 ? v4Text(net) : `${v4Text(net)}/${p}` }
  }
  const prefix = prefixText === undefined ? 128 : Number(prefixText)
  if (prefix > 128) return undefined
  return { family: 6, net: v6Key(prefix), prefix, text: prefix === 128 ? v6Text(prefix) : `${v6Text(prefix)}/${prefix}` }
}

/** Items (blocks) filed under the networks they cover. */
export class PrefixIndex<T> {
  readonly #v4 = new Map<number, Map<number, T[]>>()
  readonly #v6 = new Map<number, Map<string, T[]>>()
  /** prefix lengths present, longest first: the most specific rule is found first */
  #v4Lens: number[] = []
  #v6Lens: number[] = []
  #size = 0

  get size (): number { return this.#size }

  add (c: Cidr, item: T): void {
    if (c.family === 4) {
      let m = this.#v4.get(c.prefix)
      if (m === undefined) { m = new Map(); this.#v4.set(c.prefix, m); this.#v4Lens = [...this.#v4.keys()].sort((a, b) => b - a) }
      const k = v4Key(c.net as number, c.prefix)
      const list = m.get(k)
      if (list === undefined) m.set(k, [item]); else list.push(item)
    } else {
      let m = this.#v6.get(c.prefix)
      if (m === undefined) { m = new Map(); this.#v6.set(c.prefix, m); this.#v6Lens = [...this.#v6.keys()].sort((a, b) => b - a) }
      const list = m.get(c.net as string)
      if (list === undefined) m.set(c.net as string, [item]); else list.push(item)
    }
    this.#size++
  }

  remove (c: Cidr, item: T): boolean {
    const byLen = c.family === 4 ? this.#v4 : this.#v6
    const m = byLen.get(c.prefix) as Map<number | string, T[]> | undefined
    const k = c.family === 4 ? v4Key(c.net as number, c.prefix) : c.net
    const list = m?.get(k)
    const i = list === undefined ? -1 : list.indexOf(item)
    if (i === -1) return false
    list!.splice(i, 1)
    if (list!.length === 0) m!.delete(k)
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
        const list = this.#v4.get(len)!.get(v4Key(v4, len))
        if (list !== undefined) { const r = visit(list, ctx); if (r !== undefined) return r }
      }
      return undefined
    }
    if (this.#v6Lens.length === 0) return undefined
    if (!parseV6Words(ip)) return undefined
    for (const len of this.#v6Lens) {
      const list = this.#v6.get(len)!.get(v6Key(len))
      if (list !== undefined) { const r = visit(list, ctx); if (r !== undefined) return r }
    }
    return undefined
  }
}
