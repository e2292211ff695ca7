/**
 * A loopback TCP proxy that makes a healthy server misbehave on the wire: every chunk from the
 * target can be held back for a delay (a slow Redis: "a slow Redis is worse than a dead one"),
 * forwarding can be paused (a hung link) and every connection reset. Chunks keep
 * their order whatever the delay, as on a real congested link.
 */
import { createServer, connect, type Server, type Socket } from 'node:net'

export interface TcpProxy {
  readonly port: number
  readonly url: string
  /** delay applied to each chunk travelling from the target back to the client; a function for jitter */
  setDelay (ms: number | (() => number)): void
  /** resets every open connection (both sides) */
  resetAll (): void
  /** connections opened so far */
  readonly accepted: number
  close (): Promise<void>
}

export async function startTcpProxy (targetPort: number, targetHost = '127.0.0.1'): Promise<TcpProxy> {
  let delay: () => number = () => 0
  let accepted = 0
  const pairs = new Set<[Socket, Socket]>()

  const server: Server = createServer((client) => {
    accepted++
    const upstream = connect(targetPort, targetHost)
    const pair: [Socket, Socket] = [client, upstream]
    pairs.add(pair)
    const drop = (): void => { pairs.delete(pair); client.destroy(); upstream.destroy() }
    client.on('error', drop)
    upstream.on('error', drop)
    client.on('close', drop)
    upstream.on('close', drop)
    client.on('data', (c: Buffer) => { if (!upstream.destroyed) upstream.write(c) })
    // In-order delivery: each chunk is released no earlier than the one before it.
    let releaseAt = 0
    upstream.on('data', (c: Buffer) => {
      const d = delay()
      if (d <= 0 && releaseAt <= Date.now()) { if (!client.destroyed) client.write(c); return }
      releaseAt = Math.max(releaseAt, Date.now() + d)
      setTimeout(() => { if (!client.destroyed) client.write(c) }, releaseAt - Date.now())
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const addr = server.address()
  const port = typeof addr === 'object' && addr !== null ? addr.port : 0
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    get accepted () { return accepted },
    setDelay (ms) { delay = typeof ms === 'function' ? ms : () => ms },
    resetAll () { for (const [a, b] of pairs) { a.resetAndDestroy(); b.destroy() } pairs.clear() },
    async close () {
      for (const [a, b] of pairs) { a.destroy(); b.destroy() }
      pairs.clear()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    }
  }
}
