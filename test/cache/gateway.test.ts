import { connect, type Socket } from 'node:net'
import { describe, expect, it } from 'vitest'
import { signWebhook, webhookBody, INVALID_KEY_DETAIL, CORE_NEVER_CACHE } from '../support/fake-flagsmith.js'
import { json, raw } from '../support/http.js'
import { DEV_KEY, ENV_DOC, PROD_KEY, PROD_KEY_2, WEBHOOK_SECRET, envDoc, eventually, sleep, startCached } from './support.js'

describe('environment-document cache through the gateway', () => {
  it('500 concurrent cold requests for one key make one request to Core', async () => {
    const { core, gw } = await startCached({ core: { db: { queryLatencyMs: 20 } } })
    const responses = await Promise.all(Array.from({ length: 500 }, async () => await envDoc(gw, DEV_KEY)))
    expect(core.counts(ENV_DOC, DEV_KEY)).toBe(1)
    const first = responses[0]!.body.toString()
    for (const r of responses) {
      expect(r.status).toBe(200)
      expect(['MISS', 'HIT']).toContain(r.headers['x-cache-status'])
      expect(r.body.toString()).toBe(first)
    }
    expect(responses.filter((r) => r.headers['x-cache-status'] === 'MISS').length).toBeGreaterThan(0)
    expect(JSON.parse(first)).toMatchObject({ id: 1, api_key: 'dev_client_key' })
  })

  it('MISS then HIT, with the gateway\'s own caching headers and Core\'s replayed ones', async () => {
    const { core, gw } = await startCached({ rule: { ttl: '30s' } })
    const miss = await envDoc(gw, DEV_KEY)
    expect(miss.status).toBe(200)
    expect(miss.headers['x-cache-status']).toBe('MISS')
    expect(miss.headers['x-flaggate-upstream']).toBe('core')
    const hit = await envDoc(gw, DEV_KEY)
    expect(hit.status).toBe(200)
    expect(hit.body.equals(miss.body)).toBe(true)
    expect(hit.headers).toMatchObject({
      'x-cache-status': 'HIT',
      'x-flaggate-upstream': 'none',
      'content-type': expect.stringMatching(/^application\/json/) as unknown as string,
      // the document is over 1 KB: it is also offered compressed (docs/compression.md)
      vary: 'X-Environment-Key, Accept-Encoding',
      'last-modified': miss.headers['last-modified'],
      etag: miss.headers.etag,
      'x-flagsmith-document-updated-at': miss.headers['x-flagsmith-document-updated-at']
    })
    expect(hit.headers['cache-control']).toMatch(/^private, max-age=(29|30)$/)
    expect(hit.headers['cache-control']).not.toBe(CORE_NEVER_CACHE)
    expect(hit.headers.etag).toMatch(/^"[A-Za-z0-9_-]{43}"$/)
    expect(hit.headers['content-length']).toBe(String(hit.body.length))
    expect(core.counts(ENV_DOC)).toBe(1)

    const head = await envDoc(gw, DEV_KEY, {}, ENV_DOC, 'HEAD')
    expect(head.status).toBe(200)
    expect(head.body.length).toBe(0)
    expect(head.headers['content-length']).toBe(String(hit.body.length))
    expect(head.headers['x-cache-status']).toBe('HIT')
  })

  it('hits pipelined on one connection are answered in order, each whole, with the limiter\'s headers', async () => {
    // fresh hits are written straight to the socket, at the end of the turn that read them (cache/plugin.ts TurnWriter)
    const { core, gw } = await startCached({ rule: { ttl: '30s' }, limit: '{ rate: 100/s, burst: 100, by: [environmentKey] }' })
    const filled = await envDoc(gw, DEV_KEY)
    const etag = filled.headers.etag!
    const req = (method: string, id: string, extra = '') => `${method} ${ENV_DOC} HTTP/1.1\r\nHost: gw\r\nX-Environment-Key: ${DEV_KEY}\r\nX-Request-Id: ${id}\r\n${extra}\r\n`
    const wire = req('GET', 'p1') + req('HEAD', 'p2') + req('GET', 'p3', `If-None-Match: ${etag}\r\n`) + req('GET', 'p4')
    const { port } = new URL(gw.url)
    const bytes = await new Promise<Buffer>((resolve, reject) => {
      const chunks: Buffer[] = []
      const socket = connect(Number(port), '127.0.0.1', () => { socket.write(wire) })
      socket.on('data', (c: Buffer) => {
        chunks.push(c)
        // four answers: the last is the second full body
        if (Buffer.concat(chunks).toString('latin1').split('HTTP/1.1 ').length === 5 && Buffer.concat(chunks).length >= 2 * filled.body.length) { socket.end(); resolve(Buffer.concat(chunks)) }
      })
      socket.on('error', reject)
    })
    const text = bytes.toString('latin1')
    const answers = text.split(/(?=HTTP\/1\.1 \d{3} )/)
    expect(answers.map((a) => a.slice(9, 12))).toEqual(['200', '200', '304', '200'])
    for (const [i, a] of answers.entries()) {
      expect(a).toMatch(/\r\nx-cache-status: HIT\r\n/)
      // the 304 is answered before the limiter (it costs no token), so it carries no RateLimit
      if (i === 2) { expect(a).not.toMatch(/\r\nratelimit/); continue }
      expect(a).toMatch(/\r\nratelimit-policy: "environment-document";q=100;w=1\r\n/)
      expect(a).toMatch(/\r\nratelimit: "environment-document";r=\d+;t=\d+\r\n/)
    }
    const body = filled.body.toString('latin1')
    expect(answers[0]!.endsWith('\r\n\r\n' + body)).toBe(true)
    expect(answers[1]!.endsWith('\r\n\r\n')).toBe(true) // HEAD: the headers, no body
    expect(answers[1]).toContain(`\r\ncontent-length: ${filled.body.length}\r\n`)
    expect(answers[2]!.endsWith('\r\n\r\n')).toBe(true)
    expect(answers[3]!.endsWith('\r\n\r\n' + body)).toBe(true)
    expect(core.counts(ENV_DOC)).toBe(1)
  })

  it('hits whose client is gone before the turn\'s answers are written: nothing breaks, the next client is answered', async () => {
    // answers from memory are written at the end of the event-loop turn that read them
    // (cache/plugin.ts TurnWriter): a client resetting its connection in between must cost nothing
    const { core, gw } = await startCached({ rule: { ttl: '30s' } })
    const filled = await envDoc(gw, DEV_KEY)
    const { port } = new URL(gw.url)
    const req = (extra = '') => `GET ${ENV_DOC} HTTP/1.1\r\nHost: gw\r\nX-Environment-Key: ${DEV_KEY}\r\n${extra}\r\n`
    await Promise.all(Array.from({ length: 40 }, async (_, i) => await new Promise<void>((resolve) => {
      const socket = connect(Number(port), '127.0.0.1', () => {
        socket.write(req() + req(i % 2 === 0 ? `If-None-Match: ${filled.headers.etag!}\r\n` : ''))
        // an RST right behind the requests: the gateway reads them and finds the socket gone
        setImmediate(() => { socket.resetAndDestroy(); resolve() })
      })
      socket.on('error', () => resolve())
    })))
    const after = await Promise.all(Array.from({ length: 5 }, async () => await envDoc(gw, DEV_KEY)))
    for (const r of after) {
      expect(r.status).toBe(200)
      expect(r.headers['x-cache-status']).toBe('HIT')
      expect(r.body.equals(filled.body)).toBe(true)
    }
    expect(core.counts(ENV_DOC)).toBe(1)
  })

  it('hits of different keys answered in the same turn: each client gets its own key\'s document', async () => {
    // one turn's answers go out together (cache/plugin.ts TurnWriter): each must stay with its
    // request. Pipelined on connections opened beforehand, so that one read holds several requests.
    const { core, gw } = await startCached({ rule: { ttl: '30s' } })
    const keys = [DEV_KEY, PROD_KEY, PROD_KEY_2]
    const own = new Map<string, Buffer>()
    for (const k of keys) own.set(k, (await envDoc(gw, k)).body)
    // two environments; PROD_KEY_2 is a second key of the production one (a separate entry)
    expect(own.get(DEV_KEY)!.equals(own.get(PROD_KEY)!)).toBe(false)
    const { port } = new URL(gw.url)
    const sockets = await Promise.all(Array.from({ length: 8 }, async () => await new Promise<Socket>((resolve, reject) => {
      const socket = connect(Number(port), '127.0.0.1', () => { resolve(socket) })
      socket.on('error', reject)
    })))
    const orders = sockets.map((_, c) => Array.from({ length: 6 }, (_, i) => keys[(c + i) % 3]!))
    const replies = sockets.map(async (socket, c) => await new Promise<Buffer[]>((resolve) => {
      let buf = Buffer.alloc(0)
      socket.on('data', (chunk: Buffer) => {
        buf = Buffer.concat([buf, chunk])
        const bodies = splitAnswers(buf)
        if (bodies.length === orders[c]!.length) { socket.end(); resolve(bodies) }
      })
    }))
    for (const [c, socket] of sockets.entries()) {
      socket.write(orders[c]!.map((k) => `GET ${ENV_DOC} HTTP/1.1\r\nHost: gw\r\nX-Environment-Key: ${k}\r\n\r\n`).join(''))
    }
    for (const [c, bodies] of (await Promise.all(replies)).entries()) {
      for (const [i, body] of bodies.entries()) expect(body.equals(own.get(orders[c]![i]!)!)).toBe(true)
    }
    expect(core.counts(ENV_DOC)).toBe(3)
  })

  it('UPDATING serves stale while one refresh runs; Core\'s 304 refreshes the entry', async () => {
    const { core, gw } = await startCached({ rule: { ttl: '1s', staleWhileRevalidate: '30s' }, core: { db: { queryLatencyMs: 50 } } })
    const first = await envDoc(gw, DEV_KEY)
    await sleep(1100)
    // the refresh (one query for Core's 304) outlasts the 20 requests however busy the machine is
    core.db.queryLatencyMs = 1500
    const during = await Promise.all(Array.from({ length: 20 }, async () => await envDoc(gw, DEV_KEY)))
    for (const r of during) {
      expect(r.status).toBe(200)
      expect(r.headers['x-cache-status']).toBe('UPDATING')
      expect(r.headers['cache-control']).toBe('private, max-age=0')
      expect(r.body.equals(first.body)).toBe(true)
    }
    expect(await eventually(async () => (await envDoc(gw, DEV_KEY)).headers['x-cache-status'] === 'HIT', 10_000)).toBe(true)
    expect(core.counts(ENV_DOC, DEV_KEY)).toBe(2)
    // the refresh was conditional and Core said 304: same body, same validators
    const refresh = core.requests.filter((r) => r.path === ENV_DOC)[1]!
    expect(refresh.headers['if-modified-since']).toBe(first.headers['last-modified'])
    expect(refresh.status).toBe(304)
    const after = await envDoc(gw, DEV_KEY)
    expect(after.headers.etag).toBe(first.headers.etag)
  })

  it('BYPASS without X-Environment-Key: Core answers, nothing is cached', async () => {
    const { core, gw } = await startCached()
    for (let i = 0; i < 3; i++) {
      const r = await envDoc(gw, undefined)
      expect(r.status).toBe(403)
      expect(r.headers['x-cache-status']).toBe('BYPASS')
      expect(r.headers['x-flaggate-upstream']).toBe('core')
    }
    expect(core.counts(ENV_DOC, '')).toBe(3)
  })

  it('If-None-Match and If-Modified-Since get 304 from memory', async () => {
    const { core, gw } = await startCached()
    const first = await envDoc(gw, DEV_KEY)
    const etag = first.headers.etag!
    const byEtag = await envDoc(gw, DEV_KEY, { 'if-none-match': etag })
    expect(byEtag.status).toBe(304)
    expect(byEtag.body.length).toBe(0)
    expect(byEtag.headers).toMatchObject({ etag, 'x-cache-status': 'HIT', 'x-flaggate-upstream': 'none' })
    expect((await envDoc(gw, DEV_KEY, { 'if-none-match': `W/${etag}` })).status).toBe(304)
    expect((await envDoc(gw, DEV_KEY, { 'if-none-match': '"something-else"' })).status).toBe(200)
    const byDate = await envDoc(gw, DEV_KEY, { 'if-modified-since': first.headers['last-modified']! })
    expect(byDate.status).toBe(304)
    expect(byDate.headers['last-modified']).toBe(first.headers['last-modified'])
    const older = new Date(Date.parse(first.headers['last-modified']!) - 1000).toUTCString()
    expect((await envDoc(gw, DEV_KEY, { 'if-modified-since': older })).status).toBe(200)
    // another key's validators are worth nothing
    expect((await envDoc(gw, PROD_KEY, { 'if-none-match': etag })).status).toBe(200)
    expect(core.counts(ENV_DOC, DEV_KEY)).toBe(1)
  })

  it('a 304 given after a lookup names that lookup: MISS from Core on a cold key', async () => {
    const { core, gw } = await startCached()
    const etag = (await envDoc(gw, DEV_KEY)).headers.etag!
    // purge: the next request must go to Core, and its 304 must say so
    expect((await raw(gw.adminUrl, '/admin/cache/purge', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' })).status).toBe(200)
    const cold = await envDoc(gw, DEV_KEY, { 'if-none-match': etag })
    expect(cold.status).toBe(304)
    expect(cold.headers).toMatchObject({ 'x-cache-status': 'MISS', 'x-flaggate-upstream': 'core', etag })
    expect(core.counts(ENV_DOC, DEV_KEY)).toBe(2)
  })

  it('a 304 costs no rate-limit token', async () => {
    const { gw } = await startCached({ limit: '{ by: environmentKey, rate: 1/m, burst: 2 }' })
    const first = await envDoc(gw, DEV_KEY)
    expect(first.status).toBe(200)
    for (let i = 0; i < 20; i++) expect((await envDoc(gw, DEV_KEY, { 'if-none-match': first.headers.etag! })).status).toBe(304)
    expect((await envDoc(gw, DEV_KEY)).status).toBe(200)
    expect((await envDoc(gw, DEV_KEY)).status).toBe(429)
  })

  it('Core down: stale within staleIfError, then a clear 502; Core hanging: 504 after it', async () => {
    const { core, gw } = await startCached({ rule: { ttl: '500ms', staleIfError: '1500ms' }, policy: { coreTimeout: '300ms' } })
    const first = await envDoc(gw, DEV_KEY)
    core.db.down = true
    await sleep(600)
    const stale = await envDoc(gw, DEV_KEY)
    expect(stale.status).toBe(200)
    expect(stale.headers['x-cache-status']).toBe('STALE')
    expect(stale.headers['x-flaggate-upstream']).toBe('none')
    expect(stale.body.equals(first.body)).toBe(true)
    await sleep(1500)
    const gone = await envDoc(gw, DEV_KEY)
    expect(gone.status).toBe(502)
    expect(json(gone)).toMatchObject({ statusCode: 502, code: 'FLAGGATE_UPSTREAM_UNREACHABLE' })

    core.db.down = false
    await envDoc(gw, PROD_KEY)
    core.db.hang = true
    await sleep(600)
    expect((await envDoc(gw, PROD_KEY)).headers['x-cache-status']).toBe('STALE')
    await sleep(1500)
    const timedOut = await envDoc(gw, PROD_KEY)
    expect(timedOut.status).toBe(504)
    expect(json(timedOut)).toMatchObject({ statusCode: 504, code: 'FLAGGATE_UPSTREAM_TIMEOUT' })
  })

  it('a document larger than maxEntrySize is streamed through uncached (BYPASS), never buffered whole', async () => {
    const { core, gw } = await startCached({ rule: { maxEntrySize: '1kb' } })
    const direct = await raw(core.url, ENV_DOC, { headers: { 'x-environment-key': DEV_KEY } })
    core.reset()
    const a = await envDoc(gw, DEV_KEY)
    const b = await envDoc(gw, DEV_KEY)
    expect(a.body.length).toBeGreaterThan(1024)
    for (const r of [a, b]) {
      expect(r.status).toBe(200)
      expect(r.headers['x-cache-status']).toBe('BYPASS')
      expect(r.headers['x-flaggate-upstream']).toBe('core')
      expect(r.headers['cache-control']).toBe(CORE_NEVER_CACHE)
      expect(r.body.equals(direct.body)).toBe(true)
    }
    // one Core request per client request: the first got the fill's own answer, streamed on;
    // the second went straight to the proxy (the key is remembered as too large)
    expect(core.counts(ENV_DOC, DEV_KEY)).toBe(2)
    expect((json(await raw(gw.adminUrl, '/admin/status')) as { cache: { entries: number } }).cache.entries).toBe(0)
  })

  it('one key\'s document is never served to another key, even of the same environment', async () => {
    const { core, gw } = await startCached()
    const dev = await envDoc(gw, DEV_KEY)
    const prod = await envDoc(gw, PROD_KEY)
    const prod2 = await envDoc(gw, PROD_KEY_2)
    expect(json(dev)).toMatchObject({ id: 1 })
    expect(json(prod)).toMatchObject({ id: 2 })
    expect(prod2.headers['x-cache-status']).toBe('MISS')
    expect(core.counts(ENV_DOC, PROD_KEY_2)).toBe(1)
    expect(json(await envDoc(gw, DEV_KEY))).toMatchObject({ id: 1 })
    // same key, a page_id: Core does not paginate, so the one document answers it (docs/security.md, attack 10)
    const page = await envDoc(gw, DEV_KEY, {}, `${ENV_DOC}?page_id=identity_override:1:x`)
    expect(page.headers['x-cache-status']).toBe('HIT')
    expect(json(page)).toMatchObject({ id: 1 })
  })

  it('Core\'s 403 for a bad key is answered from memory for a few seconds', async () => {
    const { core, gw } = await startCached()
    const first = await envDoc(gw, 'ser.no-such-key')
    expect(first.status).toBe(403)
    expect(json(first)).toEqual({ detail: INVALID_KEY_DETAIL })
    const more = await Promise.all(Array.from({ length: 50 }, async () => await envDoc(gw, 'ser.no-such-key')))
    for (const r of more) {
      expect(r.status).toBe(403)
      expect(r.headers['x-cache-status']).toBe('HIT')
      expect(json(r)).toEqual({ detail: INVALID_KEY_DETAIL })
    }
    expect(core.counts(ENV_DOC, 'ser.no-such-key')).toBe(1)
  })

  it('webhook: a bad or missing signature is refused and purges nothing; a good one purges', async () => {
    const { core, gw } = await startCached()
    await envDoc(gw, DEV_KEY)
    await envDoc(gw, PROD_KEY)
    const body = webhookBody(1, 'banner')
    const post = async (headers: Record<string, string>): Promise<Awaited<ReturnType<typeof raw>>> =>
      await raw(gw.url, '/webhooks/flagsmith', { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body })

    const refusals: Array<Record<string, string>> = [{}, { 'x-flagsmith-signature': signWebhook('wrong-secret', body) }, { 'x-flagsmith-signature': 'zz' }]
    for (const headers of refusals) {
      const refused = await post(headers)
      expect(refused.status).toBe(401)
      expect(json(refused)).toMatchObject({ statusCode: 401, code: 'FLAGGATE_UNAUTHORIZED' })
    }
    // signed over other bytes (re-serialised JSON): refused
    const reserialised = JSON.stringify(JSON.parse(body))
    expect((await post({ 'x-flagsmith-signature': signWebhook(WEBHOOK_SECRET, reserialised) })).status).toBe(401)
    expect((await envDoc(gw, DEV_KEY)).headers['x-cache-status']).toBe('HIT')

    core.touch(1)
    const ok = await post({ 'x-flagsmith-signature': signWebhook(WEBHOOK_SECRET, body) })
    expect(ok.status).toBe(200)
    expect(json(ok)).toMatchObject({ purged: 1 })
    const fresh = await envDoc(gw, DEV_KEY)
    expect(fresh.headers['x-cache-status']).toBe('MISS')
    expect(core.counts(ENV_DOC, DEV_KEY)).toBe(2)
    // after a purge the fetch is unconditional (Core's Last-Modified can lag)
    expect(core.requests.filter((r) => r.path === ENV_DOC).at(-1)!.headers['if-modified-since']).toBeUndefined()
    // the other environment was not touched
    expect((await envDoc(gw, PROD_KEY)).headers['x-cache-status']).toBe('HIT')
  })

  it('admin purge by key and for all; status and metrics show the cache', async () => {
    const { gw } = await startCached()
    await envDoc(gw, DEV_KEY)
    // Core does not paginate: a page_id is the same entry (a HIT)
    await envDoc(gw, DEV_KEY, {}, `${ENV_DOC}?page_id=p2`)
    await envDoc(gw, PROD_KEY)
    await envDoc(gw, PROD_KEY)
    const status = json(await raw(gw.adminUrl, '/admin/status'))
    expect(status).toMatchObject({ cache: { entries: 2, hits: 2, misses: 2 } })
    expect((status as { cache: { bytes: number } }).cache.bytes).toBeGreaterThan(0)

    const purge = async (body: unknown): Promise<Awaited<ReturnType<typeof raw>>> =>
      await raw(gw.adminUrl, '/admin/cache/purge', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
    expect(json(await purge({ key: DEV_KEY }))).toMatchObject({ purged: 1 })
    expect((await purge({ kye: DEV_KEY })).status).toBe(400)
    expect(json(await purge({}))).toMatchObject({ purged: 1 })
    expect((await envDoc(gw, PROD_KEY)).headers['x-cache-status']).toBe('MISS')

    const metrics = (await raw(gw.adminUrl, '/metrics')).body.toString()
    expect(metrics).toMatch(/flaggate_cache_events_total\{event="hit"\} 2/)
    expect(metrics).toMatch(/flaggate_cache_events_total\{event="purge"\} 2/)
    expect(metrics).toMatch(/flaggate_cache_bytes [1-9]/)
    const log = gw.logs.lines.find((l) => l.action === 'cache.purge')
    expect(JSON.stringify(log)).not.toContain(DEV_KEY)
  })
})

/** The bodies of the complete HTTP/1.1 answers in `buf`, in order (each with a Content-Length). */
function splitAnswers (buf: Buffer): Buffer[] {
  const out: Buffer[] = []
  let at = 0
  for (;;) {
    const end = buf.indexOf('\r\n\r\n', at)
    if (end === -1) return out
    const head = buf.subarray(at, end).toString('latin1')
    const length = Number(/\r\ncontent-length: (\d+)/i.exec(head)?.[1] ?? 0)
    if (buf.length < end + 4 + length) return out
    expect(head).toMatch(/^HTTP\/1\.1 200 [^]*\r\nx-cache-status: HIT/)
    out.push(buf.subarray(end + 4, end + 4 + length))
    at = end + 4 + length
  }
}
