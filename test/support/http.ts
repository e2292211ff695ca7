/** A raw HTTP/1.1 client for tests that must control every byte and header (fetch rewrites some). */
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http'
import { connect } from 'node:net'

export interface RawResponse { status: number; headers: IncomingHttpHeaders; body: Buffer }

export async function raw (base: string, path: string, opts: { method?: string; headers?: Record<string, string | string[]>; body?: Buffer | string; timeoutMs?: number } = {}): Promise<RawResponse> {
  const u = new URL(base)
  return await new Promise((resolve, reject) => {
    const req = httpRequest({ host: u.hostname, port: u.port, method: opts.method ?? 'GET', path, headers: opts.headers, agent: false, timeout: opts.timeoutMs ?? 20_000 }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }))
      res.on('error', reject)
    })
    req.on('timeout', () => req.destroy(new Error('client timeout')))
    req.on('error', reject)
    req.end(opts.body)
  })
}

/** Writes bytes on a socket as they are and returns what comes back before the server closes. */
export async function rawSocket (base: string, bytes: string): Promise<string> {
  const u = new URL(base)
  return await new Promise((resolve, reject) => {
    const sock = connect(Number(u.port), u.hostname)
    const chunks: Buffer[] = []
    sock.on('data', (c: Buffer) => chunks.push(c))
    sock.on('end', () => resolve(Buffer.concat(chunks).toString()))
    sock.on('close', () => resolve(Buffer.concat(chunks).toString()))
    sock.on('error', reject)
    sock.setTimeout(5000, () => { sock.destroy(); resolve(Buffer.concat(chunks).toString()) })
    sock.write(bytes)
  })
}

export function json (r: RawResponse): unknown {
  return JSON.parse(r.body.toString())
}

export interface RawAnswer { status: number; headers: Record<string, string>; body: string }

/**
 * Writes `bytes` (latin1, byte for byte: raw request lines that HTTP clients would normalise) and
 * resolves with the first complete response (Content-Length or chunked), then closes the socket.
 * Rejects when the server closes without a complete answer, or after `timeoutMs`.
 */
export async function rawExchange (base: string, bytes: string, timeoutMs = 15_000): Promise<RawAnswer> {
  const u = new URL(base)
  return await new Promise<RawAnswer>((resolve, reject) => {
    const sock = connect(Number(u.port), u.hostname)
    let text = ''
    const parse = (final: boolean): void => {
      const end = text.indexOf('\r\n\r\n')
      if (end === -1) { if (final) reject(new Error(`closed without an answer: ${JSON.stringify(text)}`)); return }
      const lines = text.slice(0, end).split('\r\n')
      const h: Record<string, string> = {}
      for (const l of lines.slice(1)) { const i = l.indexOf(':'); h[l.slice(0, i).toLowerCase()] = l.slice(i + 1).trim() }
      let body = text.slice(end + 4)
      if (h['transfer-encoding'] === 'chunked') {
        if (!body.endsWith('0\r\n\r\n')) { if (final) reject(new Error(`incomplete chunked body: ${JSON.stringify(text)}`)); return }
        let plain = ''
        for (let at = 0; ;) {
          const nl = body.indexOf('\r\n', at)
          const n = parseInt(body.slice(at, nl), 16)
          if (n === 0) break
          plain += body.slice(nl + 2, nl + 2 + n)
          at = nl + 2 + n + 2
        }
        body = plain
      } else if (h['content-length'] !== undefined && body.length < Number(h['content-length']) && !final) return
      sock.destroy()
      resolve({ status: Number(lines[0]!.split(' ')[1]), headers: h, body })
    }
    sock.on('data', (c: Buffer) => { text += c.toString('latin1'); parse(false) })
    sock.on('end', () => parse(true))
    sock.on('close', () => parse(true))
    sock.on('error', reject)
    sock.setTimeout(timeoutMs, () => { sock.destroy(); reject(new Error('no answer in time')) })
    sock.write(Buffer.from(bytes, 'latin1'))
  })
}
