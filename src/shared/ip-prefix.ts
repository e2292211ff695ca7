/**
 * The client address as the gateway counts it (limits, automatic blocks, `top`, the connection
 * cap, the unknown-key budget): an IPv4 address as it is, an IPv6 address as its network of
 * `server.ipv6Prefix` bits (default 64). One subscriber gets a whole /64 and can rotate through
 * it at will, so counting single IPv6 addresses would give one attacker 2^64 budgets. IPv4-mapped
 * forms (`::ffff:1.2.3.4`) are IPv4. Blocks are not counted: they match the real address by CIDR.
 *
 * The text is the canonical CIDR text of the blocking index (shared/ip-index.ts: `2001:db8::/64`),
 * so an automatic block of a counted client is a CIDR block of exactly that network.
 */
import { parseCidr } from './ip-index.js'

export const DEFAULT_IPV6_PREFIX = 64

/** `2001:db8:0:1::5` → `2001:db8:0:1::/64`; `10.1.2.3` and `::ffff:10.1.2.3` → `10.1.2.3`; other text unchanged. */
export function countedAddress (ip: string, ipv6Prefix: number = DEFAULT_IPV6_PREFIX): string {
  // IPv4 (the common case) has no colon: nothing to do
  if (ip.indexOf(':') === -1) return ip
  const c = parseCidr(`${ip.startsWith('::ffff:') ? ip : ip.replace(/%.*$/, '')}/${ip.startsWith('::ffff:') ? 128 : ipv6Prefix}`)
  if (c === undefined) return ip
  return c.text
}
