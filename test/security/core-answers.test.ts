/**
 * Attack 17: a broken Core's malformed answers (an impossible status code, a corrupt chunk) became
 * our `500 FLAGGATE_INTERNAL_ERROR`. They are the upstream's fault: 502 in our shape, and the
 * gateway keeps serving.
 */
import { createServer, type Server, type Socket } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { policyYaml, startTestGateway, type TestGateway } from '../support/gateway.js'
import { json, raw } from '../support/http.js'

/** A raw-socket Core that answers whatever bytes the test sets, then closes. */
let answer = ''
let core: Server
let coreUrl: string
const sockets = new Set<Socket>()
let gw: TestGateway

beforeAll(async () => {
  core = createServer((s) => {
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
    s.once('data', () => { s.end(answer) })
    s.on('error', () => {})
  })
  await new Promise<void>((resolve) => core.listen(0, '127.0.0.1', resolve))
  coreUrl = `http://127.0.0.1:${(core.address() as { port: number }).port}`
  gw = await startTestGateway(policyYaml({ coreUrl }))
})
afterAll(async () => {
  await gw?.close()
  for (const s of sockets) s.destroy()
  await new Promise((resolve) => core.close(resolve))
})

const MALFORMED: Array<[string, string]> = [
  ['status 999', 'HTTP/1.1 999 Weird\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}'],
  ['status 99', 'HTTP/1.1 99 Low\r\nContent-Length: 2\r\n\r\n{}'],
  ['a status line that is not one', 'HTTP/1.1 OK\r\nContent-Length: 2\r\n\r\n{}'],
  ['a bad chunk size', 'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n'],
  ['two Content-Lengths that disagree', 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}x'],
  ['a body shorter than its Content-Length', 'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{}']
]

describe('attack 17: Core\'s malformed answers', () => {
  for (const [what, bytes] of MALFORMED) {
    for (const path of ['/api/v1/flags/', '/api/v1/environment-document/']) {
      it(`${what} on ${path} → 502 FLAGGATE_UPSTREAM_UNREACHABLE in our shape (or the answer's own bytes already sent), never 500`, async () => {
        answer = bytes
        let r
        try {
          r = await raw(gw.url, path, { headers: { 'x-environment-key': 'ser.k' } })
        } catch (err) {
          // the headers were already on their way (a body cut short): the client sees a cut
          // connection, as with any proxy; never a 500
          expect(what).toBe('a body shorter than its Content-Length')
          return
        }
        expect(r.status, r.body.toString()).toBe(502)
        expect(r.headers['content-type']).toMatch(/^application\/json/)
        expect(json(r)).toMatchObject({ statusCode: 502, code: 'FLAGGATE_UPSTREAM_UNREACHABLE', error: 'Bad Gateway' })
      })
    }
  }
})
