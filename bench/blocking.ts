/**
 * Blocklist benchmark: `npm run bench:blocking [-- --e2e --duration 5]`.
 *
 * 1. The check of the blocking hook per request, in ns, against the same loop without it:
 *    an empty blocklist (one branch) and 10,000 blocks (4,000 keys, 3,000 addresses, 2,000 IPv4
 *    networks of /16 to /30, 1,000 IPv6 /48s, 5 User-Agent patterns), for a client that matches
 *    nothing (the usual case), one that matches, and an IPv6 client.
 * 2. With --e2e: flaggate (memory store, access log on) with an empty blocklist and with those
 *    10,000 blocks as static policy entries, each in its own process in front of the fake Core,
 *    loaded by autocannon in its own process; runs alternate, twice each.
 */
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { BlockIndex, staticBlocks } from '../src/blocking/core.js'
import { autocannonCli, Children, type LoadResult } from './support.js'
import { TopClients } from '../src/top/top-clients.js'

const { values } = parseArgs({ options: { e2e: { type: 'boolean', default: false }, duration: { type: 'string', default: '5' }, connections: { type: 'string', default: '50' } } })

interface StaticEntry { key?: string; ip?: string; userAgent?: string; reason: string }
function tenThousand (): StaticEntry[] {
  const out: StaticEntry[] = []
  for (let k = 0; k < 4000; k++) out.push({ key: `ser.blocked-key-${k}`, reason: 'bench' })
  for (let k = 0; k < 3000; k++) out.push({ ip: `10.${(k >> 8) & 255}.${k & 255}.1`, reason: 'bench' })
  for (let k = 0; k < 2000; k++) out.push({ ip: `172.${16 + (k % 15)}.${(k * 7) & 255}.0/${16 + (k % 15)}`, reason: 'bench' })
  for (let k = 0; k < 1000; k++) out.push({ ip: `2001:db8:${k.toString(16)}::/48`, reason: 'bench' })
  for (const ua of ['^BadBot/', '^EvilScraper', 'python-requests/2\\.1', '^curl/7\\.1', 'sqlmap']) out.push({ userAgent: ua, reason: 'bench' })
  return out
}

/** The hook's work, as in src/blocking/plugin.ts, minus fastify. */
function check (index: BlockIndex, route: string, key: string | undefined, ip: string, ua: string | undefined): boolean {
  if (index.size === 0) return false
  return index.match(route, key, ip, ua, Date.now()) !== undefined
}

interface Client { route: string; key: string | undefined; ip: string; ua: string | undefined }

function nsPerOp (index: BlockIndex | undefined, clients: Client[], ms = 1500): number {
  let sink = 0
  let n = 0
  const start = performance.now()
  const end = start + ms
  while (performance.now() < end) {
    for (let i = 0; i < 1000; i++) {
      const c = clients[i & (clients.length - 1)]!
      // the baseline reads the same fields, so the difference is the check alone
      if (index === undefined) sink += c.ip.length; else if (check(index, c.route, c.key, c.ip, c.ua)) sink++
    }
    n += 1000
  }
  if (sink === -1) console.log(sink)
  return ((performance.now() - start) * 1e6) / n
}

function micro (): void {
  const now = Date.now()
  const empty = new BlockIndex()
  const full = new BlockIndex()
  for (const b of staticBlocks(tenThousand(), now)) full.add(b)
  const clients = (make: (i: number) => Client): Client[] => Array.from({ length: 64 }, (_, i) => make(i))
  const miss = clients((i) => ({ route: 'flags', key: `ser.good-key-${i}`, ip: `192.0.2.${i}`, ua: 'flagsmith-nodejs/8.1.2' }))
  const hit = clients((i) => ({ route: 'flags', key: `ser.blocked-key-${i * 50}`, ip: `192.0.2.${i}`, ua: 'flagsmith-nodejs/8.1.2' }))
  const v6 = clients((i) => ({ route: 'flags', key: `ser.good-key-${i}`, ip: `2001:db9::${i.toString(16)}`, ua: 'flagsmith-nodejs/8.1.2' }))
  // warm up every path
  for (const [ix, cs] of [[undefined, miss], [empty, miss], [full, miss], [full, hit], [full, v6]] as const) nsPerOp(ix, [...cs], 300)
  const base = nsPerOp(undefined, miss)
  const rows: Array<[string, number]> = [
    ['baseline (no check)', base],
    ['empty blocklist', nsPerOp(empty, miss)],
    ['10,000 blocks, client not blocked (IPv4)', nsPerOp(full, miss)],
    ['10,000 blocks, client not blocked (IPv6)', nsPerOp(full, v6)],
    ['10,000 blocks, blocked key', nsPerOp(full, hit)]
  ]
  console.log(`blocklist check per request (${full.size} blocks in the full index), ns/op:`)
  for (const [name, ns] of rows) console.log(`  ${name.padEnd(44)} ${ns.toFixed(1).padStart(8)} ns   (+${Math.max(0, ns - base).toFixed(1)} ns over baseline)`)

  // what the onResponse hook adds to every request for `flaggate top`, blocks or not
  const top = new TopClients()
  const many = Array.from({ length: 4096 }, (_, i) => ({ key: `ser.key-${i % 700}`, ip: `192.0.${(i >> 8) & 255}.${i & 255}` }))
  let i = 0
  const start = performance.now()
  while (performance.now() - start < 1500) {
    for (let k = 0; k < 1000; k++, i++) { const c = many[i & 4095]!; top.record('flags', c.key, c.ip, (i & 7) === 0) }
  }
  console.log(`top: record per request (4,096 clients, 1,000 counters)   ${(((performance.now() - start) * 1e6) / i).toFixed(1).padStart(8)} ns`)
}

async function e2e (): Promise<void> {
  const children = new Children()
  const row = (name: string, r: LoadResult): void => console.log(`  ${name.padEnd(36)} ${r.rps.toFixed(0).padStart(8)} req/s   p50 ${String(r.p50).padStart(3)} ms   p99 ${String(r.p99).padStart(3)} ms   non-2xx ${r.non2xx}`)
  try {
    const upstream = await children.start(['--import', 'tsx', 'bench/upstream.ts'], { QUERY_LATENCY_MS: '0' }, (l) => l.url as string)
    const dir = mkdtempSync(join(tmpdir(), 'flaggate-bench-blocking-'))
    const yaml = (blocklist: string): string => `server: { listen: 127.0.0.1:0 }
admin: { listen: 127.0.0.1:0 }
upstreams:
  core: { url: "${upstream}", timeout: 10s }
routes:
  - name: flags
    match: { methods: [GET], path: /api/v1/flags/ }
    upstream: core
    limit: [{ by: environmentKey, rate: 1000000/s, burst: 1000000 }, { by: [environmentKey, ip], rate: 1000000/s, burst: 1000000 }]
  - name: default
    match: { pathPrefix: / }
    upstream: core
blocking: { stateFile: ${JSON.stringify(join(dir, 'blocks.json'))} }
${blocklist}`
    writeFileSync(join(dir, 'empty.yaml'), yaml('blocklist: []\n'))
    writeFileSync(join(dir, 'full.yaml'), yaml('blocklist:\n' + tenThousand().map((b) => `  - ${JSON.stringify(b)}\n`).join('')))
    const emptyUrl = await children.startFlaggate(join(dir, 'empty.yaml'))
    const fullUrl = await children.startFlaggate(join(dir, 'full.yaml'))
    const opts = { connections: Number(values.connections), durationS: Number(values.duration), headers: { 'x-environment-key': 'dev_client_key', 'user-agent': 'flagsmith-nodejs/8.1.2' } }
    for (const u of [emptyUrl, fullUrl]) await autocannonCli(`${u}/api/v1/flags/`, { ...opts, durationS: 2 }) // warm JIT and pools
    console.log(`\nGET /api/v1/flags/ through flaggate, ${opts.connections} connections, ${opts.durationS} s per run, every process separate:`)
    for (let round = 1; round <= 2; round++) {
      row(`empty blocklist (run ${round})`, await autocannonCli(`${emptyUrl}/api/v1/flags/`, opts))
      row(`10,000 static blocks (run ${round})`, await autocannonCli(`${fullUrl}/api/v1/flags/`, opts))
    }
  } finally {
    children.stopAll()
  }
}

micro()
if (values.e2e) await e2e()
