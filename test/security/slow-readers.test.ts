/**
 * Attack 13: clients that do not read their answers held Core connections (140 such requests
 * held 124 of 128 upstream connections; every other client timed out for 30 s and more). Here the
 * upstream pool has 8 connections; 30 raw sockets from one client send a request for a large
 * answer and never read (socket.pause(): the receive window fills, then the gateway's send
 * buffer). Every one of their requests still reaches the upstream (no connection stays pinned),
 * and a normal client is answered promptly, for answers past the gateway's buffer (where one client
 * holds at most a couple of connections; this failed before) and within it (read whole from the
 * upstream; on loopback the kernel's socket buffers alone absorbed 2 MiB, so this one guards the
 * buffering: the slow readers, reading at last, get their whole answers).
 */
import { connect, type Socket } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import { ANSWER_BUFFER_BYTES, HELD_PER_CLIENT } from '../../src/upstream/held-answers.js'
import { policyYaml } from '../support/gateway.js'
import { raw } from '../support/http.js'
import { startRecordingUpstream } from '../support/recording-upstream.js'
import { useGateway } from '../support/use-gateway.js'
import { until } from './support.js'

const POOL = 8
const SLOW = 30
const t = useGateway({
  upstream: startRecordingUpstream,
  policy: (url) => policyYaml({ coreUrl: url }).replace('timeout: 5s }', `timeout: 5s, maxConnections: ${POOL} }`)
})

const sockets: Socket[] = []
afterEach(() => { for (const s of sockets.splice(0)) s.destroy() })

/** A request whose answer is never read: the socket is paused at once and stays so. */
function slowReader (base: string, key: string): void {
  const u = new URL(base)
  const s = connect(Number(u.port), u.hostname)
  s.on('error', () => {})
  s.pause()
  s.write(`GET /api/v1/environment-document/?big=1 HTTP/1.1\r\nHost: ${u.host}\r\nX-Environment-Key: ${key}\r\n\r\n`)
  sockets.push(s)
}

async function attack (answerBytes: number): Promise<void> {
  const big = Buffer.alloc(answerBytes, 'x')
  t.upstream.reset()
  t.upstream.respond = (call, res) => {
    if (call.rawPath.includes('big=1')) res.writeHead(200, { 'content-type': 'application/json', 'content-length': String(big.length) }).end(big)
    else res.writeHead(200, { 'content-type': 'application/json' }).end('[]')
  }
  for (let i = 0; i < SLOW; i++) slowReader(t.gw.url, 'ser.slow_reader_key')
  // with connections pinned, no more than POOL of them ever reach the upstream
  await until(async () => t.upstream.calls.length, (n) => n >= SLOW, 10_000)
  expect(t.upstream.calls.length).toBe(SLOW)
  const t0 = Date.now()
  const r = await raw(t.gw.url, '/api/v1/flags/', { headers: { 'x-environment-key': 'ser.reading_client' }, timeoutMs: 10_000 })
  expect(r.status).toBe(200)
  expect(Date.now() - t0).toBeLessThan(10_000)
}

describe('attack 13: clients that do not read their answers', () => {
  it('answers within the buffer: read whole from the upstream, no connection held', async () => {
    const bytes = Math.floor(ANSWER_BUFFER_BYTES / 2)
    await attack(bytes)
    // nothing was cut: each slow reader, reading at last, gets its whole answer
    const received = await Promise.all(sockets.map(async (s) => await new Promise<number>((resolve) => {
      let n = 0
      s.on('data', (c: Buffer) => { n += c.length; if (n > bytes) resolve(n) })
      s.on('close', () => resolve(n))
      s.resume()
    })))
    for (const n of received) expect(n).toBeGreaterThan(bytes)
  }, 60_000)

  it(`answers past the buffer: one client holds at most ${HELD_PER_CLIENT} upstream connections`, async () => {
    await attack(ANSWER_BUFFER_BYTES * 4)
  }, 60_000)
})
