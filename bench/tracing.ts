/**
 * What tracing costs: the same gateway (every capability of the bench policy) three times, each
 * in its own process, measured in interleaved rounds on a proxied flags/ request and a cache HIT:
 *
 *   off        no `tracing` section (nothing of OpenTelemetry loaded)
 *   ratio 0    `tracing` on, `sampleRatio: 0`: a span id and a traceparent per request, nothing exported
 *   ratio 1    `tracing` on, `sampleRatio: 1`: every span exported to a collector
 *
 * The collector is a small OTLP/HTTP endpoint in this process (it counts the spans it receives);
 * the load generator runs in its own (wrk, or autocannon's CLI). Reported: the gateway's CPU time
 * per request (/proc/<pid>/stat), requests per second, p99, medians of the rounds.
 *
 *   npm run bench:tracing [-- --rounds 5] [--duration 5] [--connections 50]
 */
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { Children, load, median, type LoadResult } from './support.js'
import { ENV_DOC, FLAGS, policy } from './policy.js'

const { values } = parseArgs({ options: { rounds: { type: 'string', default: '5' }, duration: { type: 'string', default: '5' }, connections: { type: 'string', default: '50' } } })
const ROUNDS = Number(values.rounds)
const DURATION = Number(values.duration)
const CONNECTIONS = Number(values.connections)

/** Counts spans (by their `spanId` fields) without keeping them. */
async function startCountingCollector (): Promise<{ url: string; spans: () => number; close: () => void }> {
  let spans = 0
  const server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString()
      for (let i = body.indexOf('"spanId"'); i !== -1; i = body.indexOf('"spanId"', i + 8)) spans++
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}')
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, spans: () => spans, close: () => { server.closeAllConnections(); server.close() } }
}

const children = new Children()
const collector = await startCountingCollector()
try {
  const fast = await children.start(['--import', 'tsx', 'bench/upstream.ts'], { QUERY_LATENCY_MS: '0', BENCH_KEYS: '1' }, (l) => l.url as string)
  const doc = await children.start(['--import', 'tsx', 'bench/upstream.ts'], { QUERY_LATENCY_MS: '1', POOL_SIZE: '20' }, (l) => l.url as string)
  const dir = mkdtempSync(join(tmpdir(), 'flaggate-bench-tracing-'))
  const configs = [
    { name: 'off', tracing: '' },
    { name: 'ratio 0', tracing: `tracing: { otlp: "${collector.url}", sampleRatio: 0 }\n` },
    { name: 'ratio 1', tracing: `tracing: { otlp: "${collector.url}", sampleRatio: 1 }\n` }
  ]
  const gateways: Array<{ name: string; url: string; pid: number }> = []
  for (const c of configs) {
    const file = join(dir, `${c.name.replace(' ', '-')}.yaml`)
    writeFileSync(file, policy({ docUrl: doc, fastUrl: fast }) + c.tracing)
    const g = await children.spawnFlaggate(file)
    gateways.push({ name: c.name, url: g.url, pid: g.pid })
  }
  const kinds = [
    { name: 'flags (proxied)', path: FLAGS, headers: { 'x-environment-key': 'dev_client_key' } },
    { name: 'env doc HIT', path: ENV_DOC, headers: { 'x-environment-key': 'ser.dev_server_key' } }
  ]
  const rows = gateways.flatMap((g) => kinds.map((k) => ({ label: `${k.name}, tracing ${g.name}`, url: g.url + k.path, headers: k.headers, pid: g.pid, results: [] as LoadResult[] })))
  const load0 = loadavg()[0]!
  console.log(`tracing bench: ${CONNECTIONS} connections, ${DURATION} s per run after 1 s unmeasured, ${ROUNDS} rounds (interleaved), load average at start ${load0.toFixed(2)}`)
  for (const r of rows) await load(r.url, { connections: CONNECTIONS, durationS: 2, headers: r.headers })
  for (let round = 1; round <= ROUNDS; round++) {
    for (const r of rows) {
      await load(r.url, { connections: CONNECTIONS, durationS: 1, headers: r.headers })
      const res = await load(r.url, { connections: CONNECTIONS, durationS: DURATION, headers: r.headers, watch: { server: r.pid } })
      r.results.push(res)
      console.log(`  round ${round}  ${r.label.padEnd(34)} ${res.rps.toFixed(0).padStart(7)} req/s  p99 ${res.p99.toFixed(1).padStart(6)} ms  server ${(res.cpuUsPerReq.server ?? NaN).toFixed(1).padStart(6)} µs/req${res.non2xx + res.errors > 0 ? `  non-2xx ${res.non2xx} errors ${res.errors}` : ''}`)
    }
  }
  console.log('\n| request, tracing | req/s | p99 ms | gateway CPU µs/req |\n|---|---:|---:|---:|')
  for (const r of rows) {
    const m = (f: (x: LoadResult) => number) => median(r.results.map(f))
    console.log(`| ${r.label} | ${m((x) => x.rps).toFixed(0)} | ${m((x) => x.p99).toFixed(1)} | ${m((x) => x.cpuUsPerReq.server ?? NaN).toFixed(1)} |`)
  }
  console.log(`\nspans received by the collector: ${collector.spans()}`)
} finally {
  children.stopAll()
  collector.close()
}
