/**
 * An upstream that answers with whatever a broken or hostile Core might put on the wire, written
 * byte by byte on raw sockets (node:http would refuse to produce most of it). The mode can be
 * changed between requests; every request is counted.
 */
import { createServer, type Server, type Socket } from 'node:net'

export type HostileMode =
  | 'ok'                 // a valid 200 JSON answer
  | 'invalid-http'       // not HTTP at all
  | 'truncated'          // Content-Length 1000, 100 bytes, then close
  | 'lying-length'       // Content-Length 10, then 100 bytes
  | 'huge-body'          // a 100 MB body, streamed
  | 'huge-headers'       // one 100 KB header
  | 'invalid-header'     // a header value with a control character
  | 'reset-mid-body'     // headers and half a body, then a TCP reset
  | 'reset-before-answer' // the request is read, then a TCP reset
  | 'error-500'          // Django's 500
  | 'silent'             // reads the request and never answers

export const OK_BODY = JSON.stringify({ api_key: 'ser.fake', feature_states: [], project: { name: 'chaos' } })

export interface HostileUpstream {
  readonly url: string
  mode: HostileMode
  readonly requests: number
  /** sockets currently open from the gateway */
  readonly openSockets: number
  close (): Promise<void>
}

function head (status: string, headers: string[]): string {
  return `HTTP/1.1 ${status}\r\n${headers.join('\r\n')}\r\n\r\n`
}

function answer (sock: Socket, mode: HostileMode): void {
  switch (mode) {
    case 'ok':
      sock.write(head('200 OK', ['Content-Type: application/json', `Content-Length: ${Buffer.byteLength(OK_BODY)}`]) + OK_BODY)
      return
    case 'invalid-http':
      sock.end('this is not http at all\r\n\r\n')
      return
    case 'truncated':
      sock.end(head('200 OK', ['Content-Type: application/json', 'Content-Length: 1000']) + '{"a":"' + 'x'.repeat(94))
      return
    case 'lying-length':
      sock.end(head('200 OK', ['Content-Type: application/json', 'Content-Length: 10']) + '{"a":"' + 'x'.repeat(94) + '"}')
      return
    case 'huge-body': {
      const total = 100 * 1024 * 1024
      sock.write(head('200 OK', ['Content-Type: application/json', `Content-Length: ${total}`]))
      const chunk = Buffer.alloc(64 * 1024, 0x20)
      let sent = 0
      const pump = (): void => {
        while (sent < total && !sock.destroyed) {
          sent += chunk.length
          if (!sock.write(chunk)) { sock.once('drain', pump); return }
        }
        sock.end()
      }
      pump()
      return
    }
    case 'huge-headers':
      sock.end(head('200 OK', ['Content-Type: application/json', `X-Huge: ${'h'.repeat(100 * 1024)}`, 'Content-Length: 2']) + '{}')
      return
    case 'invalid-header':
      sock.end(head('200 OK', ['Content-Type: application/json', 'X-Bad: a\u0001b', 'Content-Length: 2']) + '{}')
      return
    case 'reset-mid-body':
      sock.write(head('200 OK', ['Content-Type: application/json', 'Content-Length: 1000']) + '{"a":"' + 'x'.repeat(200))
      setTimeout(() => sock.resetAndDestroy(), 20)
      return
    case 'reset-before-answer':
      sock.resetAndDestroy()
      return
    case 'error-500':
      sock.write(head('500 Internal Server Error', ['Content-Type: text/html', 'Content-Length: 21']) + '<h1>Server Error</h1>')
      return
    case 'silent':
      return
  }
}

export async function startHostileUpstream (mode: HostileMode = 'ok'): Promise<HostileUpstream> {
  let requests = 0
  const sockets = new Set<Socket>()
  const state = { mode }
  const server: Server = createServer((sock) => {
    sockets.add(sock)
    sock.on('close', () => sockets.delete(sock))
    sock.on('error', () => {})
    let buf = ''
    sock.on('data', (c: Buffer) => {
      buf += c.toString('latin1')
      // one request per header block; bodies of the gateway's requests are not needed here
      let end: number
      while ((end = buf.indexOf('\r\n\r\n')) !== -1) {
        const reqHead = buf.slice(0, end)
        const len = Number(/\r\ncontent-length:\s*(\d+)/i.exec(reqHead)?.[1] ?? 0)
        if (buf.length < end + 4 + len) return
        buf = buf.slice(end + 4 + len)
        requests++
        answer(sock, state.mode)
      }
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const addr = server.address()
  const port = typeof addr === 'object' && addr !== null ? addr.port : 0
  return {
    url: `http://127.0.0.1:${port}`,
    get mode () { return state.mode },
    set mode (m: HostileMode) { state.mode = m },
    get requests () { return requests },
    get openSockets () { return sockets.size },
    async close () {
      for (const s of sockets) s.destroy()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    }
  }
}
