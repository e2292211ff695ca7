/**
 * `server.maxConnectionsPerClient` (default 1,000): open connections per client address, as
 * NGINX's limit_conn and Traefik's inFlightReq bound them. `server.maxConnections` alone let one
 * address hold every connection with half-open requests (re-opened as headersTimeout cut them),
 * and every other client got resets. A connection past the cap is closed at once, before a byte
 * is read. The address is the TCP peer counted as limits count it (an IPv6 peer is its network of
 * `server.ipv6Prefix` bits: shared/ip-prefix.ts); the peers in `trustedProxies` are exempt, since
 * every client arrives through them (a load balancer, a sidecar). Both read live from the policy.
 */
import type { Server } from 'node:http'
import type { Socket } from 'node:net'
import type { PolicyStore } from '../policy/store.js'
import { normaliseIp } from '../shared/ip.js'
import { countedAddress } from '../shared/ip-prefix.js'

export function installConnectionCap (server: Server, store: PolicyStore): { open: (address: string) => number } {
  const open = new Map<string, number>()
  // before node:http's own listener, so a refused connection never gets a parser
  server.prependListener('connection', (socket: Socket) => {
    const policy = store.current
    const peer = normaliseIp(socket.remoteAddress ?? '')
    if (peer === '' || policy.trustedProxies.has(peer)) return
    const client = countedAddress(peer, policy.data.server.ipv6Prefix)
    const n = open.get(client) ?? 0
    if (n >= policy.data.server.maxConnectionsPerClient) { socket.destroy(); return }
    open.set(client, n + 1)
    socket.once('close', () => {
      const left = (open.get(client) ?? 1) - 1
      if (left <= 0) open.delete(client); else open.set(client, left)
    })
  })
  return { open: (address) => open.get(address) ?? 0 }
}
