import { isIP } from 'node:net'
import proxyaddr from 'proxy-addr'
import { normaliseIp, type IpSet } from '../shared/ip.js'
import { countedAddress } from '../shared/ip-prefix.js'

/**
 * The client's address and the X-Forwarded-For chain the trusted hops vouch for. proxy-addr does
 * the walk (peer first, then X-Forwarded-For from the right while the hop is trusted); our IpSet is
 * the trust function because the policy compiles it once for the limiter and the CLI too.
 * Returns `[client, ...trusted proxies, peer]`, the chain NGINX's realip module would keep: the
 * entries left of the client are the client's own word and are dropped. An entry that is not an
 * address ends the walk at the last trusted hop (proxy-addr would name the garbage the client).
 */
export function clientChain (peerAddress: string | undefined, xff: string | string[] | undefined, trusted: IpSet): string[] {
  const peer = normaliseIp(peerAddress ?? '')
  if (xff === undefined || trusted.size === 0 || !trusted.has(peer)) return [peer]
  const header = Array.isArray(xff) ? xff.join(',') : xff
  const addrs = proxyaddr.all({ socket: { remoteAddress: peer }, headers: { 'x-forwarded-for': header } } as never, (addr) => trusted.has(addr))
  if (addrs.length > 1 && isIP(addrs[addrs.length - 1]!) === 0) addrs.length--
  const chain: string[] = []
  for (let i = addrs.length - 1; i >= 0; i--) chain.push(normaliseIp(addrs[i]!))
  return chain
}

/** The client's address: the peer, or the first address the trusted proxies did not add. */
export function clientIp (peerAddress: string | undefined, xff: string | string[] | undefined, trusted: IpSet): string {
  return clientChain(peerAddress, xff, trusted)[0]!
}

/**
 * Who sent a request that the routing step does not see (the Flagsmith webhook, beside the
 * proxied scope): the address blocks match (`ip`) and the address as counted (`net`), exactly as
 * routing records them for proxied requests.
 */
export function clientOf (peerAddress: string | undefined, xff: string | string[] | undefined, policy: { trustedProxies: IpSet; data: { server: { ipv6Prefix: number } } }): { ip: string; net: string } {
  const ip = clientIp(peerAddress, xff, policy.trustedProxies)
  return { ip, net: countedAddress(ip, policy.data.server.ipv6Prefix) }
}
