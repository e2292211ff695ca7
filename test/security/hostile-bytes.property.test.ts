/**
 * Every byte from Redis, the state file and Core is distrusted: fast-check generates them and no
 * input may kill or wedge the gateway. After each input, `/healthz` answers and a normal request
 * is answered (200, or 403 when the input was a well-formed block that happens to match it).
 *
 * - Redis: arbitrary strings, bytes, JSON and near-valid fleet messages published on every fleet
 *   channel of a gateway process (`node dist/cli.js serve`) with a private redis-server.
 * - Upstream answers: the same process proxies to a raw TCP "Core" that answers arbitrary bytes:
 *   status lines of any number, headers of any text, lying lengths, broken chunking, split at
 *   random points, then closes.
 * - State files: arbitrary bytes, JSON and near-valid block lists in the blocks state file of a
 *   gateway (in this process) as it starts.
 * Runs are bounded (numRuns and a time limit each), so the suite stays short on a busy machine.
 */
import { mkdtempSync, writeFileSync } from 'node:fs'
import { createServer, type Server, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import fc from 'fast-check'
import { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startPrivateRedis, type PrivateRedis } from '../support/redis-server.js'
import { startFakeCore, type FakeCore } from '../support/fake-flagsmith.js'
import { policyYaml, spawnGateway, startTestGateway, type SpawnedGateway } from '../support/gateway.js'
import { raw } from '../support/http.js'

const PREFIX = 'prop:'
const NORMAL = 'dev_client_key'
const sleep = async (ms: number): Promise<void> => await new Promise((resolve) => setTimeout(resolve, ms))

/** A TCP server that speaks HTTP only when asked nicely: `?hostile` requests get `answer`'s bytes. */
interface RawCore { url: string; answer: Buffer[]; hostileServed: number; close: () => Promise<void> }
async function startRawCore (): Promise<RawCore> {
  const sockets = new Set<Socket>()
  const core: RawCore = { url: '', answer: [], hostileServed: 0, close: async () => {} }
  const server: Server = createServer((s) => {
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
    s.on('error', () => {})
    let head = ''
    s.on('data', (c: Buffer) => {
      head += c.toString('latin1')
      if (!head.includes('\r\n\r\n')) return
      const hostile = head.slice(0, head.indexOf('\r\n')).includes('hostile')
      head = ''
      if (!hostile) {
        const body = '[]'
        s.end(`HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`)
        return
      }
      core.hostileServed++
      const parts = [...core.answer]
      const next = (): void => {
        const p = parts.shift()
        if (p === undefined) { s.end(); return }
        s.write(p, () => setImmediate(next))
      }
      next()
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  core.url = `http://127.0.0.1:${(server.address() as { port: number }).port}`
  core.close = async () => {
    for (const s of sockets) s.destroy()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  }
  return core
}

/** The gateway is alive and serving: liveness, then a normal request answered on purpose. */
async function serving (base: string): Promise<void> {
  expect((await raw(base, '/healthz', { timeoutMs: 10_000 })).status).toBe(200)
  const r = await raw(base, '/api/v1/flags/', { headers: { 'x-environment-key': NORMAL }, timeoutMs: 10_000 })
  expect([200, 403]).toContain(r.status)
}

// ---- generators ----
const text = fc.string({ unit: 'binary', maxLength: 60 })
const anyJson = fc.jsonValue({ maxDepth: 3 })
/** A block as stored, each field right, wrong or missing. */
const blockish = fc.record({
  id: fc.oneof(text, anyJson),
  reason: fc.oneof(text, anyJson),
  actor: fc.oneof(text, anyJson),
  createdAt: fc.oneof(fc.integer(), fc.double(), anyJson),
  expiresAt: fc.oneof(fc.integer(), fc.double(), fc.constant(null), anyJson),
  source: fc.oneof(fc.constantFrom('runtime', 'abuse', 'static'), text),
  keyDigest: fc.oneof(fc.string({ unit: fc.constantFrom(...'0123456789abcdef'), minLength: 64, maxLength: 64 }), text, anyJson),
  ip: fc.oneof(fc.ipV4(), fc.ipV6(), fc.ipV4().map((ip) => `${ip}/24`), text, anyJson),
  userAgent: fc.oneof(fc.constantFrom('^BadBot/', '(a+)+$', '[', '(?<x>a)\\k<x>', '^([a-z]|[0-9a-f])*-bot$'), text),
  routes: fc.oneof(fc.array(text, { maxLength: 3 }), anyJson)
}, { requiredKeys: [] })
const fleetMessage = fc.record({
  v: fc.oneof(fc.constant(1), fc.constant(2), anyJson),
  from: fc.oneof(text, anyJson),
  version: fc.oneof(fc.integer(), fc.double(), anyJson),
  op: fc.oneof(fc.constantFrom('add', 'remove', 'purge', 'all'), text),
  block: fc.oneof(blockish, anyJson),
  id: fc.oneof(text, anyJson),
  target: fc.oneof(fc.record({ envId: fc.oneof(fc.string(), anyJson), key: fc.oneof(fc.string(), anyJson) }, { requiredKeys: [] }), anyJson)
}, { requiredKeys: [] })
const redisPayload: fc.Arbitrary<string | Buffer> = fc.oneof(
  text,
  fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)),
  anyJson.map((j) => JSON.stringify(j)),
  fleetMessage.map((m) => JSON.stringify(m)),
  fc.string({ minLength: 60_000, maxLength: 70_000 }) // around the 64 KiB bound
)

const header = fc.tuple(
  fc.oneof(fc.constantFrom('Content-Length', 'Transfer-Encoding', 'Content-Type', 'Content-Encoding', 'Connection', 'Set-Cookie', 'Cache-Control', 'Vary'), text),
  fc.oneof(fc.constantFrom('chunked', 'gzip', 'close', '-1', '0', '18446744073709551616', 'application/json', 'identity, chunked'), fc.nat().map(String), text)
).map(([k, v]) => `${k}: ${v}\r\n`)
const chunk = fc.tuple(fc.oneof(fc.nat({ max: 300 }).map((n) => n.toString(16)), text), fc.uint8Array({ maxLength: 200 })).map(([size, data]) => Buffer.concat([Buffer.from(`${size}\r\n`, 'latin1'), Buffer.from(data), Buffer.from('\r\n')]))
const httpish = fc.record({
  status: fc.oneof(fc.integer({ min: 0, max: 1200 }), fc.constantFrom(100, 101, 103, 200, 204, 304, 502)),
  version: fc.constantFrom('HTTP/1.1', 'HTTP/1.0', 'HTTP/2', 'HTTP/1.1 ', 'ICY', ''),
  reason: text,
  headers: fc.array(header, { maxLength: 6 }),
  body: fc.oneof(fc.array(chunk, { maxLength: 4 }).map((cs) => Buffer.concat(cs)), fc.uint8Array({ maxLength: 400 }).map((a) => Buffer.from(a)))
}).map((a) => Buffer.concat([Buffer.from(`${a.version} ${a.status} ${a.reason}\r\n${a.headers.join('')}\r\n`, 'latin1'), a.body]))
const upstreamAnswer: fc.Arbitrary<Buffer[]> = fc.tuple(
  fc.oneof(httpish, fc.uint8Array({ maxLength: 500 }).map((a) => Buffer.from(a))),
  fc.array(fc.nat(), { maxLength: 4 })
).map(([bytes, cuts]) => {
  // the same bytes in several writes: parsers must not care where the packets break
  const at = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((x, y) => x - y)
  const parts: Buffer[] = []
  let prev = 0
  for (const c of [...at, bytes.length]) { parts.push(bytes.subarray(prev, c)); prev = c }
  return parts.filter((p) => p.length > 0)
})

const stateFile: fc.Arbitrary<Buffer> = fc.oneof(
  fc.uint8Array({ maxLength: 500 }).map((a) => Buffer.from(a)),
  anyJson.map((j) => Buffer.from(JSON.stringify(j))),
  fc.record({ v: fc.oneof(fc.constant(1), anyJson), savedAt: fc.oneof(text, anyJson), blocks: fc.oneof(fc.array(fc.oneof(blockish, anyJson), { maxLength: 8 }), anyJson) }, { requiredKeys: [] }).map((c) => Buffer.from(JSON.stringify(c)))
)

// ---- a gateway process with Redis, proxying to the raw Core ----
let redis: PrivateRedis | undefined
let pub: Redis | undefined
let rawCore: RawCore | undefined
let gw: SpawnedGateway | undefined
let channels: string[] = []

beforeAll(async () => {
  redis = await startPrivateRedis()
  pub = new Redis(redis.url)
  rawCore = await startRawCore()
  gw = await spawnGateway(policyYaml({ coreUrl: rawCore.url, coreTimeout: '1s', redis: { url: redis.url, keyPrefix: PREFIX, commandTimeout: '500ms' } }))
  const deadline = Date.now() + 15_000
  while (channels.length < 2 && Date.now() < deadline) {
    channels = (await pub.pubsub('CHANNELS', `${PREFIX}*`)) as string[]
    await sleep(100)
  }
}, 60_000)
afterAll(async () => {
  await gw?.stop('SIGKILL')
  pub?.disconnect()
  await rawCore?.close()
  await redis?.stop()
})

describe('hostile bytes never kill or wedge the gateway', () => {
  it('messages on the fleet channels', async () => {
    expect(channels.length).toBeGreaterThan(0)
    await fc.assert(fc.asyncProperty(fc.array(redisPayload, { minLength: 1, maxLength: 5 }), async (payloads) => {
      for (const ch of channels) for (const p of payloads) await pub!.publish(ch, p)
      // a PING through the same connection orders it after the deliveries; then the process answers
      await pub!.ping()
      await serving(gw!.url)
      expect(gw!.process.exitCode, gw!.stderr.join('')).toBeNull()
    }), { numRuns: 60, interruptAfterTimeLimit: 60_000 })
  }, 120_000)

  it('answers from the upstream', async () => {
    await fc.assert(fc.asyncProperty(upstreamAnswer, async (parts) => {
      rawCore!.answer = parts
      // any answer (502, 504, a cut stream) is fine; what matters is what follows
      await raw(gw!.url, '/api/v1/flags/?hostile=1', { headers: { 'x-environment-key': NORMAL }, timeoutMs: 15_000 }).catch(() => undefined)
      await serving(gw!.url)
      expect(gw!.process.exitCode, gw!.stderr.join('')).toBeNull()
    }), { numRuns: 80, interruptAfterTimeLimit: 70_000 })
    // the hostile answers did reach the gateway (a retry of an idempotent request counts twice)
    expect(rawCore!.hostileServed).toBeGreaterThanOrEqual(40)
  }, 120_000)

  describe('the blocks state file at start', () => {
    let core: FakeCore
    beforeAll(async () => { core = await startFakeCore() })
    afterAll(async () => { await core.close() })

    it('whatever it holds, the gateway starts and serves', async () => {
      const dir = mkdtempSync(join(tmpdir(), 'flaggate-prop-'))
      let n = 0
      await fc.assert(fc.asyncProperty(stateFile, async (bytes) => {
        const file = join(dir, `blocks-${n++}.json`)
        writeFileSync(file, bytes)
        const g = await startTestGateway(policyYaml({ coreUrl: core.url, extra: `blocking:\n  stateFile: ${JSON.stringify(file)}\n` }), { watch: false })
        try {
          await serving(g.url)
        } finally {
          await g.close()
        }
      }), { numRuns: 40, interruptAfterTimeLimit: 60_000 })
    }, 120_000)
  })
})
