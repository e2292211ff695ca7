/**
 * `npm run bench -- --only compression` (or `npm run bench:compression`): what compressed answers
 * from memory cost and save, and what the flag-list cache spares Core.
 *
 *   documents   for the 5 KB, 100 KB and 2 MB environment documents (the fake Core's, grown with
 *               identity overrides), cache HITs answered identity, br and gzip: bytes per answer,
 *               answers per second, and the gateway's CPU per request (the gateway runs the bench
 *               policy: every capability on). Targets: a compressed HIT within 1.1× the CPU of an
 *               identity HIT; ≥ 5× fewer bytes with br for the 100 KB and 2 MB documents.
 *   flag lists  1,000 browsers polling one client key once a second, spread over two gateway
 *               replicas with `cache: { ttl: 2s }` on flags/: Core requests per second (target:
 *               one per ttl per replica, 1/s here).
 *
 * Usage: npm run bench:compression [-- --duration 3] [--rounds 2] [--connections 50] [--out bench/results/compression.md]
 *        [--browsers 1000] [--poll-seconds 10] [--flag-lists-only]  (the flag-list row alone)
 */
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs'
import { cpus, loadavg, tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { parseArgs } from 'node:util'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { request } from 'undici'
import { Children, load, median, wrkAvailable, type LoadResult } from './support.js'
import { ENV_DOC, FLAGS, policy } from './policy.js'

const { values } = parseArgs({
  options: {
    duration: { type: 'string', default: '3' },
    rounds: { type: 'string', default: '2' },
    connections: { type: 'string', default: '50' },
    browsers: { type: 'string', default: '1000' },
    'poll-seconds': { type: 'string', default: '10' },
    out: { type: 'string', default: 'bench/results/compression.md' },
    'flag-lists-only': { type: 'boolean', default: false },
    only: { type: 'string' }
  },
  strict: false
})
const DURATION = Number(values.duration)
const ROUNDS = Number(values.rounds)
const CONNECTIONS = Number(values.connections)
const BROWSERS = Number(values.browsers)
const POLL_S = Number(values['poll-seconds'])
const FLAG_LISTS_ONLY = values['flag-lists-only'] === true
const SIZES = [{ label: '5 KB', bytes: 5 * 1024 }, { label: '100 KB', bytes: 100 * 1024 }, { label: '2 MB', bytes: 2 * 1024 * 1024 }]
const ENCODINGS = [{ name: 'identity', ae: 'identity' }, { name: 'br', ae: 'br' }, { name: 'gzip', ae: 'gzip' }] as const
const SERVER_KEY = 'ser.dev_server_key'
const CLIENT_KEY = 'dev_client_key'

const fmt = (n: number, d = 0): string => Number.isFinite(n) ? n.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d }) : '–'

/** The answer's body size and encoding; asks until the compressed form is made (it is made after the entry is stored). */
async function answerOf (url: string, ae: string): Promise<{ bytes: number; encoding: string }> {
  for (let i = 0; i < 600; i++) {
    const r = await request(url, { headers: { 'x-environment-key': SERVER_KEY, 'accept-encoding': ae } })
    const body = Buffer.from(await r.body.arrayBuffer())
    const encoding = String(r.headers['content-encoding'] ?? 'identity')
    if (r.statusCode !== 200) throw new Error(`${url} answered ${r.statusCode}`)
    if (encoding === ae && r.headers['x-cache-status'] === 'HIT') return { bytes: body.length, encoding }
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  throw new Error(`${url} never answered ${ae} from its cache`)
}

async function coreRequests (control: string): Promise<number> {
  const r = await request(`${control}/stats`)
  const stats = await r.body.json() as { requests: number }
  return stats.requests
}

interface Polled { sent: number; failed: number; seconds: number; perSecond: number[]; p99Ms: number | null }

/**
 * `browsers` clients polling once a second for `seconds`, round-robin over `urls`: the generator
 * runs in its own process (bench/poll-browsers.ts), so it has a core's worth of event loop to itself.
 */
async function browsers (urls: string[], browsers: number, seconds: number): Promise<Polled> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'bench/poll-browsers.ts', String(seconds), String(browsers), CLIENT_KEY, FLAGS, ...urls], { stdio: ['ignore', 'pipe', 'inherit'] })
  let out = ''
  child.stdout.on('data', (d: Buffer) => { out += d.toString() })
  const [code] = await once(child, 'exit') as [number | null]
  if (code !== 0) throw new Error(`poll-browsers exited with ${String(code)}`)
  return JSON.parse(out.trim().split('\n').pop()!) as Polled
}

export async function runCompressionBench (): Promise<string> {
  const children = new Children()
  const configDir = mkdtempSync(join(tmpdir(), 'flaggate-bench-compression-'))
  let n = 0
  const flaggate = async (yaml: string): Promise<{ url: string; pid: number }> => {
    const file = join(configDir, `gateway-${n++}.yaml`)
    writeFileSync(file, yaml)
    return await children.spawnFlaggate(file)
  }
  const started = new Date()
  const load0 = loadavg()
  const out: string[] = []
  try {
    const fast = await children.spawn(['--import', 'tsx', 'bench/upstream.ts'], { QUERY_LATENCY_MS: '0' }, (l) => typeof l.url === 'string')
    const fastUrl = fast.info.url as string
    interface Row { size: string; docBytes: number; encoding: string; bytes: number; url: string; pid: number; ae: string; results: LoadResult[] }
    const rows: Row[] = []
    for (const s of FLAG_LISTS_ONLY ? [] : SIZES) {
      const c = await children.spawn(['--import', 'tsx', 'bench/upstream.ts'], { QUERY_LATENCY_MS: '1', POOL_SIZE: '20', DOC_BYTES: String(s.bytes) }, (l) => typeof l.url === 'string')
      const gw = await flaggate(policy({ docUrl: c.info.url as string, fastUrl }))
      for (const e of ENCODINGS) {
        const a = await answerOf(gw.url + ENV_DOC, e.ae)
        rows.push({ size: s.label, docBytes: c.info.docBytes as number, encoding: e.name, bytes: a.bytes, url: gw.url + ENV_DOC, pid: gw.pid, ae: e.ae, results: [] })
      }
    }
    if (!FLAG_LISTS_ONLY) console.log(`compression bench: ${wrkAvailable() ? 'wrk' : 'autocannon'}, ${CONNECTIONS} connections, ${DURATION} s per run after 1 s unmeasured, ${ROUNDS} rounds`)
    for (let round = 1; round <= (FLAG_LISTS_ONLY ? 0 : ROUNDS); round++) {
      for (const r of rows) {
        const headers = { 'x-environment-key': SERVER_KEY, 'accept-encoding': r.ae }
        await load(r.url, { connections: CONNECTIONS, durationS: 1, headers })
        const res = await load(r.url, { connections: CONNECTIONS, durationS: DURATION, headers, watch: { server: r.pid } })
        r.results.push(res)
        console.log(`  round ${round}  ${r.size.padEnd(7)} ${r.encoding.padEnd(9)} ${fmt(res.rps).padStart(8)} req/s  server ${fmt(res.cpuUsPerReq.server ?? NaN, 1).padStart(7)} µs/req${res.non2xx + res.errors > 0 ? `  non-2xx ${res.non2xx} errors ${res.errors}` : ''}`)
      }
    }

    // flag lists: two replicas caching flags/ for 2 s, 1,000 browsers polling one key every second
    const flagsPolicy = (fastUrl2: string): string => `server: { listen: 127.0.0.1:0 }
admin: { listen: 127.0.0.1:0 }
upstreams:
  core: { url: "${fastUrl2}", timeout: 10s, maxConnections: 128 }
routes:
  - name: flags
    match: { methods: [GET], path: ${FLAGS} }
    upstream: core
    limit: [{ by: environmentKey, rate: 1000000/s, burst: 1000000 }]
    cache: { ttl: 2s, staleWhileRevalidate: 5s, staleIfError: 10m }
  - name: default
    match: { pathPrefix: / }
    upstream: core
`
    const flagCore = await children.spawn(['--import', 'tsx', 'bench/upstream.ts'], { QUERY_LATENCY_MS: '1' }, (l) => typeof l.url === 'string')
    const replicas = [await flaggate(flagsPolicy(flagCore.info.url as string)), await flaggate(flagsPolicy(flagCore.info.url as string))]
    const before = await coreRequests(flagCore.info.control as string)
    const polled = await browsers(replicas.map((r) => r.url), BROWSERS, POLL_S)
    const seconds = polled.seconds
    const coreSaw = await coreRequests(flagCore.info.control as string) - before
    // whole seconds of the schedule (the last one may be cut short by the end of the run)
    const fullSeconds = polled.perSecond.slice(0, Math.floor(POLL_S))
    console.log(`  flag lists: ${polled.sent} polls (${polled.failed} failed) in ${seconds.toFixed(1)} s over 2 replicas, per second ${fullSeconds.join(' ')}, p99 ${String(polled.p99Ms)} ms; Core saw ${coreSaw}`)

    // the table
    const cpuOf = (r: Row): number => median(r.results.map((x) => x.cpuUsPerReq.server ?? NaN))
    const rpsOf = (r: Row): number => median(r.results.map((x) => x.rps))
    out.push(`## Compression and flag-list cache (${started.toISOString().slice(0, 16).replace('T', ' ')} UTC)`, '')
    out.push(`Machine: ${cpus().length} × ${cpus()[0]?.model ?? '?'}, load average ${load0.map((x) => x.toFixed(1)).join(' ')} at the start: **shared with other builds and tests while this ran**, so answers per second are indicative; CPU per request (from /proc) varies much less. ${FLAG_LISTS_ONLY ? 'Flag-list row only (`--flag-lists-only`).' : `${wrkAvailable() ? 'wrk' : 'autocannon'}, ${CONNECTIONS} connections, ${DURATION} s per run after 1 s unmeasured, ${ROUNDS} rounds, medians.`} The gateway runs the bench policy (every capability on); levels br ${(await import('../src/compress/levels.js')).brotli}, gzip ${(await import('../src/compress/levels.js')).gzip}.`, '')
    if (!FLAG_LISTS_ONLY) out.push('| document | encoding | bytes per answer | fewer bytes than identity | answers/s | gateway CPU µs/req | CPU vs identity HIT |', '|---|---|---:|---:|---:|---:|---:|')
    const targets: string[] = []
    for (const s of FLAG_LISTS_ONLY ? [] : SIZES) {
      const id = rows.find((r) => r.size === s.label && r.encoding === 'identity')!
      for (const r of rows.filter((x) => x.size === s.label)) {
        const ratio = id.bytes / r.bytes
        const cpuRatio = cpuOf(r) / cpuOf(id)
        out.push(`| ${s.label} (${fmt(r.docBytes)} B) | ${r.encoding} | ${fmt(r.bytes)} | ${ratio.toFixed(1)}× | ${fmt(rpsOf(r))} | ${fmt(cpuOf(r), 1)} | ${cpuRatio.toFixed(2)}× |`)
        if (r.encoding !== 'identity') targets.push(`- ${s.label} ${r.encoding} HIT CPU within 1.1× of identity: ${cpuRatio <= 1.1 ? 'met' : 'missed'} (${cpuRatio.toFixed(2)}×)`)
        if (r.encoding === 'br' && s.bytes >= 100 * 1024) targets.push(`- ${s.label} ≥ 5× fewer bytes with br: ${ratio >= 5 ? 'met' : 'missed'} (${ratio.toFixed(1)}×)`)
      }
    }
    const corePerS = coreSaw / seconds
    out.push('', `Flag lists: ${fmt(BROWSERS)} browsers polling one client key once a second through 2 replicas (\`cache: { ttl: 2s }\` on flags/), ${seconds.toFixed(1)} s: ${fmt(polled.sent)} polls (${polled.failed} failed), ${fmt(polled.sent / seconds)} polls/s (median second ${fmt(median(fullSeconds))}; per second: ${fullSeconds.join(', ')}; p99 ${String(polled.p99Ms)} ms; generator in its own process); **Core saw ${coreSaw} requests, ${corePerS.toFixed(2)}/s** (one per ttl per replica is 1.00/s).`, '')
    targets.push(`- flag lists: Core requests ≤ one per ttl per replica (+1 for the first fill of each replica): ${coreSaw <= Math.ceil(seconds / 2) * 2 + 2 ? 'met' : 'missed'} (${coreSaw} in ${seconds.toFixed(1)} s)`)
    out.push('Targets:', '', ...targets, '')
  } finally {
    children.stopAll()
  }
  const text = out.join('\n')
  const file = String(values.out)
  mkdirSync(dirname(file), { recursive: true })
  writeFileSync(file, text + '\n')
  console.log(text)
  return text
}

if (import.meta.url === `file://${process.argv[1]}`) {
  await runCompressionBench()
  process.exit(0)
}
