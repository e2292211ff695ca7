/**
 * The gunicorn-like Core model, on real sockets. Workers are held with `pauseDb()` (a stepped clock:
 * nothing here depends on how long anything takes), and every wait is on the model's own counters.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { connect } from 'node:net'
import { raw, type RawResponse } from './http.js'
import { DEFAULT_ROUND_TRIPS, endpointOf, startGunicornCore, type GunicornCore, type GunicornCoreStats } from './gunicorn-core.js'

const CLIENT = 'dev_client_key'
const SERVER = 'ser.dev_server_key'
const open: GunicornCore[] = []

afterEach(async () => { for (const m of open.splice(0)) await m.close() })

async function model (opts: Parameters<typeof startGunicornCore>[0] = {}): Promise<GunicornCore> {
  const m = await startGunicornCore({ appMs: { flags: 0, identities: 0, 'environment-document': 0, rejected: 0, other: 0 }, dbLatencyMs: 0, ...opts })
  open.push(m)
  return m
}

/** Waits until the model's counters satisfy `ok` (an event the model reaches, not a duration). */
async function until (m: GunicornCore, ok: (s: GunicornCoreStats) => boolean): Promise<GunicornCoreStats> {
  const deadline = Date.now() + 10_000
  for (;;) {
    const s = m.stats()
    if (ok(s)) return s
    if (Date.now() > deadline) throw new Error(`model never reached the state; last: ${JSON.stringify(s)}`)
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

const flags = async (m: GunicornCore, key = CLIENT): Promise<RawResponse> => await raw(m.url, '/api/v1/flags/', { headers: { 'X-Environment-Key': key } })

/** Sends one GET on a fresh socket and closes the socket at once: a client that gave up. */
async function sendAndLeave (m: GunicornCore, path: string, key: string): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const s = connect(m.port, '127.0.0.1', () => {
      s.end(`GET ${path} HTTP/1.1\r\nHost: x\r\nX-Environment-Key: ${key}\r\n\r\n`, () => { s.destroy(); resolve() })
    })
    s.on('error', reject)
  })
}

describe('gunicorn-like Core model', () => {
  it("answers with the fake Core's shapes, one request per connection, as gunicorn does", async () => {
    const m = await model()
    const res = await flags(m)
    expect(res.status).toBe(200)
    expect(res.headers.connection).toBe('close')
    expect(res.headers.server).toBe('gunicorn')
    const body = JSON.parse(res.body.toString()) as Array<{ feature: { name: string } }>
    expect(body.map((f) => f.feature.name)).toEqual(['banner', 'max_items', 'dark_mode'])
    expect((await flags(m, 'nope')).status).toBe(403)
    const doc = await raw(m.url, '/api/v1/environment-document/', { headers: { 'X-Environment-Key': SERVER } })
    expect(doc.status).toBe(200)
    const notModified = await raw(m.url, '/api/v1/environment-document/', { headers: { 'X-Environment-Key': SERVER, 'If-Modified-Since': doc.headers['last-modified'] as string } })
    expect(notModified.status).toBe(304)
    expect(notModified.body.length).toBe(0)
    const ident = await raw(m.url, '/api/v1/identities/', { method: 'POST', headers: { 'X-Environment-Key': CLIENT, 'Content-Type': 'application/json' }, body: JSON.stringify({ identifier: 'u1', traits: [{ trait_key: 'plan', trait_value: 'pro' }], transient: true }) })
    expect(ident.status).toBe(200)
    expect((JSON.parse(ident.body.toString()) as { flags: Array<{ feature_state_value: unknown }> }).flags[0]?.feature_state_value).toBe('pro banner')
    const s = m.stats()
    expect(s.byEndpoint).toMatchObject({ flags: 1, rejected: 1, 'environment-document': 1, 'environment-document-304': 1, identities: 1 })
    expect(s.roundTrips).toBe(DEFAULT_ROUND_TRIPS.flags + DEFAULT_ROUND_TRIPS.rejected + DEFAULT_ROUND_TRIPS['environment-document'] +
      DEFAULT_ROUND_TRIPS['environment-document-304'] + DEFAULT_ROUND_TRIPS.identities)
  })

  it('never works on more than N requests at once; the rest wait in the backlog, then are served', async () => {
    const m = await model({ workers: 2, backlog: 16 })
    m.pauseDb()
    const answers = Array.from({ length: 7 }, async () => await flags(m))
    const held = await until(m, (s) => s.busy === 2 && s.queued === 5)
    expect(held.completed).toBe(0)
    m.resumeDb()
    const all = await Promise.all(answers)
    expect(all.map((r) => r.status)).toEqual([200, 200, 200, 200, 200, 200, 200])
    const s = m.stats()
    expect(s.maxBusySeen).toBe(2)
    expect(s.maxQueuedSeen).toBe(5)
    expect(s.completed).toBe(7)
    expect(s.abandoned).toBe(0)
    expect(s.refused).toBe(0)
  })

  it('works to the end on requests whose client left, in the worker and in the backlog, and counts them', async () => {
    const m = await model({ workers: 1, backlog: 8 })
    m.pauseDb()
    await sendAndLeave(m, '/api/v1/flags/', CLIENT) // taken by the only worker
    await until(m, (s) => s.busy === 1)
    await sendAndLeave(m, '/api/v1/environment-document/', SERVER) // waits in the backlog, unread
    await sendAndLeave(m, '/api/v1/flags/', CLIENT)
    await until(m, (s) => s.queued === 2)
    const stillThere = flags(m)
    await until(m, (s) => s.queued === 3)
    m.resumeDb()
    expect((await stillThere).status).toBe(200)
    const s = await until(m, (x) => x.completed === 4)
    expect(s.abandoned).toBe(3)
    // the abandoned document cost all its queries although nobody read it
    expect(s.byEndpoint['environment-document']).toBe(1)
    expect(s.roundTrips).toBe(3 * DEFAULT_ROUND_TRIPS.flags + DEFAULT_ROUND_TRIPS['environment-document'])
    expect(s.maxBusySeen).toBe(1)
  })

  it('resets connections beyond the backlog, as a full listen queue does', async () => {
    const m = await model({ workers: 1, backlog: 2 })
    m.pauseDb()
    const served = [flags(m)]
    await until(m, (s) => s.busy === 1)
    served.push(flags(m), flags(m))
    await until(m, (s) => s.queued === 2)
    const refused = await flags(m).then(() => 'answered', (err: NodeJS.ErrnoException) => err.code)
    expect(refused).toBe('ECONNRESET')
    expect(m.stats().refused).toBe(1)
    m.resumeDb()
    expect((await Promise.all(served)).map((r) => r.status)).toEqual([200, 200, 200])
    expect(m.stats()).toMatchObject({ accepted: 3, refused: 1, completed: 3 })
  })

  it('takes roundTrips × the database latency per request, and the latency can be changed while it runs', async () => {
    const m = await model({ workers: 1 })
    const timed = async (): Promise<number> => { const t0 = performance.now(); expect((await flags(m)).status).toBe(200); return performance.now() - t0 }
    m.setDbLatency(40)
    expect(m.dbLatency()).toBe(40)
    // timers never fire early by more than their 1 ms rounding, so this lower bound is not luck
    expect(await timed()).toBeGreaterThanOrEqual(DEFAULT_ROUND_TRIPS.flags * 39)
    // raised while a request is held at its first round trip: the rest of its trips take the new latency
    m.setDbLatency(0)
    m.pauseDb()
    const t0 = performance.now()
    const pending = flags(m)
    await until(m, (s) => s.busy === 1)
    m.setDbLatency(60)
    m.resumeDb()
    expect((await pending).status).toBe(200)
    expect(performance.now() - t0).toBeGreaterThanOrEqual(DEFAULT_ROUND_TRIPS.flags * 59)
    expect(() => m.setDbLatency(-1)).toThrow(RangeError)
  })

  it('frees a worker from a connection that never sends a request', async () => {
    const m = await model({ workers: 1, readTimeoutMs: 200 })
    const idle = connect(m.port, '127.0.0.1')
    idle.on('error', () => {})
    await until(m, (s) => s.busy === 1)
    const next = flags(m)
    await until(m, (s) => s.queued === 1)
    expect((await next).status).toBe(200) // after the worker's read timeout dropped the idle one
    expect(m.stats().empty).toBe(1)
    idle.destroy()
  })

  it('prices each answer by what it turned out to be', () => {
    expect(endpointOf('GET', '/api/v1/environment-document/', 200)).toBe('environment-document')
    expect(endpointOf('GET', '/api/v1/environment-document/', 304)).toBe('environment-document-304')
    expect(endpointOf('GET', '/api/v1/flags/?feature=x', 404)).toBe('flags')
    expect(endpointOf('GET', '/api/v1/flags/', 403)).toBe('rejected')
    expect(endpointOf('GET', '/api/v1/flags', 301)).toBe('other')
    expect(endpointOf('POST', '/api/v1/identities/', 200)).toBe('identities')
    expect(endpointOf('POST', '/api/v2/analytics/flags/', 204)).toBe('analytics')
  })
})
