/**
 * The delaying TCP proxy the scenarios put in front of Core's PostgreSQL, against a small TCP
 * server that answers each message: bytes pass unchanged both ways, answers are held for the delay
 * (a lower bound, which timers guarantee), order survives a delay lowered mid-stream, and the
 * control endpoint changes the delay and refuses bad input.
 */
import { afterEach, describe, expect, it } from 'vitest'
import net from 'node:net'
import type { AddressInfo } from 'node:net'
import { startDelayProxy, type DelayProxy } from '../../bench/support/delay-proxy.js'

const closers: Array<() => Promise<void>> = []
afterEach(async () => { for (const c of closers.splice(0).reverse()) await c() })

/** Answers `ping:<x>` with `pong:<x>`; `burst` makes it send `A`, then `B` when told `go`. */
async function target (): Promise<{ port: number; peers: Set<net.Socket> }> {
  const peers = new Set<net.Socket>()
  const server = net.createServer((s) => {
    peers.add(s)
    s.on('close', () => peers.delete(s))
    s.on('data', (d: Buffer) => {
      const text = d.toString()
      if (text.startsWith('ping:')) s.write(`pong:${text.slice(5)}`)
      if (text === 'sendA') s.write('A')
      if (text === 'sendB') s.write('B')
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  closers.push(async () => { for (const p of peers) p.destroy(); await new Promise<void>((resolve) => server.close(() => resolve())) })
  return { port: (server.address() as AddressInfo).port, peers }
}

async function proxyTo (port: number, delayMs = 0): Promise<DelayProxy> {
  const p = await startDelayProxy({ targetHost: '127.0.0.1', targetPort: port, delayMs })
  closers.push(p.close)
  return p
}

async function client (port: number): Promise<{ sock: net.Socket; next: (n: number) => Promise<string> }> {
  const sock = net.connect(port, '127.0.0.1')
  await new Promise<void>((resolve, reject) => { sock.once('connect', resolve); sock.once('error', reject) })
  let buf = ''
  let waiter: (() => void) | undefined
  sock.on('data', (d: Buffer) => { buf += d.toString(); waiter?.() })
  closers.push(async () => { sock.destroy() })
  /** The next n bytes the client receives. */
  const next = async (n: number): Promise<string> => {
    while (buf.length < n) await new Promise<void>((resolve) => { waiter = resolve })
    const out = buf.slice(0, n)
    buf = buf.slice(n)
    return out
  }
  return { sock, next }
}

describe('delay proxy', () => {
  it('forwards bytes both ways unchanged and holds each answer for the delay in force', async () => {
    const t = await target()
    const proxy = await proxyTo(t.port)
    const c = await client(proxy.port)
    c.sock.write('ping:1')
    expect(await c.next(6)).toBe('pong:1')
    proxy.setDelay(150)
    const t0 = performance.now()
    c.sock.write('ping:2')
    expect(await c.next(6)).toBe('pong:2')
    expect(performance.now() - t0).toBeGreaterThanOrEqual(149)
    expect(proxy.stats()).toMatchObject({ delayMs: 150, connections: 1, accepted: 1, delayedChunks: 2 })
  })

  it('keeps the order of answers when the delay is lowered while one is held', async () => {
    const t = await target()
    const proxy = await proxyTo(t.port, 300)
    const c = await client(proxy.port)
    c.sock.write('sendA')
    while (proxy.stats().delayedChunks < 1) await new Promise((resolve) => setTimeout(resolve, 5))
    proxy.setDelay(0)
    c.sock.write('sendB')
    expect(await c.next(2)).toBe('AB')
  })

  it('is driven over its HTTP control endpoint, and refuses a bad delay without changing it', async () => {
    const t = await target()
    const proxy = await proxyTo(t.port)
    const url = proxy.controlUrl!
    const post = async (body: string): Promise<Response> => await fetch(`${url}/delay`, { method: 'POST', body })
    expect(await (await post('{"delayMs": 25}')).json()).toEqual({ delayMs: 25 })
    expect(proxy.delay()).toBe(25)
    for (const bad of ['{"delayMs": -1}', '{"delayMs": "9"}', 'nope', '{}']) {
      const res = await post(bad)
      expect(res.status).toBe(400)
      expect(((await res.json()) as { error: string }).error).toContain('delayMs')
    }
    expect(await (await fetch(`${url}/delay`)).json()).toEqual({ delayMs: 25 })
    expect(((await (await fetch(`${url}/stats`)).json()) as { delayMs: number }).delayMs).toBe(25)
    expect((await fetch(`${url}/nope`)).status).toBe(404)
    expect(() => proxy.setDelay(Number.NaN)).toThrow(RangeError)
  })

  it('closes the client side when the server closes, after what it had sent', async () => {
    const t = await target()
    const proxy = await proxyTo(t.port, 50)
    const c = await client(proxy.port)
    c.sock.write('ping:x')
    while (t.peers.size === 0 || proxy.stats().delayedChunks < 1) await new Promise((resolve) => setTimeout(resolve, 5))
    for (const p of t.peers) p.end()
    const ended = new Promise<void>((resolve) => c.sock.once('end', resolve))
    expect(await c.next(6)).toBe('pong:x')
    await ended
  })
})
