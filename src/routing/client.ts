import { isIP } from 'node:net'
import { normaliseIp, type IpSet } from '../shared/ip.js'

/**
 * The client's address: the peer, unless the peer is a trusted proxy, in which case
 * X-Forwarded-For is walked from the right (the entries trusted proxies appended) to the first
 * address that is not itself a trusted proxy. Entries left of that are the client's word only.
 */
export function clientIp (peerAddress: string | undefined, xff: string | string[] | undefined, trusted: IpSet): string {
  const peer = normaliseIp(peerAddress ?? '')
  if (xff === undefined || trusted.size === 0 || !trusted.has(peer)) return peer
  const parts = (Array.isArray(xff) ? xff.join(',') : xff).split(',')
  let last = peer
  for (let i = parts.length - 1; i >= 0; i--) {
    const ip = normaliseIp(parts[i]!.trim())
    if (isIP(ip) === 0) return last
    if (!trusted.has(ip)) return ip
    last = ip
  }
  return last
}
