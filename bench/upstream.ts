/**
 * The fake Flagsmith Core in its own process, for benchmarks: prints {"url","control"} and serves
 * until killed. The control listener lets a scenario read and turn the database knobs of a running
 * Core: `GET /stats` (busy, maxBusySeen, dbStats, db), `POST /db` (JSON: knobs to change),
 * `POST /reset` (counters and high-water marks).
 */
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { startFakeCore } from '../test/support/fake-flagsmith.js'

const core = await startFakeCore({ db: { queryLatencyMs: Number(process.env.QUERY_LATENCY_MS ?? 0), poolSize: Number(process.env.POOL_SIZE ?? 20) } })
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
process.stdout.write(JSON.stringify({ url: core.url, control: `http://127.0.0.1:${(control.address() as AddressInfo).port}` }) + '\n')
process.on('SIGTERM', () => { control.close(); void core.close().then(() => process.exit(0)) })
