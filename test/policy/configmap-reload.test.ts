/**
 * A Kubernetes ConfigMap mounted as a volume is updated the way kubelet's AtomicWriter does it:
 * the file is a symlink `gateway.yaml -> ..data/gateway.yaml`, `..data` a symlink to a
 * timestamped directory; an update writes a new directory, points `..data_tmp` at it and renames
 * `..data_tmp` over `..data`. The file's own inode never changes, so only a watch on the
 * directory (src/policy/store.ts) sees it. This test performs exactly those steps.
 */
import { mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pino from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startGateway, type Gateway } from '../../src/gateway.js'
import { startFakeCore, type FakeCore } from '../support/fake-flagsmith.js'
import { LogCapture, policyYaml } from '../support/gateway.js'
import { raw } from '../support/http.js'

let core: FakeCore
let gw: Gateway
let dir: string
let current: string

/** kubelet's AtomicWriter: new timestamped dir, `..data_tmp` symlink, rename over `..data`, old dir removed. */
function publish (generation: number, yaml: string): void {
  const ts = `..2026_11_30_08_00_0${generation}.${1000 + generation}`
  mkdirSync(join(dir, ts))
  writeFileSync(join(dir, ts, 'gateway.yaml'), yaml)
  symlinkSync(ts, join(dir, '..data_tmp'))
  renameSync(join(dir, '..data_tmp'), join(dir, '..data'))
  if (current !== undefined) rmSync(join(dir, current), { recursive: true })
  current = ts
}

const limited = (rate: string) => policyYaml({
  coreUrl: core.url,
  routes: `  - name: flags
    match: { methods: [GET], path: /api/v1/flags/ }
    upstream: core
    limit: { by: environmentKey, rate: ${rate}, burst: 1 }
  - name: default
    match: { pathPrefix: / }
    upstream: core`
})

async function until (what: string, check: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 25))
  }
}

beforeAll(async () => {
  core = await startFakeCore()
  dir = mkdtempSync(join(tmpdir(), 'flaggate-configmap-'))
  publish(1, limited('1/h'))
  symlinkSync('..data/gateway.yaml', join(dir, 'gateway.yaml'))
  gw = await startGateway({ configPath: join(dir, 'gateway.yaml'), logger: pino({ level: 'info' }, new LogCapture()) })
})
afterAll(async () => { await gw?.close(); await core?.close() })

describe('policy from a ConfigMap volume', () => {
  it('reloads when kubelet swaps the ..data symlink, and keeps the old policy when the new one is invalid', async () => {
    const key = { 'x-environment-key': 'dev_client_key' }
    expect((await raw(gw.url, '/api/v1/flags/', { headers: key })).status).toBe(200)
    expect((await raw(gw.url, '/api/v1/flags/', { headers: key })).status).toBe(429)

    const v1 = gw.store.current.version
    publish(2, limited('1000/s'))
    await until('the reload after the symlink swap', () => gw.store.current.version !== v1)
    // the new limit is in force (a fresh bucket of the new policy's shape)
    expect(gw.store.current.routes[0]!.limits[0]!.rateText).toBe('1000/s')

    const v2 = gw.store.current.version
    publish(3, limited('fast'))
    await until('the refused reload', () => gw.store.lastError !== null)
    expect(gw.store.current.version).toBe(v2)
    expect(gw.store.lastError!.errors.map((e) => e.message)).toEqual(['`rate` must look like `100/s` (a rate), not "fast"'])

    publish(4, limited('5/s'))
    await until('the next good reload', () => gw.store.current.version !== v2)
    expect(gw.store.lastError).toBeNull()
    expect(gw.store.current.routes[0]!.limits[0]!.rateText).toBe('5/s')
  })
})
