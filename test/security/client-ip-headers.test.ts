/**
 * Attack 19: client-IP headers the client invented reach Core. Behind a trusted load balancer
 * (which appends to X-Forwarded-For but passes every other header through as the client wrote
 * it), `Forwarded`, `True-Client-IP` & co. were forwarded untouched; Core (Django) reads them, and
 * reads `True_Client_IP` as the same META name.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startRecordingUpstream, type RecordingUpstream } from '../support/recording-upstream.js'
import { policyYaml, startTestGateway, type TestGateway } from '../support/gateway.js'
import { rawExchange } from '../support/http.js'
import { TRUST_LOOPBACK } from './support.js'

let up: RecordingUpstream
let gw: TestGateway

beforeAll(async () => {
  up = await startRecordingUpstream()
  gw = await startTestGateway(policyYaml({ coreUrl: up.url, server: TRUST_LOOPBACK }))
})
afterAll(async () => { await gw?.close(); await up?.close() })

const INVENTED = ['Forwarded: for=6.6.6.6', 'True-Client-IP: 6.6.6.6', 'X-Client-IP: 6.6.6.6', 'CF-Connecting-IP: 6.6.6.6', 'Fastly-Client-IP: 6.6.6.6', 'X-Cluster-Client-IP: 6.6.6.6']

describe('attack 19: invented client-IP headers', () => {
  it('never reach Core, even through a trusted proxy; Core gets the vouched address only', async () => {
    // raw bytes as a load balancer would pass them on: X-Forwarded-For appended, the rest as sent
    const req = ['GET /api/v1/flags/ HTTP/1.1', 'Host: gw', 'X-Environment-Key: k1', 'X-Forwarded-For: 203.0.113.9', ...INVENTED,
      'True_Client_IP: 6.6.6.6', 'X_Forwarded_For: 6.6.6.6', 'X_Real_IP: 6.6.6.6', 'Connection: close', '', ''].join('\r\n')
    const r = await rawExchange(gw.url, req)
    expect(r.status).toBe(200)
    const h = up.calls.at(-1)!.headers
    for (const name of ['forwarded', 'true-client-ip', 'x-client-ip', 'cf-connecting-ip', 'fastly-client-ip', 'x-cluster-client-ip', 'true_client_ip', 'x_forwarded_for', 'x_real_ip']) {
      expect(h[name], name).toBeUndefined()
    }
    expect(h['x-forwarded-for']).toBe('203.0.113.9, 127.0.0.1')
    expect(h['x-real-ip']).toBe('203.0.113.9')
    expect(JSON.stringify(up.calls.at(-1)!.rawHeaders)).not.toContain('6.6.6.6')
  })
})
