/**
 * Issue 7, "`identities?identifier=…` is logged in full": user identifiers are personal data.
 * The access log redacts them (like keys: first characters and a short hash) wherever a client
 * can put them, while Core still receives them as sent; and the metrics, now their own hook,
 * still count every request.
 */
import { describe, expect, it } from 'vitest'
import { startRecordingUpstream } from '../support/recording-upstream.js'
import { rawExchange } from '../support/http.js'
import { redactKey } from '../../src/shared/redact.js'
import { useGateway } from '../support/use-gateway.js'

const t = useGateway({ upstream: startRecordingUpstream })

async function logged (target: string, id: string): Promise<string> {
  const r = await rawExchange(t.gw.url, `GET ${target} HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\nX-Request-Id: ${id}\r\nX-Environment-Key: dev_client_key\r\n\r\n`)
  expect(r.status).toBe(200)
  const line = t.gw.logs.lines.find((l) => l.reqId === id)
  return line?.url as string
}

describe('the access log redacts user identifiers', () => {
  it('identifier= in the query, as Core receives it unredacted', async () => {
    t.upstream.reset()
    const url = await logged('/api/v1/identities/?identifier=alice%40example.com&transient=true', 'id-1')
    expect(url).toBe(`/api/v1/identities/?identifier=${redactKey('alice@example.com')}&transient=true`)
    expect(url).toMatch(/identifier=alic…[0-9a-f]{8}&/)
    expect(t.upstream.calls.map((c) => c.rawPath)).toEqual(['/api/v1/identities/?identifier=alice%40example.com&transient=true'])
  })

  it('identifier= on any route, in any position, and with its name percent-encoded', async () => {
    expect(await logged('/api/v1/flags/?feature=x&identifier=bob-secret', 'id-2')).toBe(`/api/v1/flags/?feature=x&identifier=${redactKey('bob-secret')}`)
    expect(await logged('/api/v1/identities/?%69dentifier=carol-secret', 'id-3')).toBe(`/api/v1/identities/?%69dentifier=${redactKey('carol-secret')}`)
  })

  it('the legacy SDK paths that carry the identity', async () => {
    expect(await logged('/api/v1/identities/dave-secret/', 'id-4')).toBe(`/api/v1/identities/${redactKey('dave-secret')}/`)
    expect(await logged('/api/v1/flags/erin-secret', 'id-5')).toBe(`/api/v1/flags/${redactKey('erin-secret')}`)
  })

  it('keys in dashboard API paths stay redacted, whatever their spelling (the canonical path is logged)', async () => {
    expect(await logged('/api/v1/%65nvironments/frank_env_key/featurestates/', 'id-6')).toBe(`/api/v1/environments/${redactKey('frank_env_key')}/featurestates/`)
  })

  it('no identifier or key appears in full anywhere in the log, and the metrics still count each request', async () => {
    const all = JSON.stringify(t.gw.logs.lines)
    for (const secret of ['alice', 'bob-secret', 'carol-secret', 'dave-secret', 'erin-secret', 'frank_env_key', 'dev_client_key']) expect(all).not.toContain(secret)
    const text = await t.gw.metrics.registry.metrics()
    // identities: id-1 and id-3; flags: id-2; default: the legacy and dashboard paths
    expect(text).toContain('flaggate_requests_total{route="identities",decision="allowed",status="200"} 2')
    expect(text).toContain('flaggate_requests_total{route="flags",decision="allowed",status="200"} 1')
    expect(text).toContain('flaggate_requests_total{route="default",decision="allowed",status="200"} 3')
  })
})
