/**
 * IP and CIDR matching on node:net's BlockList (v4 and v6, no per-request parsing of rules).
 */
import { BlockList, isIP } from 'node:net'

function splitCidr (text: string): { addr: string; prefix: number | undefined; family: 4 | 6 } | undefined {
  const [addr, prefixText, extra] = text.trim().split('/')
  if (addr === undefined || extra !== undefined) return undefined
  const family = isIP(addr)
  if (family === 0) return undefined
  if (prefixText === undefined) return { addr, prefix: undefined, family: family as 4 | 6 }
  if (!/^\d+$/.test(prefixText)) return undefined
  const prefix = Number(prefixText)
  if (prefix > (family === 4 ? 32 : 128)) return undefined
  return { addr, prefix, family: family as 4 | 6 }
}

export function isValidCidrOrIp (text: string): boolean {
  return splitCidr(text) !== undefined
}

/** `::ffff:10.1.2.3` (how Node reports v4 peers on a dual-stack socket) → `10.1.2.3`. */
export function normaliseIp (ip: string): string {
  return ip.startsWith('::ffff:') && isIP(ip.slice(7)) === 4 ? ip.slice(7) : ip
}

/** A set of IPs and CIDR blocks, compiled once. */
export class IpSet {
  readonly #list = new BlockList()
  readonly size: number
  constructor (entries: readonly string[]) {
    for (const e of entries) {
      const c = splitCidr(e)
      if (c === undefined) throw new Error(`not an IP or CIDR: ${e}`)
      const type = c.family === 4 ? 'ipv4' : 'ipv6'
      if (c.prefix === undefined) this.#list.addAddress(c.addr, type)
      else this.#list.addSubnet(c.addr, c.prefix, type)
    }
    this.size = entries.length
  }

  has (ip: string): boolean {
    if (this.size === 0) return false
    const n = normaliseIp(ip)
    const family = isIP(n)
    if (family === 0) return false
    return this.#list.check(n, family === 4 ? 'ipv4' : 'ipv6')
  }
}
