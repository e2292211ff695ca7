/**
 * SIGTERM: stop accepting, /readyz 503 on the admin listener, finish what is in flight, exit 0.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startFakeCore, type FakeCore } from '../support/fake-flagsmith.js'
import { policyYaml, spawnGateway } from '../support/gateway.js'
import { raw } from '../support/http.js'

let core: FakeCore
beforeAll(async () => { core = await startFakeCore() })
afterAll(async () => { await core?.close() })

describe('graceful shutdown', () => {
  it('drains in-flight requests, answers readyz 503 meanwhile, and exits 0', async () => {
    const g = await spawnGateway(policyYaml({ coreUrl: core.url }))
    core.db.queryLatencyMs = 150 // the env doc is 11 queries: ~1.6 s in flight
    core.reset()
    const inflight = Array.from({ length: 5 }, () => raw(g.url, '/api/v1/environment-document/', { headers: { 'x-environment-key': 'ser.dev_server_key' } }))
    // the signal lands once all five are in flight at Core, however long a busy machine took to
    // get them there
    while (core.counts('/api/v1/environment-document/') < 5) await new Promise((r) => setTimeout(r, 10))
    const exit = g.stop('SIGTERM')
    // readyz turns 503 once the signal is handled, while the five are still draining
    let ready = await raw(g.adminUrl, '/readyz')
    const answeredByCore = (): number => core.requests.filter((r) => r.path === '/api/v1/environment-document/' && r.status !== null).length
    while (ready.status === 200 && answeredByCore() < 5) {
      await new Promise((r) => setTimeout(r, 20))
      ready = await raw(g.adminUrl, '/readyz')
    }
    expect(ready.status).toBe(503)
    await expect(raw(g.url, '/api/v1/flags/', { headers: { 'x-environment-key': 'dev_client_key' }, timeoutMs: 2000 })).rejects.toThrow()
    const results = await Promise.all(inflight)
    expect(results.map((r) => r.status)).toEqual([200, 200, 200, 200, 200])
    expect(await exit).toBe(0)
    core.db.queryLatencyMs = 0
  })

  it('gives up on requests still running after server.shutdownTimeout, and still exits 0', async () => {
    const g = await spawnGateway(policyYaml({ coreUrl: core.url, shutdownTimeout: '500ms', coreTimeout: '30s' }))
    core.db.hang = true
    try {
      const hanging = raw(g.url, '/api/v1/flags/', { headers: { 'x-environment-key': 'dev_client_key' } }).catch((e: Error) => e)
      await new Promise((r) => setTimeout(r, 200))
      const started = Date.now()
      expect(await g.stop('SIGTERM')).toBe(0)
      expect(Date.now() - started).toBeLessThan(3000)
      await hanging
    } finally { core.db.hang = false }
  })
})

describe('failing to start', () => {
  it('a taken port rejects startGateway and leaves nothing open: the process ends by itself', async () => {
    const { spawn } = await import('node:child_process')
    const { createServer } = await import('node:net')
    const { mkdirSync, writeFileSync } = await import('node:fs')
    const { inject } = await import('vitest')
    const { tempPolicyFile } = await import('../support/gateway.js')
    const blocker = createServer()
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve))
    const port = (blocker.address() as { port: number }).port
    try {
      const file = tempPolicyFile(policyYaml({ coreUrl: core.url, redis: { url: inject('redisUrl'), keyPrefix: 'taken-port:' } }).replace('listen: 127.0.0.1:0\n  bodyLimit', `listen: 127.0.0.1:${port}\n  bodyLimit`))
      // no process.exit anywhere: a leaked Redis socket or timer would keep this process alive
      // inside the project (git-ignored .tmp/) so that its imports resolve
      mkdirSync('.tmp', { recursive: true })
      const script = `.tmp/start-${process.pid}-${Date.now()}.mts`
      writeFileSync(script, `import pino from 'pino'
import { startGateway } from '../src/gateway.ts'
try { await startGateway({ configPath: '${file}', logger: pino({ level: 'silent' }) }); console.log('started') } catch (err) { console.log('refused', (err as NodeJS.ErrnoException).code) }
`)
      // how long the process takes to load and refuse depends on the machine; what is asserted is
      // that once refused, nothing it opened keeps it alive: it exits within 5 s of the refusal
      const child = spawn(process.execPath, ['--import', 'tsx', script], { stdio: ['ignore', 'pipe', 'inherit'], cwd: process.cwd() })
      let out = ''
      let refusedAt = Infinity
      child.stdout.on('data', (c: Buffer) => { out += c.toString(); if (out.includes('refused')) refusedAt = Math.min(refusedAt, Date.now()) })
      const timer = setTimeout(() => child.kill('SIGKILL'), 50_000)
      const code = await new Promise<number | null>((resolve) => child.once('exit', resolve))
      const exitedAt = Date.now()
      clearTimeout(timer)
      expect(out.trim()).toBe('refused EADDRINUSE')
      expect(code).toBe(0)
      expect(exitedAt - refusedAt).toBeLessThan(5000)
    } finally { blocker.close() }
  }, 60_000)
})
