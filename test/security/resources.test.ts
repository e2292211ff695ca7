/**
 * Attacks 14 and 15: resources one client could take from all.
 *
 * 14. Request bodies were buffered without a global bound: 400 connections each one byte short of
 *     a 1 MiB body held 400 MB. Scale here: one address, 40 such connections (40 MiB) against the
 *     default budget (256 MB in all, a client's share 32 MB): the ones past the share get 503 at
 *     once, and another client's POST still goes through.
 * 15. One address could hold every connection (`maxConnections`) with half-open requests. Scale:
 *     maxConnections 1,100 and the default maxConnectionsPerClient (1,000); one address opens
 *     1,100 half-open requests; another client is still served.
 */
import { connect, type Socket } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startRecordingUpstream, type RecordingUpstream } from '../support/recording-upstream.js'
import { policyYaml, startTestGateway, type TestGateway } from '../support/gateway.js'
import { raw } from '../support/http.js'

let up: RecordingUpstream
let gw: TestGateway
const held: Socket[] = []

beforeAll(async () => {
  up = await startRecordingUpstream()
  gw = await startTestGateway(policyYaml({ coreUrl: up.url, server: '  maxConnections: 1100' }))
})
afterAll(async () => {
  for (const s of held) s.destroy()
  await gw?.close()
  await up?.close()
})

/** A socket from `localAddress` (any 127.x address is this host's loopback) that has written `bytes`. */
async function open (localAddress: string, bytes: string | Buffer): Promise<{ socket: Socket; answer: Promise<string> }> {
  const u = new URL(gw.url)
  const socket = connect({ host: u.hostname, port: Number(u.port), localAddress })
  held.push(socket)
  let text = ''
  const answer = new Promise<string>((resolve) => {
    socket.on('data', (c: Buffer) => { text += c.toString('latin1') })
    socket.on('close', () => resolve(text))
    socket.on('error', () => {})
  })
  await new Promise<void>((resolve, reject) => { socket.once('connect', resolve); socket.once('error', reject) })
  socket.write(bytes)
  return { socket, answer }
}

const MIB = 1024 * 1024

describe('attack 14: bodies one byte short of the limit, many at once', () => {
  it('one client holds at most its share of the body budget: the rest get 503 at once; others are served', async () => {
    const head = `POST /api/v1/traits/ HTTP/1.1\r\nHost: gw\r\nX-Environment-Key: k\r\nContent-Type: application/json\r\nContent-Length: ${MIB}\r\n\r\n`
    const attempts = await Promise.all(Array.from({ length: 40 }, async () => await open('127.0.0.2', Buffer.concat([Buffer.from(head), Buffer.alloc(MIB - 1, 0x20)]))))
    // the refused ones are answered and closed; the others wait for their last byte
    const answers = await Promise.all(attempts.map(async (a) => await Promise.race([a.answer, new Promise<string>((resolve) => setTimeout(() => resolve('(pending)'), 3000))])))
    const refused = answers.filter((t) => t.startsWith('HTTP/1.1 503'))
    expect(refused.length).toBeGreaterThanOrEqual(8)
    expect(refused[0]).toMatch(/"code":"FLAGGATE_OVERLOADED"/)
    expect(refused[0]).toMatch(/retry-after: 1/i)
    expect(answers.filter((t) => t === '(pending)').length).toBeLessThanOrEqual(32)
    // reported as shed, as the gate's 503s are (access log, requests_total{decision})
    const shedLogged = (): number => gw.logs.lines.filter((l) => l.msg === 'request' && l.status === 503 && l.decision === 'shed').length
    const deadline = Date.now() + 10_000
    while (shedLogged() < refused.length && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50))
    expect(shedLogged()).toBe(refused.length)
    // another client's body is still taken
    const r = await raw(gw.url, '/api/v1/traits/', { method: 'POST', headers: { 'x-environment-key': 'k', 'content-type': 'application/json' }, body: '{"trait_key":"a"}' })
    expect(r.status).toBe(200)
    for (const a of attempts) a.socket.destroy()
  })
})

describe('attack 15: one address holding every connection', () => {
  it('past maxConnectionsPerClient (1,000) its connections are closed at once; another client is served', async () => {
    let closed = 0
    const sockets = await Promise.all(Array.from({ length: 1100 }, async () => {
      const s = await open('127.0.0.3', 'GET /api/v1/flags/ HTTP/1.1\r\nHost: gw\r\n')
      void s.answer.then(() => { closed++ })
      return s
    }))
    // the gateway closes the connections past the cap as it accepts them: wait for those closes
    const deadline = Date.now() + 10_000
    while (closed < 100 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50))
    expect(closed).toBe(100)
    const r = await raw(gw.url, '/api/v1/flags/', { headers: { 'x-environment-key': 'k' }, timeoutMs: 5000 })
    expect(r.status).toBe(200)
    for (const s of sockets) s.socket.destroy()
  })
})
