import { createServer } from 'node:http'
import { describe, expect, it } from 'vitest'
import { BodyTooLarge, Upstreams } from '../../src/routing/upstreams.js'

describe('Upstreams.request buffering limit', () => {
  it('stops reading a chunked body once it passes maxBodyBytes, and says so', async () => {
    let written = 0
    let closedEarly = false
    const server = createServer((_req, res) => {
      written = 0
      res.writeHead(200, { 'content-type': 'application/json' }) // chunked: no length declared
      const timer = setInterval(() => {
        if (res.destroyed) { closedEarly = true; clearInterval(timer); return }
        res.write('x'.repeat(1024)); written += 1024
        if (written >= 1024 * 1024) { clearInterval(timer); res.end() }
      }, 1)
      res.on('close', () => { if (written < 1024 * 1024) closedEarly = true; clearInterval(timer) })
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const upstreams = new Upstreams()
    try {
      const origin = `http://127.0.0.1:${(server.address() as { port: number }).port}`
      const err = await upstreams.request({ origin, path: '/', method: 'GET', headers: {}, timeoutMs: 5000, maxBodyBytes: 4096 }).catch((e: unknown) => e)
      expect(err).toBeInstanceOf(BodyTooLarge)
      await new Promise((r) => setTimeout(r, 50))
      expect(closedEarly).toBe(true)
      expect(written).toBeLessThan(1024 * 1024)
      closedEarly = false
      // within the limit, the whole body comes back
      const small = await upstreams.request({ origin, path: '/', method: 'GET', headers: {}, timeoutMs: 5000, maxBodyBytes: 2 * 1024 * 1024 })
      expect(small.body.length).toBe(1024 * 1024)
    } finally { await upstreams.close(true); server.close() }
  })
})
