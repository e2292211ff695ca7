/**
 * A cache fill is built from an allow-list and the request's resolved state, never from the raw
 * headers of the client that happened to start it: one hostile client cannot poison the document
 * every other client of the key gets.
 */
import { describe, expect, it } from 'vitest'
import { DEV_KEY, ENV_DOC, envDoc, startCached } from '../cache/support.js'

describe('cache fill headers', () => {
  it('a request with Connection: x-environment-key starting a fill neither poisons the document nor makes Core see a key-less request', async () => {
    const { core, gw } = await startCached({ rule: { ttl: '30s' } })
    const hostile = await envDoc(gw, DEV_KEY, { connection: 'keep-alive, x-environment-key' })
    expect(hostile.status).toBe(200)
    expect(hostile.headers['x-cache-status']).toBe('MISS')
    const fills = core.requests.filter((r) => r.path === ENV_DOC)
    expect(fills).toHaveLength(1)
    expect(fills[0]!.headers['x-environment-key']).toBe(DEV_KEY)
    expect(fills[0]!.status).toBe(200)
    const next = await envDoc(gw, DEV_KEY)
    expect([next.status, next.headers['x-cache-status']]).toEqual([200, 'HIT'])
    expect(next.body.equals(hostile.body)).toBe(true)
  })

  it('hostile extra headers (Authorization, Cookie, conditionals, Range) never reach Core on a fill', async () => {
    const { core, gw } = await startCached({ rule: { ttl: '30s' } })
    const r = await envDoc(gw, DEV_KEY, {
      authorization: 'Token someone-elses',
      cookie: 'sessionid=abc',
      'if-none-match': '"stale"',
      'if-modified-since': new Date(Date.now() + 86_400_000).toUTCString(),
      range: 'bytes=0-1',
      'x-forwarded-for': '6.6.6.6',
      'x-real-ip': '6.6.6.6',
      'accept-encoding': 'gzip',
      'user-agent': 'flagsmith-nodejs-sdk/8.1.2',
      accept: 'application/json'
    })
    expect(r.status).toBe(200)
    const h = core.requests.find((q) => q.path === ENV_DOC)!.headers
    for (const name of ['authorization', 'cookie', 'if-none-match', 'range']) expect(h[name], name).toBeUndefined()
    expect(h['if-modified-since']).toBeUndefined()
    // the fill's own: the stored body is decoded, whatever the client accepts (src/compress/decode.ts)
    expect(h['accept-encoding']).toBe('gzip, br')
    expect(h['x-forwarded-for']).toBe('127.0.0.1')
    expect(h['x-real-ip']).toBe('127.0.0.1')
    expect(h['user-agent']).toBe('flagsmith-nodejs-sdk/8.1.2')
    expect(h.accept).toBe('application/json')
    expect(h['x-environment-key']).toBe(DEV_KEY)
    expect(h.host).toBe(new URL(core.url).host)
    const next = await envDoc(gw, DEV_KEY)
    expect([next.status, next.headers['x-cache-status']]).toEqual([200, 'HIT'])
    expect(next.body.equals(r.body)).toBe(true)
  })
})
