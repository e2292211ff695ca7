/**
 * `npm run bench`: flaggate against the work it has to do, in the same run, on the same machine.
 * Every configuration runs in its own process (the fake Cores, the bare proxy, the bare fastify
 * ceiling, flaggate per store and per document size, NGINX), and so does the load generator (wrk
 * when installed, autocannon's CLI otherwise). Each measurement is repeated in interleaved rounds
 * and the median is reported, with the CPU time each process spent per request (/proc/<pid>/stat),
 * which on shared cores varies much less than requests/s.
 *
 *   upstream direct       the fake Core itself (flags: instant; environment document: 11 queries
 *                         of 1 ms, as a warm PostgreSQL)
 *   bare proxy            @fastify/http-proxy in front of it, nothing else
 *   ceiling               a bare fastify answering the document from memory with flaggate's headers
 *   flaggate              every built capability on (see CAPABILITIES), memory and Redis stores
 *   nginx                 limit_req (per key, per key + IP) + proxy_cache, one worker
 *   sizes                 cache hits for a 5 KB, a 50 KB and a 2 MB document
 *   distinct keys         proxied + limited requests rotating over 1 … 1,000,000 keys; RSS after
 *
 *   compression           `--only compression`: identity vs br vs gzip HITs per document size,
 *                         and the flag-list cache under 1,000 polling browsers (bench/compression.ts)
 *   local                 `--only local [--requests N]`: local flags/ and identities/ answers,
 *                         gateway CPU per answer beside a cache HIT (bench/local.ts; needs dist/)
 *
 * Usage: npm run bench [-- --quick] [--duration 5] [--rounds 3] [--connections 50] [--no-redis]
 *        [--no-nginx] [--no-keys] [--out bench/results.md]
 */
import { mkdtempSync, readFileSync, writeFileSync, existsSync } from 'node:fs'
import { cpus, loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { Children, load, median, recordPerf, rssBytes, warmKeys, wrkAvailable, type LoadResult, type LoadOptions } from './support.js'
import { ensureNginx, nginxVersion, startNginx } from './nginx.js'
import { redisServerAvailable, startPrivateRedis } from '../test/support/redis-server.js'
import { CAPABILITIES, ENV_DOC, FLAGS, policy } from './policy.js'

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    duration: { type: 'string' },
    rounds: { type: 'string' },
    connections: { type: 'string', default: '50' },
    'no-redis': { type: 'boolean', default: false },
    'no-nginx': { type: 'boolean', default: false },
    'no-keys': { type: 'boolean', default: false },
    out: { type: 'string', default: 'bench/results.md' },
    /** run only the rows whose id matches (e.g. 'hit-0|ceiling-0|nginx-hit-0'); for quick comparisons */
    only: { type: 'string' },
    /** `--only local`: requests per kind (default 20000) */
    requests: { type: 'string' },
    /** `perf record` the server of the rows whose id matches, during their measured runs (read with bench/perf.ts --data) */
    perf: { type: 'string' }
  }
})
const QUICK = values.quick
const DURATION = Number(values.duration ?? (QUICK ? 1 : 5))
const ROUNDS = Number(values.rounds ?? 3)
const CONNECTIONS = Number(values.connections)
const KEY_POINTS = QUICK ? [1, 1000] : [1, 1000, 100_000, 1_000_000]
const WARM_BUDGET_S = QUICK ? 10 : 300
const SIZES = [{ label: '5 KB', bytes: 0 }, { label: '50 KB', bytes: 50 * 1024 }, { label: '2 MB', bytes: 2 * 1024 * 1024 }]
const SERVER_KEY = { 'x-environment-key': 'ser.dev_server_key' }
const CLIENT_KEY = { 'x-environment-key': 'dev_client_key' }
const children = new Children()

const configDir = mkdtempSync(join(tmpdir(), 'flaggate-bench-config-'))
const perfRows = values.perf === undefined ? undefined : new RegExp(`^(${values.perf})$`)
const perfDir = perfRows === undefined ? undefined : mkdtempSync(join(tmpdir(), 'flaggate-bench-perf-'))
let configN = 0
async function startFlaggate (o: Parameters<typeof policy>[0]): Promise<{ url: string; pid: number }> {
  const file = join(configDir, `gateway-${configN++}.yaml`)
  writeFileSync(file, policy(o))
  return await children.spawnFlaggate(file, values.perf !== undefined ? ['--perf-basic-prof'] : [])
}

// ---------------------------------------------------------------------------------------------

interface Row {
  id: string
  group: 'main' | 'size' | 'keys'
  label: string
  url: string
  headers: Record<string, string>
  watch: Record<string, number>
  keys?: number
  results: LoadResult[]
}

const fmt = (n: number, d = 0) => Number.isFinite(n) ? n.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d }) : '–'
const mb = (n: number) => Number.isFinite(n) ? `${(n / 2 ** 20).toFixed(0)} MB` : '–'

function med (r: Row, f: (x: LoadResult) => number): number { return median(r.results.map(f)) }
const rps = (r: Row | undefined) => r === undefined ? NaN : med(r, (x) => x.rps)
const p99 = (r: Row | undefined) => r === undefined ? NaN : med(r, (x) => x.p99)
const cpu = (r: Row | undefined, who = 'server') => r === undefined ? NaN : med(r, (x) => x.cpuUsPerReq[who] ?? NaN)

async function getStarted (url: string, headers: Record<string, string>, expectHit: boolean): Promise<number> {
  const a = await fetch(url, { headers })
  await a.arrayBuffer()
  const b = await fetch(url, { headers })
  const n = (await b.arrayBuffer()).byteLength
  if (b.status !== 200) throw new Error(`${url} answered ${b.status}`)
  if (expectHit && !/HIT/.test(b.headers.get('x-cache-status') ?? '')) throw new Error(`${url} did not answer from its cache (X-Cache-Status: ${b.headers.get('x-cache-status')})`)
  return n
}

async function main (): Promise<void> {
  // compressed answers and the flag-list cache have their own rows and table (bench/compression.ts)
  if (values.only === 'compression') {
    const { runCompressionBench } = await import('./compression.js')
    await runCompressionBench()
    return
  }
  // local evaluation's answers beside a cache HIT: gateway CPU per answer (bench/local.ts)
  if (values.only === 'local') {
    const { runLocalBench } = await import('./local.js')
    await runLocalBench(Number(values.requests ?? 20000))
    return
  }
  const startedAt = new Date()
  const load0 = loadavg()
  const notes: string[] = []
  const generator = wrkAvailable() ? 'wrk (1 thread)' : 'autocannon CLI (wrk not installed)'
  if (!wrkAvailable()) notes.push('wrk is not installed: autocannon is the load generator and the distinct-keys curve is skipped (`apt-get install wrk`).')
  if (!existsSync('dist/cli.js')) throw new Error('dist/cli.js is missing: run `npm run build` first')

  const nginx = values['no-nginx'] ? { bin: undefined, note: '--no-nginx: NGINX rows skipped' } : ensureNginx()
  notes.push(`NGINX: ${nginx.note}${nginx.bin !== undefined ? `, version ${nginxVersion(nginx.bin)}` : ''}.`)
  const redis = !values['no-redis'] && redisServerAvailable() ? await startPrivateRedis() : undefined
  if (redis === undefined) notes.push(values['no-redis'] ? '--no-redis: Redis rows skipped.' : 'redis-server is not installed: Redis rows skipped.')

  const rows: Row[] = []
  const only = values.only === undefined ? undefined : new RegExp(`^(${values.only})$`)
  const add = (r: Omit<Row, 'results'>): void => { if (only === undefined || only.test(r.id)) rows.push({ ...r, results: [] }) }
  const keyRows: Array<{ keys: number; warmS: number; warmSent: number; warmFrom: number; rss: number; row: Row }> = []
  let rssAfterKeys: { rss: number; keys: number } | undefined

  try {
    // upstreams: instant (flags, and the distinct-keys curve), and one per document size at 1 ms per query
    const fast = await children.spawn(['--import', 'tsx', 'bench/upstream.ts'], { QUERY_LATENCY_MS: '0', BENCH_KEYS: '1' }, (l) => typeof l.url === 'string')
    const fastUrl = fast.info.url as string
    const docs: Array<{ label: string; url: string; pid: number; bytes: number }> = []
    for (const s of SIZES) {
      const c = await children.spawn(['--import', 'tsx', 'bench/upstream.ts'], { QUERY_LATENCY_MS: '1', POOL_SIZE: '20', DOC_BYTES: String(s.bytes) }, (l) => typeof l.url === 'string')
      docs.push({ label: s.label, url: c.info.url as string, pid: c.pid, bytes: c.info.docBytes as number })
    }
    const doc5 = docs[0]!

    const bareFast = await children.spawn(['--import', 'tsx', 'bench/bare-proxy.ts'], { UPSTREAM_URL: fastUrl }, (l) => typeof l.url === 'string')
    const bareDoc = await children.spawn(['--import', 'tsx', 'bench/bare-proxy.ts'], { UPSTREAM_URL: doc5.url }, (l) => typeof l.url === 'string')
    const gwMem = await startFlaggate({ docUrl: doc5.url, fastUrl })
    const gwRedis = redis === undefined ? undefined : await startFlaggate({ docUrl: doc5.url, fastUrl, redis })
    const ng = nginx.bin === undefined ? undefined : await startNginx(children, nginx.bin, { docUpstream: doc5.url, fastUpstream: fastUrl })

    add({ id: 'direct-flags', group: 'main', label: 'upstream direct: flags', url: fastUrl + FLAGS, headers: CLIENT_KEY, watch: { server: fast.pid } })
    add({ id: 'bare-flags', group: 'main', label: 'bare proxy: flags', url: (bareFast.info.url as string) + FLAGS, headers: CLIENT_KEY, watch: { server: bareFast.pid, upstream: fast.pid } })
    add({ id: 'mem-flags', group: 'main', label: 'flaggate memory: flags (proxied)', url: gwMem.url + FLAGS, headers: CLIENT_KEY, watch: { server: gwMem.pid, upstream: fast.pid } })
    if (gwRedis !== undefined) add({ id: 'redis-flags', group: 'main', label: 'flaggate Redis: flags (proxied)', url: gwRedis.url + FLAGS, headers: CLIENT_KEY, watch: { server: gwRedis.pid, upstream: fast.pid, redis: redis!.pid } })
    if (ng !== undefined) add({ id: 'nginx-flags', group: 'main', label: 'nginx: flags (limit_req, proxied)', url: ng.url + FLAGS, headers: CLIENT_KEY, watch: { server: ng.pid, upstream: fast.pid } })
    add({ id: 'direct-doc', group: 'main', label: 'upstream direct: env doc (11 × 1 ms queries)', url: doc5.url + ENV_DOC, headers: SERVER_KEY, watch: { server: doc5.pid } })
    add({ id: 'bare-doc', group: 'main', label: 'bare proxy: env doc', url: (bareDoc.info.url as string) + ENV_DOC, headers: SERVER_KEY, watch: { server: bareDoc.pid, upstream: doc5.pid } })

    // per document size: flaggate HIT, the ceiling serving the same bytes, NGINX proxy_cache HIT
    for (const [i, d] of docs.entries()) {
      const gw = i === 0 ? gwMem : await startFlaggate({ docUrl: d.url, fastUrl })
      await getStarted(gw.url + ENV_DOC, SERVER_KEY, true)
      const ceiling = await children.spawn(['--import', 'tsx', 'bench/ceiling.ts'], { GATEWAY_URL: gw.url }, (l) => typeof l.url === 'string')
      const n = i === 0 ? ng : ng === undefined ? undefined : await startNginx(children, nginx.bin!, { docUpstream: d.url, fastUpstream: fastUrl })
      if (n !== undefined) await getStarted(n.url + ENV_DOC, SERVER_KEY, true)
      const group = i === 0 ? 'main' : 'size'
      add({ id: `ceiling-${i}`, group, label: `ceiling (bare fastify, memory): env doc ${d.label}`, url: (ceiling.info.url as string) + ENV_DOC, headers: SERVER_KEY, watch: { server: ceiling.pid } })
      if (i === 0) {
        // the same, writing its answers at the end of the turn as flaggate does: like for like
        const turn = await children.spawn(['--import', 'tsx', 'bench/ceiling.ts'], { GATEWAY_URL: gw.url, TURN: '1' }, (l) => typeof l.url === 'string')
        add({ id: 'ceiling-turn-0', group, label: `ceiling, answers at the end of the turn: env doc ${d.label}`, url: (turn.info.url as string) + ENV_DOC, headers: SERVER_KEY, watch: { server: turn.pid } })
      }
      add({ id: `hit-${i}`, group, label: `flaggate memory: env doc ${d.label} HIT`, url: gw.url + ENV_DOC, headers: SERVER_KEY, watch: { server: gw.pid } })
      if (i === 0 && gwRedis !== undefined) {
        await getStarted(gwRedis.url + ENV_DOC, SERVER_KEY, true)
        add({ id: 'redis-hit-0', group, label: `flaggate Redis: env doc ${d.label} HIT`, url: gwRedis.url + ENV_DOC, headers: SERVER_KEY, watch: { server: gwRedis.pid, redis: redis!.pid } })
      }
      if (n !== undefined) add({ id: `nginx-hit-${i}`, group, label: `nginx: env doc ${d.label} proxy_cache HIT`, url: n.url + ENV_DOC, headers: SERVER_KEY, watch: { server: n.pid } })
    }

    const env = `${generator}, ${CONNECTIONS} connections, ${DURATION} s per run after 1 s unmeasured, ${ROUNDS} rounds (interleaved), medians`
    console.log(`flaggate bench: ${env}`)
    for (const n of notes) console.log(`  note: ${n}`)

    // warm JIT, pools and caches, then the rounds; every row once per round, so a slow moment
    // of the shared machine hits one sample of each row rather than all samples of one row
    for (const r of rows) await load(r.url, { connections: CONNECTIONS, durationS: Math.min(2, DURATION), headers: r.headers })
    for (let round = 1; round <= ROUNDS; round++) {
      for (const r of rows) {
        // one unmeasured second first: a process that sat idle while the other rows ran (a minute
        // per round) is slower for its first seconds back (its code re-warms after the idle GC),
        // and flaggate, with far more code on the path than the ceiling, more so
        await load(r.url, { connections: CONNECTIONS, durationS: 1, headers: r.headers })
        const rec = perfRows?.test(r.id) === true ? recordPerf(r.watch.server!, DURATION, join(perfDir!, `${r.id}-${round}.data`)) : undefined
        const res = await load(r.url, { connections: CONNECTIONS, durationS: DURATION, headers: r.headers, watch: r.watch })
        if (rec !== undefined) { await rec; console.log(`  perf: ${join(perfDir!, `${r.id}-${round}.data`)} (${res.requests} requests)`) }
        r.results.push(res)
        console.log(`  round ${round}  ${r.label.padEnd(48)} ${fmt(res.rps).padStart(8)} req/s  p99 ${fmt(res.p99, 1).padStart(6)} ms  server ${fmt(res.cpuUsPerReq.server ?? NaN, 1).padStart(6)} µs/req${res.non2xx + res.errors > 0 ? `  non-2xx ${res.non2xx} errors ${res.errors}` : ''}`)
      }
    }

    // distinct keys: a fresh gateway, proxied + limited flags requests rotating over N keys
    if (!values['no-keys'] && wrkAvailable()) try {
      const gwKeys = await startFlaggate({ docUrl: doc5.url, fastUrl })
      let sentKeys = 0
      for (const keys of KEY_POINTS) {
        // every key sent once before measuring, so the point measures N keys in steady state; the
        // pass skips the keys earlier points sent (a million proxied requests take minutes on two
        // shared cores) and stops at the time budget
        const from = Math.min(sentKeys, keys)
        const warm = await warmKeys(gwKeys.url + FLAGS, keys, CONNECTIONS, WARM_BUDGET_S, from)
        sentKeys = Math.max(sentKeys, from + warm.requests)
        const row: Row = { id: `keys-${keys}`, group: 'keys', label: `${fmt(keys)} keys`, url: gwKeys.url + FLAGS, headers: {}, watch: { server: gwKeys.pid, upstream: fast.pid }, keys, results: [] }
        for (let round = 1; round <= ROUNDS; round++) {
          const res = await load(row.url, { connections: CONNECTIONS, durationS: DURATION, headers: {}, keys, watch: row.watch })
          row.results.push(res)
          console.log(`  round ${round}  flags, ${fmt(keys).padStart(9)} keys ${fmt(res.rps).padStart(8)} req/s  p99 ${fmt(res.p99, 1).padStart(6)} ms  server ${fmt(res.cpuUsPerReq.server ?? NaN, 1).padStart(6)} µs/req${res.non2xx + res.errors > 0 ? `  non-2xx ${res.non2xx} errors ${res.errors}` : ''}`)
        }
        const rss = rssBytes(gwKeys.pid)
        keyRows.push({ keys, warmS: warm.seconds, warmSent: warm.requests, warmFrom: from, rss, row })
        // distinct keys the gateway has seen: the warm-up passes plus the rotation of the rounds
        const seen = Math.min(keys, Math.max(sentKeys, row.results.reduce((a, x) => a + x.requests, 0)))
        rssAfterKeys = { rss, keys: seen }
      }
    } catch (err) {
      notes.push(`The distinct-keys curve stopped: ${(err as Error).message}`)
    }

    write({ startedAt, load0, env, notes, rows, keyRows, rssAfterKeys, docs })
  } finally {
    children.stopAll()
    await redis?.stop()
  }
}

interface Report {
  startedAt: Date
  load0: number[]
  env: string
  notes: string[]
  rows: Row[]
  keyRows: Array<{ keys: number; warmS: number; warmSent: number; warmFrom: number; rss: number; row: Row }>
  rssAfterKeys: { rss: number; keys: number } | undefined
  docs: Array<{ label: string; bytes: number }>
}

const PROFILE_MARK = '<!-- profiles: kept across runs; written by hand from `npm run bench:profile` -->'

function write (rep: Report): void {
  const by = (id: string) => rep.rows.find((r) => r.id === id)
  const out: string[] = []
  const argv = process.argv.slice(2).join(' ')
  out.push('# Benchmark results', '')
  out.push(`Command: \`npm run bench${argv === '' ? '' : ` -- ${argv}`}\` (${rep.startedAt.toISOString().slice(0, 16).replace('T', ' ')} UTC)`, '')
  out.push(`Machine: ${cpus().length} CPUs (nproc), ${cpus()[0]?.model ?? 'unknown CPU'}, Node ${process.version}; load average at start ${rep.load0.map((x) => x.toFixed(1)).join(' / ')}, at end ${loadavg().map((x) => x.toFixed(1)).join(' / ')}.`, '')
  out.push(`Load: ${rep.env}. Every configuration and the load generator run in their own processes on the same two cores, so req/s is shared with the load generator and the upstream; **CPU µs/req** (utime + stime of the process from /proc, divided by the requests of the run) is the steadier measure.`, '')
  for (const n of rep.notes) out.push(`- ${n}`)
  out.push('', `flaggate runs with: ${CAPABILITIES.map((c) => c.name).join('; ')}; access log on; metrics on.`, '')

  out.push('## Side by side', '')
  out.push('| configuration | req/s | p50 ms | p99 ms | CPU µs/req (server) | CPU µs/req (upstream) | CPU µs/req (Redis) | non-2xx / errors |', '|---|---:|---:|---:|---:|---:|---:|---:|')
  for (const r of rep.rows.filter((x) => x.group === 'main')) {
    out.push(`| ${r.label} | ${fmt(rps(r))} | ${fmt(med(r, (x) => x.p50), 1)} | ${fmt(p99(r), 1)} | ${fmt(cpu(r), 1)} | ${fmt(cpu(r, 'upstream'), 1)} | ${fmt(cpu(r, 'redis'), 1)} | ${r.results.reduce((a, x) => a + x.non2xx, 0)} / ${r.results.reduce((a, x) => a + x.errors, 0)} |`)
  }
  out.push('')

  out.push('## Targets', '')
  out.push('| target | measured (req/s ratio of the medians) | paired (median of the rounds\' ratios) | CPU µs/req ratio | verdict |', '|---|---:|---:|---:|---|')
  const target = (label: string, a: Row | undefined, b: Row | undefined, min: number | undefined) => {
    if (a === undefined || b === undefined) { out.push(`| ${label} | – | – | – | not measured |`); return }
    const ratio = rps(a) / rps(b)
    // a round's runs of two configurations are minutes apart at most, seconds when they are
    // neighbours in the round: their ratio is less exposed to the machine's slow phases
    const paired = median(a.results.map((x, i) => x.rps / (b.results[i]?.rps ?? NaN)).filter(Number.isFinite))
    // cost ratio: how many of `a` one CPU-second buys against `b`
    const costRatio = cpu(b) / cpu(a)
    const verdict = min === undefined ? 'no target: for reference' : ratio >= min && paired >= min ? 'met' : ratio >= min || paired >= min ? 'met by one measure only' : 'MISSED'
    out.push(`| ${label} | ${ratio.toFixed(2)} | ${paired.toFixed(2)} | ${Number.isFinite(costRatio) ? costRatio.toFixed(2) : '–'} | ${verdict} |`)
  }
  target('cache HIT ≥ 0.7 × bare fastify ceiling (5 KB)', by('hit-0'), by('ceiling-0'), 0.7)
  target('cache HIT against the ceiling writing at the end of the turn, as flaggate does (like for like)', by('hit-0'), by('ceiling-turn-0'), undefined)
  target('cache HIT ≥ 3 × bare proxy fetching it', by('hit-0'), by('bare-doc'), 3)
  target('cache HIT ≥ 0.5 × NGINX proxy_cache (5 KB)', by('hit-0'), by('nginx-hit-0'), 0.5)
  target('proxied ≥ 0.85 × bare proxy, memory', by('mem-flags'), by('bare-flags'), 0.85)
  target('proxied ≥ 0.85 × bare proxy, Redis', by('redis-flags'), by('bare-flags'), 0.85)
  const p99Target = (label: string, a: Row | undefined, b: Row | undefined) => {
    if (a === undefined || b === undefined) { out.push(`| ${label} | – | – | – | not measured |`); return }
    const ratio = p99(a) / Math.max(0.001, p99(b))
    out.push(`| ${label} | ${ratio.toFixed(2)} (p99 ratio) | | | ${ratio <= 1.5 ? 'met' : 'MISSED'} |`)
  }
  p99Target('proxied p99 ≤ 1.5 × bare proxy, memory', by('mem-flags'), by('bare-flags'))
  p99Target('proxied p99 ≤ 1.5 × bare proxy, Redis', by('redis-flags'), by('bare-flags'))
  if (rep.rssAfterKeys !== undefined) {
    out.push(`| RSS after ${fmt(rep.rssAfterKeys.keys)} distinct keys < 300 MB | ${mb(rep.rssAfterKeys.rss)} | | | ${rep.rssAfterKeys.rss < 300 * 2 ** 20 ? 'met' : 'MISSED'} |`)
  }
  out.push('', 'Paired: each round runs every configuration once, neighbours seconds apart; the median of the rounds\' own ratios is less exposed to the machine\'s slow phases than the ratio of two medians. A target is met when both say so. CPU µs/req ratio: the server CPU per request of the comparison divided by flaggate\'s (above 1: flaggate is cheaper).', '')

  out.push('## Document size (cache hits)', '')
  out.push('| document | ceiling req/s | flaggate HIT req/s | NGINX HIT req/s | ceiling p99 | flaggate p99 | NGINX p99 | CPU µs/req ceiling / flaggate / NGINX | flaggate/ceiling | flaggate/NGINX |', '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|')
  for (const [i, d] of rep.docs.entries()) {
    const c = by(`ceiling-${i}`); const h = by(`hit-${i}`); const n = by(`nginx-hit-${i}`)
    out.push(`| ${d.label} (${fmt(d.bytes)} B) | ${fmt(rps(c))} | ${fmt(rps(h))} | ${fmt(rps(n))} | ${fmt(p99(c), 1)} | ${fmt(p99(h), 1)} | ${fmt(p99(n), 1)} | ${fmt(cpu(c), 0)} / ${fmt(cpu(h), 0)} / ${fmt(cpu(n), 0)} | ${(rps(h) / rps(c)).toFixed(2)} | ${(rps(h) / rps(n)).toFixed(2)} |`)
  }
  out.push('')

  if (rep.keyRows.length > 0) {
    out.push('## Distinct keys (proxied + limited flags requests, memory store)', '')
    out.push(`Each point: every key sent once (the warm-up pass sends the keys the earlier points did not, in at most ${WARM_BUDGET_S} s), then the rounds, rotating over the N keys; one gateway process for all points, in this order. The memory limiter holds at most 200,000 buckets (two per key here; least recently used go first), so past 100,000 keys every request of the rotation is a new bucket.`, '')
    out.push('| keys | req/s | p99 ms | CPU µs/req (gateway) | warm-up pass | gateway RSS after |', '|---:|---:|---:|---:|---:|---:|')
    for (const k of rep.keyRows) out.push(`| ${fmt(k.keys)} | ${fmt(rps(k.row))} | ${fmt(p99(k.row), 1)} | ${fmt(cpu(k.row), 1)} | keys ${fmt(k.warmFrom)}–${fmt(k.warmFrom + k.warmSent - 1)} in ${k.warmS.toFixed(1)} s | ${mb(k.rss)} |`)
    out.push('')
  }

  let kept = ''
  if (existsSync(values.out!)) {
    const old = readFileSync(values.out!, 'utf8')
    const at = old.indexOf(PROFILE_MARK)
    if (at !== -1) kept = old.slice(at)
  }
  writeFileSync(values.out!, out.join('\n') + '\n' + (kept === '' ? `${PROFILE_MARK}\n` : kept))
  console.log(`\n${out.join('\n')}\nwritten to ${values.out}`)
}

await main()
