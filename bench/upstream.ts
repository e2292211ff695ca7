/**
 * The fake Flagsmith Core in its own process, for benchmarks: prints {"url", "docBytes", "control"}
 * and serves until killed. The control listener lets a scenario read and turn the database knobs of
 * a running Core: `GET /stats`, `POST /db` (JSON: knobs to change), `POST /reset`.
 *
 * QUERY_LATENCY_MS, POOL_SIZE   the fake database (Core's environment document is 11 queries)
 * DOC_BYTES                     grow the Development environment's document (identity overrides,
 *                               ~0.6 KB each) to at least this size: the 5 KB / 50 KB / 2 MB rows
 * BENCH_KEYS=1                  every `ser.bench-<n>` key is a server key of Development, so the
 *                               distinct-keys curve gets real answers for a million keys
 */
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { startFakeCore, type FakeEnvironment } from '../test/support/fake-flagsmith.js'

/** An array whose includes() also accepts the bench's generated keys (the fake looks keys up with it). */
class BenchKeys extends Array<string> {
  override includes (key: string): boolean { return key.startsWith('ser.bench-') || super.includes(key) }
}

const core = await startFakeCore({ db: { queryLatencyMs: Number(process.env.QUERY_LATENCY_MS ?? 0), poolSize: Number(process.env.POOL_SIZE ?? 20) } })
const dev = core.envs[0] as FakeEnvironment
if (process.env.BENCH_KEYS === '1') dev.serverKeys = BenchKeys.from(dev.serverKeys) as BenchKeys

async function docBytes (): Promise<number> {
  const saved = { ...core.db }
  core.db.queryLatencyMs = 0
  const res = await fetch(`${core.url}/api/v1/environment-document/`, { headers: { 'x-environment-key': dev.serverKeys[0]! } })
  const n = (await res.arrayBuffer()).byteLength
  core.db = saved
  return n
}

let bytes = await docBytes()
const target = Number(process.env.DOC_BYTES ?? 0)
if (target > bytes) {
  // two measurements give the size of one override; a last step tops up any rounding shortfall
  const base = dev.identityOverrides ?? 0
  dev.identityOverrides = base + 100
  const per = (await docBytes() - bytes) / 100
  dev.identityOverrides = base + Math.ceil((target - bytes) / per)
  while ((bytes = await docBytes()) < target) dev.identityOverrides += 1 + Math.ceil((target - bytes) / per)
}
core.reset()
const control = http.createServer((req, res) => {
  const chunks: Buffer[] = []
  req.on('data', (c: Buffer) => chunks.push(c))
  req.on('end', () => {
    if (req.method === 'POST' && req.url === '/db') Object.assign(core.db, JSON.parse(Buffer.concat(chunks).toString()) as object)
    else if (req.method === 'POST' && req.url === '/reset') core.reset()
    else if (!(req.method === 'GET' && req.url === '/stats')) { res.writeHead(404).end(); return }
    res.writeHead(200, { 'content-type': 'application/json' })
      .end(JSON.stringify({ busy: core.busy(), maxBusySeen: core.maxBusySeen(), inFlight: core.inFlight(), maxInFlightSeen: core.maxInFlightSeen(), requests: core.counts(), db: core.db, dbStats: core.dbStats() }))
  })
})
await new Promise<void>((resolve) => control.listen(0, '127.0.0.1', resolve))
process.stdout.write(JSON.stringify({ url: core.url, docBytes: bytes, control: `http://127.0.0.1:${(control.address() as AddressInfo).port}` }) + '\n')
process.on('SIGTERM', () => { control.close(); void core.close().then(() => process.exit(0)) })
