/**
 * The proxy's answers on both sides of the read-whole limit (upstream/client.ts ProxyHandler), on
 * real sockets against a recording upstream: every body byte-identical and every header as Core
 * gave it, whether the answer was read whole or streamed; a client that leaves mid-stream takes
 * the upstream request down with it.
 */
import { createHash, randomBytes } from 'node:crypto'
import { request as httpRequest } from 'node:http'
import { beforeEach, describe, expect, it } from 'vitest'
import { BUFFERED_BODY_BYTES } from '../../src/upstream/client.js'
import { raw } from '../support/http.js'
import { startRecordingUpstream } from '../support/recording-upstream.js'
import { useGateway } from '../support/use-gateway.js'

const t = useGateway({ upstream: startRecordingUpstream })

const KEY = 'ser.proxy_body_key'

beforeEach(() => { t.upstream.reset() })

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex')

describe('answers read whole and answers streamed', () => {
  const shapes: Array<{ name: string; bytes: number; sized: boolean; typed: boolean }> = [
    { name: 'small, sized, typed (read whole)', bytes: 1200, sized: true, typed: true },
    { name: 'exactly the limit (read whole)', bytes: BUFFERED_BODY_BYTES, sized: true, typed: true },
    { name: 'one byte past the limit (streamed)', bytes: BUFFERED_BODY_BYTES + 1, sized: true, typed: true },
    { name: 'small but chunked (streamed)', bytes: 3000, sized: false, typed: true },
    { name: 'small without a Content-Type (streamed)', bytes: 500, sized: true, typed: false },
    { name: '1 MB in many writes (streamed)', bytes: 1024 * 1024, sized: true, typed: true }
  ]
  for (const s of shapes) {
    it(`${s.name}: the body byte for byte, Core's headers, repeats kept apart`, async () => {
      const body = randomBytes(s.bytes)
      t.upstream.respond = (_c, res) => {
        const headers: Array<[string, string]> = [['x-answer', 'one'], ['set-cookie', 'a=1'], ['set-cookie', 'b=2'], ['constructor', 'not-a-function'], ['toString', 'plain']]
        if (s.typed) headers.push(['content-type', 'application/octet-stream'])
        if (s.sized) headers.push(['content-length', String(s.bytes)])
        res.writeHead(203, headers.flat())
        // in pieces, so a read-whole answer arrives in several chunks too
        for (let o = 0; o < body.length; o += 16 * 1024) res.write(body.subarray(o, o + 16 * 1024))
        res.end()
      }
      const r = await raw(t.gw.url, '/api/v1/flags/', { headers: { 'x-environment-key': KEY } })
      expect(r.status).toBe(203)
      expect(r.body.length).toBe(s.bytes)
      expect(sha(r.body)).toBe(sha(body))
      expect(r.headers['x-answer']).toBe('one')
      expect(r.headers['set-cookie']).toEqual(['a=1', 'b=2'])
      expect(r.headers.constructor).toBe('not-a-function')
      expect(r.headers.tostring).toBe('plain')
      if (s.typed) expect(r.headers['content-type']).toBe('application/octet-stream')
      if (s.sized) expect(r.headers['content-length']).toBe(String(s.bytes))
      expect(r.headers['x-flaggate-upstream']).toBe('core')
    })
  }

  it('HEAD: the headers Core gave, no body', async () => {
    t.upstream.respond = (_c, res) => { res.writeHead(200, { 'content-type': 'application/json', 'content-length': '4096', 'x-answer': 'head' }).end() }
    const r = await raw(t.gw.url, '/api/v1/flags/', { method: 'HEAD', headers: { 'x-environment-key': KEY } })
    expect(r.status).toBe(200)
    expect(r.headers['content-length']).toBe('4096')
    expect(r.headers['x-answer']).toBe('head')
    expect(r.body.length).toBe(0)
    expect(t.upstream.calls[0]?.method).toBe('HEAD')
  })
})

describe('an answer read whole', () => {
  it('cut short after its headers: our 502, and Core asked once (no retry: the socket was not a stale keep-alive one)', async () => {
    t.upstream.respond = (_c, res) => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': '1000' })
      res.write('{"partial":')
      // a FIN after the bytes written, not a reset that could overtake them: the headers arrive
      res.socket?.end()
    }
    const r = await raw(t.gw.url, '/api/v1/flags/', { headers: { 'x-environment-key': KEY } })
    expect(r.status).toBe(502)
    expect(t.upstream.calls).toHaveLength(1)
  })

  it("the upstream's latency ends at its headers, not at the end of a body it was slow to send", async () => {
    const observed = async (stat: 'sum' | 'count'): Promise<number> => {
      const m = await t.gw.metrics.upstreamDuration.get()
      return m.values.find((v) => v.metricName === `flaggate_upstream_request_duration_seconds_${stat}` && v.labels.route === 'flags' && v.labels.upstream === 'core')?.value ?? 0
    }
    const [sum0, count0] = [await observed('sum'), await observed('count')]
    t.upstream.respond = (_c, res) => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': '11' })
      res.flushHeaders()
      setTimeout(() => { res.end('{"ok":true}') }, 1500)
    }
    const r = await raw(t.gw.url, '/api/v1/flags/', { headers: { 'x-environment-key': KEY } })
    expect(r.status).toBe(200)
    expect(r.body.toString()).toBe('{"ok":true}')
    expect(await observed('count')).toBe(count0 + 1)
    // the headers left at once; the body 1.5 s later
    expect(await observed('sum') - sum0).toBeLessThan(1)
  })
})

describe('a client that leaves mid-stream', () => {
  it("aborts the upstream request (Core's socket closes before its answer is done), and the gateway keeps serving", async () => {
    let upstreamClosed!: () => void
    const closed = new Promise<void>((resolve) => { upstreamClosed = resolve })
    let timer: NodeJS.Timeout | undefined
    t.upstream.respond = (_c, res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream' }) // chunked: streamed
      // an endless answer: only an abort from the gateway ends it
      const chunk = Buffer.alloc(16 * 1024, 1)
      const more = (): void => { if (!res.destroyed) { res.write(chunk); timer = setTimeout(more, 5) } }
      more()
      res.on('close', () => { clearTimeout(timer); if (!res.writableFinished) upstreamClosed() })
    }
    const { hostname, port } = new URL(t.gw.url)
    await new Promise<void>((resolve, reject) => {
      const req = httpRequest({ host: hostname, port, path: '/api/v1/flags/', headers: { 'x-environment-key': KEY } }, (res) => {
        let got = 0
        res.on('data', (c: Buffer) => {
          got += c.length
          // well into the stream: the answer was handed on, not read whole
          if (got > 100 * 1024) { req.destroy(); resolve() }
        })
      })
      req.on('error', () => {})
      req.on('close', () => { resolve() })
      req.once('response', () => {})
      req.end()
      setTimeout(() => { reject(new Error('no data')) }, 10_000).unref()
    })
    await closed
    t.upstream.respond = (_c, res) => { res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}') }
    const r = await raw(t.gw.url, '/api/v1/flags/', { headers: { 'x-environment-key': KEY } })
    expect(r.status).toBe(200)
    expect(r.body.toString()).toBe('{"ok":true}')
  })
})
