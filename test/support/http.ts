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
