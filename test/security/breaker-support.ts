/**
 * Shared by the breaker attacks: a Core stand-in that answers GETs at once and holds POSTs until
 * the test lets them go (their latency is then as long as the test decides, not as the machine
 * manages), and a gateway that believes X-Forwarded-For from loopback so that one test process
 * can speak as many client addresses.
 */
import type { ServerResponse } from 'node:http'
import { onTestFinished } from 'vitest'
import { startRecordingUpstream, type RecordingUpstream } from '../support/recording-upstream.js'
import { policyYaml, startTestGateway, type TestGateway } from '../support/gateway.js'
import { raw, type RawResponse } from '../support/http.js'

export interface HoldingCore extends RecordingUpstream {
  /** POSTs received and not answered yet */
  held: () => number
  /** answers every held POST (and every later one at once) */
  release: () => void
}

export async function startHoldingCore (): Promise<HoldingCore> {
  const held: ServerResponse[] = []
  let releasing = false
  const up = await startRecordingUpstream((call, res) => {
    if (call.method === 'POST' && !releasing) { held.push(res); return }
    res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}')
  })
  onTestFinished(up.close)
  return Object.assign(up, {
    held: () => held.length,
    release: () => {
      releasing = true
      for (const res of held.splice(0)) res.writeHead(200, { 'content-type': 'application/json' }).end('{"identifier":"x","flags":[],"traits":[]}')
    }
  })
}

export async function gatewayInFrontOf (core: HoldingCore, breaker: string): Promise<TestGateway> {
  const gw = await startTestGateway(policyYaml({
    coreUrl: core.url,
    coreTimeout: '30s',
    server: '  trustedProxies: [127.0.0.1/32]',
    extra: `breakers:\n  core:\n${breaker.split('\n').map((l) => `    ${l}`).join('\n')}\n`
  }), { watch: false })
  onTestFinished(gw.close)
  return gw
}

export const IDENTITIES = '/api/v1/identities/'
export const FLAGS = '/api/v1/flags/'

/** One request as the client `key` from address `ip`. */
export async function as (gw: TestGateway, key: string, ip: string, method: 'GET' | 'POST', path: string): Promise<RawResponse> {
  const headers: Record<string, string> = { 'x-environment-key': key, 'x-forwarded-for': ip }
  if (method === 'POST') headers['content-type'] = 'application/json'
  return await raw(gw.url, path, { method, headers, body: method === 'POST' ? '{"identifier":"x","traits":[]}' : undefined, timeoutMs: 60_000 })
}

export async function breakerState (gw: TestGateway): Promise<{ state: string; reason: string | null; inFlight: number; limit: number | null }> {
  const r = await raw(gw.adminUrl, '/admin/status')
  return (JSON.parse(r.body.toString()) as { breakers: Record<string, { state: string; reason: string | null; inFlight: number; limit: number | null }> }).breakers.core!
}
