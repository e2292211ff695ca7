/**
 * A delaying TCP proxy, for putting latency between the real Flagsmith Core and its PostgreSQL:
 * Core's DATABASE_URL points at this proxy's port, the proxy forwards to PostgreSQL, and every
 * chunk PostgreSQL sends back is held for `delayMs` before it is passed on. A query waits for its
 * answer, so each database round trip costs `delayMs` more: the slow database of a brownout,
 * without touching PostgreSQL or Core.
 *
 * Client → server bytes pass at once (a query is not delayed twice). Server → client chunks keep
 * their order even when the delay is lowered mid-stream: a chunk leaves at
 * max(its arrival + the delay then in force, when the previous chunk left).
 *
 * The delay can be changed at run time: `setDelay(ms)` in process, or over the tiny HTTP control
 * endpoint (`GET /delay` → `{"delayMs": n}`, `POST /delay` with `{"delayMs": n}`), which is how a
 * scenario in another process drives it (`--db-delay-proxy http://127.0.0.1:<control>`).
 *
 * Written by hand: a TCP forwarder is twenty lines of `node:net`, and no maintained package delays
 * one direction with a delay changed at run time (toxiproxy does, but it is a Go server to install).
 */
import http from 'node:http'
import net from 'node:net'
import type { AddressInfo } from 'node:net'

export interface DelayProxyOptions {
  /** Where to forward, e.g. PostgreSQL on 127.0.0.1:5432. */
  targetHost: string
  targetPort: number
  /** Port to listen on (127.0.0.1); default 0 (ephemeral). */
  port?: number
  /** Port of the HTTP control endpoint; default 0 (ephemeral); `false` for none. */
  controlPort?: number | false
  /** Initial delay of each server → client chunk; default 0. */
  delayMs?: number
}

export interface DelayProxyStats {
  delayMs: number
  /** Client connections open now. */
  connections: number
  /** Client connections since start. */
  accepted: number
  /** Server → client chunks held so far. */
  delayedChunks: number
}

export interface DelayProxy {
  /** The proxy's own port (what DATABASE_URL names). */
  readonly port: number
  /** `http://127.0.0.1:<port>` of the control endpoint, or undefined without one. */
  readonly controlUrl: string | undefined
  setDelay: (ms: number) => void
  delay: () => number
  stats: () => DelayProxyStats
  close: () => Promise<void>
}

/** Server → client bytes held beyond this pause the server side until the client has taken them. */
const HIGH_WATER_BYTES = 4 * 1024 * 1024

export async function startDelayProxy (opts: DelayProxyOptions): Promise<DelayProxy> {
  let delayMs = checkDelay(opts.delayMs ?? 0)
  let accepted = 0
  let delayedChunks = 0
  const clients = new Set<net.Socket>()
  const upstreams = new Set<net.Socket>()
  const timers = new Set<NodeJS.Timeout>()

  const server = net.createServer((client) => {
    accepted++
    const upstream = net.connect(opts.targetPort, opts.targetHost)
    clients.add(client)
    upstreams.add(upstream)
    let lastRelease = 0
    let heldBytes = 0
    // One FIFO per connection, released by one timer at a time: timers of different durations
    // due in the same millisecond may fire in either order, which would swap two chunks (or end
    // the stream before its last chunk)
    const queue: Array<{ at: number; chunk: Buffer | null }> = []
    let timer: NodeJS.Timeout | undefined
    const release = (): void => {
      if (timer !== undefined) timers.delete(timer)
      timer = undefined
      while (queue.length > 0 && queue[0]!.at <= Date.now()) {
        const { chunk } = queue.shift()!
        if (chunk === null) { client.end(); continue }
        heldBytes -= chunk.length
        if (!client.destroyed) client.write(chunk)
      }
      if (heldBytes <= HIGH_WATER_BYTES && upstream.isPaused()) upstream.resume()
      schedule()
    }
    const schedule = (): void => {
      if (timer !== undefined || queue.length === 0) return
      timer = setTimeout(release, Math.max(0, queue[0]!.at - Date.now()))
      timers.add(timer)
    }
    const closeBoth = (): void => { client.destroy(); upstream.destroy() }
    client.on('error', closeBoth)
    upstream.on('error', closeBoth)
    client.on('close', () => { clients.delete(client); upstream.destroy() })
    upstream.on('close', () => { upstreams.delete(upstream) })
    client.pipe(upstream)
    upstream.on('data', (chunk: Buffer) => {
      delayedChunks++
      const at = Math.max(Date.now() + delayMs, lastRelease)
      lastRelease = at
      heldBytes += chunk.length
      if (heldBytes > HIGH_WATER_BYTES) upstream.pause()
      queue.push({ at, chunk })
      schedule()
    })
    // the server's end of stream comes after its last (held) chunk
    upstream.on('end', () => {
      queue.push({ at: Math.max(Date.now(), lastRelease), chunk: null })
      schedule()
    })
  })
  await listen(server, opts.port ?? 0)

  let control: http.Server | undefined
  if (opts.controlPort !== false) {
    control = http.createServer((req, res) => {
      const chunks: Buffer[] = []
      req.on('data', (c: Buffer) => chunks.push(c))
      req.on('end', () => {
        const reply = (status: number, body: unknown): void => { res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body)) }
        if (req.url !== '/delay' && req.url !== '/stats') { reply(404, { error: 'GET|POST /delay, GET /stats' }); return }
        if (req.method === 'POST' && req.url === '/delay') {
          try {
            const body = JSON.parse(Buffer.concat(chunks).toString()) as { delayMs?: unknown }
            delayMs = checkDelay(body.delayMs)
          } catch (err) {
            reply(400, { error: `expected {"delayMs": <number ≥ 0>}: ${(err as Error).message}` })
            return
          }
        } else if (req.method !== 'GET') { reply(405, { error: 'GET or POST' }); return }
        reply(200, req.url === '/stats' ? stats() : { delayMs })
      })
    })
    await listen(control, opts.controlPort ?? 0)
  }

  const stats = (): DelayProxyStats => ({ delayMs, connections: clients.size, accepted, delayedChunks })
  return {
    port: (server.address() as AddressInfo).port,
    controlUrl: control === undefined ? undefined : `http://127.0.0.1:${(control.address() as AddressInfo).port}`,
    setDelay: (ms: number) => { delayMs = checkDelay(ms) },
    delay: () => delayMs,
    stats,
    close: async () => {
      for (const t of timers) clearTimeout(t)
      timers.clear()
      for (const s of [...clients, ...upstreams]) s.destroy()
      await Promise.all([close(server), control === undefined ? undefined : close(control)])
    }
  }
}

function checkDelay (ms: unknown): number {
  if (typeof ms !== 'number' || !Number.isFinite(ms) || ms < 0 || ms > 600_000) throw new RangeError(`delay must be a number of ms in 0..600000, got ${JSON.stringify(ms)}`)
  return ms
}

async function listen (server: net.Server, port: number): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, '127.0.0.1', () => { server.off('error', reject); resolve() })
  })
}

async function close (server: net.Server): Promise<void> {
  await new Promise<void>((resolve) => server.close(() => resolve()))
}
