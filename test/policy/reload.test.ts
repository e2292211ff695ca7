/**
 * Reload under load: a good file applies to new requests, in-flight ones finish on the old
 * policy, a bad file changes nothing. No request fails across any of it.
 */
import { writeFileSync, renameSync } from 'node:fs'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { startFakeCore, type FakeCore } from '../support/fake-flagsmith.js'
import { policyYaml, spawnGateway, startTestGateway, type TestGateway } from '../support/gateway.js'
import { json, raw } from '../support/http.js'

const KEY = { 'x-environment-key': 'dev_client_key' }
let core1: FakeCore
let core2: FakeCore
let gw: TestGateway

beforeEach(async () => {
  core1 = await startFakeCore()
  core2 = await startFakeCore()
  gw = await startTestGateway(policyYaml({ coreUrl: core1.url }))
})
afterEach(async () => { await gw?.close(); await core1?.close(); await core2?.close() })

const CONCURRENCY = 8

/** Keeps `concurrency` requests in flight until stopped; records every status. */
function load (base: string, concurrency = CONCURRENCY) {
  const statuses: number[] = []
  let running = true
  const workers = Array.from({ length: concurrency }, async () => {
    while (running) {
      try { statuses.push((await raw(base, '/api/v1/flags/', { headers: KEY })).status) } catch { statuses.push(-1) }
    }
  })
  return { statuses, stop: async () => { running = false; await Promise.all(workers) } }
}

const atomicWrite = (file: string, text: string) => { writeFileSync(file + '.tmp', text); renameSync(file + '.tmp', file) }
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** Waits for `cond`, polling; a generous deadline so that only a real failure ends it. */
async function until (what: string, cond: () => boolean, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await sleep(20)
  }
}

async function adminStatus (g: TestGateway) {
  return json(await raw(g.adminUrl, '/admin/status')) as { policy: { version: string; lastError: null | { errors: string[] } } }
}

describe('reload', () => {
  it('a good file, saved under load, moves new requests to the new upstream; no request fails', async () => {
    const before = (await adminStatus(gw)).policy.version
    const l = load(gw.url)
    // the save lands while requests are flowing: wait for them, not for a time
    await until('load flowing', () => l.statuses.length >= 20)
    atomicWrite(gw.file, policyYaml({ coreUrl: core2.url }))
    await until('requests on the new upstream', () => core2.counts() >= 20)
    // from here on, new requests go to core2 only: core1 may still finish what was in flight when
    // the policy changed (at most one request per client), and nothing more
    const core1AtSwitch = core1.counts()
    const core2AtSwitch = core2.counts()
    await until('more requests on the new upstream', () => core2.counts() >= core2AtSwitch + 20)
    await l.stop()
    expect(l.statuses.filter((s) => s !== 200)).toEqual([])
    expect(core1.counts('/api/v1/flags/')).toBeGreaterThan(0)
    expect(core1.counts() - core1AtSwitch).toBeLessThanOrEqual(CONCURRENCY)
    // every request was answered by exactly one of the two upstreams
    expect(core1.counts('/api/v1/flags/') + core2.counts('/api/v1/flags/')).toBe(l.statuses.length)
    expect((await adminStatus(gw)).policy.version).not.toBe(before)
  })

  it('a bad file, saved under load, changes nothing; the error shows in /admin/status and the log', async () => {
    const before = await adminStatus(gw)
    const l = load(gw.url)
    await until('load flowing', () => l.statuses.length >= 20)
    atomicWrite(gw.file, policyYaml({ coreUrl: core2.url }).replace('upstream: core', 'upstream: nowhere'))
    const deadline = Date.now() + 5000
    let status = await adminStatus(gw)
    while (status.policy.lastError === null && Date.now() < deadline) { await sleep(20); status = await adminStatus(gw) }
    await sleep(200)
    await l.stop()
    expect(l.statuses.filter((s) => s !== 200)).toEqual([])
    expect(core2.counts()).toBe(0)
    expect(status.policy.version).toBe(before.policy.version)
    expect(status.policy.lastError?.errors).toEqual([expect.stringMatching(/gateway\.yaml:\d+:\d+: routes\[0\]\.upstream: unknown upstream 'nowhere'/)])
    expect(gw.logs.lines.some((l) => l.msg === 'policy reload refused: the previous policy stays in force')).toBe(true)
  })

  it('an in-flight request finishes on the policy it started with', async () => {
    core1.db.queryLatencyMs = 400
    const inFlight = raw(gw.url, '/api/v1/flags/', { headers: KEY })
    await sleep(100)
    atomicWrite(gw.file, policyYaml({ coreUrl: core2.url }))
    const r = await gw.reload()
    expect(r.ok).toBe(true)
    expect((await inFlight).status).toBe(200)
    expect(core1.counts('/api/v1/flags/')).toBe(1)
    expect((await raw(gw.url, '/api/v1/flags/', { headers: KEY })).status).toBe(200)
    expect(core2.counts('/api/v1/flags/')).toBe(1)
  })

  it('POST /admin/reload answers 200 with the version, or 422 with every error', async () => {
    atomicWrite(gw.file, policyYaml({ coreUrl: core2.url }))
    const ok = await raw(gw.adminUrl, '/admin/reload', { method: 'POST' })
    expect(ok.status).toBe(200)
    expect(json(ok)).toMatchObject({ version: (await adminStatus(gw)).policy.version })
    atomicWrite(gw.file, policyYaml({ coreUrl: core2.url }).replace('shutdownTimeout: 5s', 'shutdownTimeout: soon').replace('bodyLimit: 1mb', 'bodyLimit: lots'))
    const bad = await raw(gw.adminUrl, '/admin/reload', { method: 'POST' })
    expect(bad.status).toBe(422)
    expect((json(bad) as { errors: string[] }).errors).toHaveLength(2)
  })

  it('a changed listen address is reported as needing a restart', async () => {
    atomicWrite(gw.file, policyYaml({ coreUrl: core1.url }).replace('listen: 127.0.0.1:0\n  bodyLimit', 'listen: 127.0.0.1:1\n  bodyLimit'))
    const r = await gw.reload()
    expect(r.restartRequired).toEqual(['server.listen'])
  })
})

describe('SIGHUP', () => {
  it('reloads a gateway process', async () => {
    const g = await spawnGateway(policyYaml({ coreUrl: core1.url }))
    try {
      atomicWrite(g.file, policyYaml({ coreUrl: core2.url }))
      g.process.kill('SIGHUP')
      const deadline = Date.now() + 5000
      while (Date.now() < deadline) {
        await raw(g.url, '/api/v1/flags/', { headers: KEY })
        if (core2.counts() > 0) break
        await sleep(50)
      }
      expect(core2.counts()).toBeGreaterThan(0)
    } finally { expect(await g.stop()).toBe(0) }
  })
})

describe('reloading pool settings', () => {
  it('a new maxConnections for an upstream already in use applies to new requests', async () => {
    const withPool = (n: number) => policyYaml({ coreUrl: core1.url }).replace(`core: { url: "${core1.url}", timeout: 5s }`, `core: { url: "${core1.url}", timeout: 5s, maxConnections: ${n} }`)
    atomicWrite(gw.file, withPool(1))
    expect(gw.reload().ok).toBe(true)
    core1.db.queryLatencyMs = 100
    await Promise.all(Array.from({ length: 4 }, async () => await raw(gw.url, '/api/v1/flags/', { headers: KEY })))
    expect(core1.maxInFlightSeen()).toBe(1)
    atomicWrite(gw.file, withPool(4))
    expect(gw.reload().ok).toBe(true)
    core1.reset()
    await Promise.all(Array.from({ length: 4 }, async () => await raw(gw.url, '/api/v1/flags/', { headers: KEY })))
    expect(core1.maxInFlightSeen()).toBe(4)
  })
})
