/**
 * A plain node:http upstream that records exactly what it received (method, raw path, headers in
 * both parsed and raw form, body bytes, which connection) and answers what the test says. For
 * tests of what the gateway sends upstream and how it treats what comes back.
 */
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http'
import type { Socket } from 'node:net'

export interface RecordedCall {
  method: string
  /** the request target as received, query included, byte for byte */
  rawPath: string
  headers: IncomingHttpHeaders
  /** name/value pairs as they came on the wire */
  rawHeaders: string[]
  body: Buffer
  /** 1, 2, …: which TCP connection carried the request */
  connection: number
}

/** Answers one request; the default answers 200 `{"ok":true}`. */
export type Responder = (call: RecordedCall, res: ServerResponse) => void

export interface RecordingUpstream {
  url: string
  readonly calls: RecordedCall[]
  /** TCP connections accepted so far */
  readonly connections: () => number
  respond: Responder
  /** resolves once `n` requests have been received */
  waitForCalls: (n: number, timeoutMs?: number) => Promise<void>
  reset: () => void
  close: () => Promise<void>
}

export const answerOk: Responder = (_call, res) => {
  res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}')
}

export async function startRecordingUpstream (respond: Responder = answerOk): Promise<RecordingUpstream> {
  const calls: RecordedCall[] = []
  const sockets = new Map<Socket, number>()
  const waiters: Array<{ n: number; resolve: () => void }> = []
  let connections = 0
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const call: RecordedCall = {
        method: req.method ?? '',
        rawPath: req.url ?? '',
        headers: req.headers,
        rawHeaders: req.rawHeaders,
        body: Buffer.concat(chunks),
        connection: sockets.get(req.socket) ?? 0
      }
      calls.push(call)
      for (const w of waiters.slice()) if (calls.length >= w.n) { waiters.splice(waiters.indexOf(w), 1); w.resolve() }
      up.respond(call, res)
    })
  })
  server.on('connection', (s: Socket) => { sockets.set(s, ++connections); s.on('close', () => sockets.delete(s)) })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as { port: number }
  const up: RecordingUpstream = {
    url: `http://127.0.0.1:${port}`,
    calls,
    connections: () => connections,
    respond,
    async waitForCalls (n, timeoutMs = 15_000) {
      if (calls.length >= n) return
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`recording upstream: ${calls.length} of ${n} requests after ${timeoutMs} ms`)), timeoutMs)
        waiters.push({ n, resolve: () => { clearTimeout(timer); resolve() } })
      })
    },
    reset () { calls.length = 0 },
    async close () {
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    }
  }
  return up
}
