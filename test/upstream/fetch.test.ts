import { createServer } from 'node:http'
import pino from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import { BodyTooLarge, UpstreamClient } from '../../src/upstream/index.js'
import { createMetrics } from '../../src/metrics/registry.js'
import { loadPolicy } from '../../src/policy/load.js'
import type { Policy } from '../../src/policy/compile.js'
import { startRecordingUpstream, type RecordingUpstream } from '../support/recording-upstream.js'

/** A compiled policy naming the given upstreams (`name: { url, maxConnections }`). */
function policyWith (upstreams: Record<string, { url: string; maxConnections?: number }>): Policy {
  const lines = Object.entries(upstreams).map(([n, u]) => `  ${n}: { url: "${u.url}", timeout: 5s${u.maxConnections === undefined ? '' : `, maxConnections: ${u.maxConnections}`} }`)
  const yaml = `upstreams:\n${lines.join('\n')}\nroutes:\n  - name: default\n    match: { pathPrefix: / }\n    upstream: ${Object.keys(upstreams)[0]}\n`
  const r = loadPolicy('test.yaml', yaml, {})
  if (!r.ok) throw new Error(JSON.stringify(r.errors))
  return r.policy
}

const newClient = (): UpstreamClient => new UpstreamClient({ metrics: createMetrics({ defaultMetrics: false }), logger: pino({ level: 'silent' }) })

const cleanup: Array<() => Promise<void>> = []
afterEach(async () => { for (const c of cleanup.splice(0).reverse()) await c() })

describe('UpstreamClient.fetch buffering limit', () => {
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
    const client = newClient()
    cleanup.push(async () => { await client.close(true); server.close() })
    client.configure(policyWith({ core: { url: `http://127.0.0.1:${(server.address() as { port: number }).port}` } }))
    const err = await client.fetch({ upstream: 'core', route: 'default', path: '/', method: 'GET', headers: {}, maxBodyBytes: 4096 }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(BodyTooLarge)
    await expect.poll(() => closedEarly).toBe(true)
    expect(written).toBeLessThan(1024 * 1024)
    // within the limit, the whole body comes back
    const small = await client.fetch({ upstream: 'core', route: 'default', path: '/', method: 'GET', headers: {}, maxBodyBytes: 2 * 1024 * 1024 })
    expect(small.body.length).toBe(1024 * 1024)
  })

  it('an unreachable upstream is a 502 GatewayError, never a raw socket error', async () => {
    const client = newClient()
    cleanup.push(async () => { await client.close(true) })
    client.configure(policyWith({ core: { url: 'http://127.0.0.1:9' } }))
    const err = await client.fetch({ upstream: 'core', route: 'default', path: '/', method: 'GET', headers: {} }).catch((e: unknown) => e)
    expect(err).toMatchObject({ name: 'GatewayError', code: 'FLAGGATE_UPSTREAM_UNREACHABLE', statusCode: 502 })
  })
})

describe('pools follow the policy', () => {
  /** Six requests at once: a pool of N opens exactly min(N, 6) connections. */
  async function connectionsFor (client: UpstreamClient, up: RecordingUpstream, upstream: string): Promise<number> {
    up.reset()
    const before = up.connections()
    await Promise.all(Array.from({ length: 6 }, async () => await client.fetch({ upstream, route: 'default', path: '/', method: 'GET', headers: {} })))
    expect(up.calls).toHaveLength(6)
    return up.connections() - before
  }

  it('an origin added after the first policy change gets its configured maxConnections, not the pool default', async () => {
    const a = await startRecordingUpstream()
    const b = await startRecordingUpstream()
    const client = newClient()
    cleanup.push(async () => { await client.close(true); await a.close(); await b.close() })
    client.configure(policyWith({ a: { url: a.url, maxConnections: 5 } }))
    // the first change of an existing origin's settings swaps the Agent
    client.configure(policyWith({ a: { url: a.url, maxConnections: 4 } }))
    expect(await connectionsFor(client, a, 'a')).toBe(4)
    // an origin first seen in a later reload
    client.configure(policyWith({ a: { url: a.url, maxConnections: 4 }, b: { url: b.url, maxConnections: 2 } }))
    expect(client.poolSettings(b.url)?.connections).toBe(2)
    expect(await connectionsFor(client, b, 'b')).toBe(2)
  })
})
