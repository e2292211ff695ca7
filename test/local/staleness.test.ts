/**
 * A document older than ten refresh intervals is stale: the status marks it with its age, and
 * `/readyz` names it in `warnings` while staying 200 (an outage is when local answers matter).
 * The pure rule on a stepped clock; the gateway on a document restored from a state file that
 * Core confirmed an hour ago, with Core unreachable (no waiting on time passing).
 */
import { writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { LocalDocuments } from '../../src/local/documents.js'
import { keyDigest } from '../../src/local/outbox.js'
import { readinessWarnings, stalenessOf } from '../../src/local/staleness.js'
import { startTestGateway, type TestGateway } from '../support/gateway.js'
import { json, raw } from '../support/http.js'
import { richDocument } from './document.js'
import { localYaml, stateDir, untilRefreshed } from './support.js'

const SERVER = 'ser.rich_server_key'
const open: TestGateway[] = []
afterEach(async () => { for (const g of open.splice(0)) await g.close() })

describe('stale local documents', () => {
  it('stale only past 10 × refresh since Core last confirmed it, on a stepped clock', () => {
    const docs = new LocalDocuments([SERVER])
    const state = docs.states.get(SERVER)!
    expect(stalenessOf(state, 10_000, 0)).toEqual({ ageSeconds: null, stale: false, staleAfterSeconds: 100 })
    docs.install(state, Buffer.from(JSON.stringify(richDocument())), undefined, 1_000_000)
    expect(stalenessOf(state, 10_000, 1_000_000 + 100_000)).toEqual({ ageSeconds: 100, stale: false, staleAfterSeconds: 100 })
    expect(readinessWarnings(docs.states.values(), 10_000, 1_000_000 + 100_000)).toEqual([])
    expect(stalenessOf(state, 10_000, 1_000_000 + 100_200)).toEqual({ ageSeconds: 100.2, stale: true, staleAfterSeconds: 100 })
    const [w] = readinessWarnings(docs.states.values(), 10_000, 1_000_000 + 100_200)
    expect(w).toMatch(/^local document for ser\..+ older than 100s \(age 100\.2s\)$/)
    expect(w).not.toContain('rich_server_key')
    // Core confirms it again (a 304): fresh
    state.confirmedAt = 1_000_000 + 100_200
    expect(stalenessOf(state, 10_000, 1_000_000 + 100_300).stale).toBe(false)
  })

  it('the gateway: status marks it stale with its age, /readyz names it and stays 200', async () => {
    // a port nothing listens on: Core unreachable
    const dead = createServer()
    await new Promise<void>((r) => dead.listen(0, '127.0.0.1', r))
    const port = (dead.address() as { port: number }).port
    await new Promise<void>((r) => dead.close(() => r()))
    const dir = stateDir()
    const confirmedAt = Date.now() - 3600_000
    writeFileSync(join(dir, 'state.json'), JSON.stringify({ v: 1, outbox: { v: 1, writes: [], analytics: {} }, documents: { [keyDigest(SERVER)]: { raw: JSON.stringify(richDocument()), lastModified: undefined, confirmedAt } } }))
    const gw = await startTestGateway(localYaml(`http://127.0.0.1:${port}`, `  mode: fallback\n  refresh: 10s\n  stateFile: ${join(dir, 'state.json')}\n  environments:\n    - serverKey: ${SERVER}`), { watch: false })
    open.push(gw)
    const env = await untilRefreshed(gw, 'error')
    expect(env.stale).toBe(true)
    expect(env.documentAgeSeconds as number).toBeGreaterThanOrEqual(3600)
    const s = json(await raw(gw.adminUrl, '/admin/status', { headers: { authorization: 'Bearer a-very-long-admin-token' } })) as { localEvaluation: { staleAfterSeconds: number } }
    expect(s.localEvaluation.staleAfterSeconds).toBe(100)
    const ready = await raw(gw.url, '/readyz')
    expect(ready.status).toBe(200)
    const body = json(ready) as { status: string; warnings: string[] }
    expect(body.status).toBe('ready')
    expect(body.warnings).toHaveLength(1)
    expect(body.warnings[0]).toMatch(/^local document for ser\..+ older than 100s \(age \d+(\.\d)?s\)$/)
    // and the flags are still answered from it
    const flags = await raw(gw.url, '/api/v1/flags/', { headers: { 'x-environment-key': 'client_rich' } })
    expect([flags.status, flags.headers['x-flaggate-source']]).toEqual([200, 'local'])
  })
})
