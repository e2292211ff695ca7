/**
 * Where a flaggate request's CPU time goes, by Linux `perf` instead of V8's sampler. On this VM
 * V8's profiler put 88 % of a cache hit in `writev` (bench/results.md): its signal-driven samples
 * land on the syscall more often than the time spent there. `perf record` samples the kernel,
 * Node's C++ and the JIT code alike (node --perf-basic-prof names the JIT frames), and each
 * sample is billed to the nearest JavaScript function on its stack: Node's and V8's C++ and the
 * kernel work a function causes (a header validated, a Buffer encoded, a writev) count as that
 * function's.
 *
 *   hit      GET the environment document, answered from the cache
 *   flags    GET flags, proxied to an instant fake Core
 *   ceiling  the same document from bench/ceiling.ts (a bare fastify, same bytes and headers):
 *            `--compare` against a `hit` run shows what flaggate adds, function by function
 *   bare     GET flags through the bare proxy (bench/bare-proxy.ts): `--compare` against a `flags`
 *            run shows what flaggate adds to a proxied request, function by function
 *   nginx    the same document as an NGINX proxy_cache HIT (bench/nginx.ts, its one worker):
 *            no JavaScript, so only the kernel / user split says anything
 *
 * Needs `perf` (Debian: linux-perf). Usage:
 *   node --import tsx bench/perf.ts [--target hit|flags|bare|ceiling|nginx] [--redis] [--without REGEX] [--duration 6] [--top 40]
 *   node --import tsx bench/perf.ts --compare A.txt B.txt      (two saved runs, function by function)
 *   node --import tsx bench/perf.ts --data perf.data --requests N [--out A.txt]
 *                                   (a recording made elsewhere, e.g. `npm run bench -- --perf 'hit-0'`)
 */
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { Children, load, recordPerf } from './support.js'
import { ENV_DOC, FLAGS, policy } from './policy.js'
import { ensureNginx, startNginx } from './nginx.js'
import { startPrivateRedis } from '../test/support/redis-server.js'

const HZ = 1999

const { values, positionals } = parseArgs({
  options: {
    target: { type: 'string', default: 'hit' },
    redis: { type: 'boolean', default: false },
    duration: { type: 'string', default: '6' },
    connections: { type: 'string', default: '50' },
    top: { type: 'string', default: '40' },
    out: { type: 'string' },
    compare: { type: 'boolean', default: false },
    data: { type: 'string' },
    requests: { type: 'string' },
    /** leave out the capabilities whose name matches (bench/policy.ts), to see what one costs */
    without: { type: 'string' }
  },
  allowPositionals: true
})

/** µs per request by nearest JavaScript function, and by its file (or package). */
export interface PerfTable { requests: number; totalUs: number; kernelUs: number; byFunction: Map<string, number>; byFile: Map<string, number> }

/** Groups `perf script` output (one stack per sample, leaf first) into a PerfTable. */
export function tabulate (script: string, requests: number, hz = HZ): PerfTable {
  const usPerSample = 1e6 / hz / Math.max(1, requests)
  const byFunction = new Map<string, number>()
  const byFile = new Map<string, number>()
  let samples = 0
  let kernel = 0
  for (const block of script.split(/\n\s*\n/)) {
    const lines = block.split('\n').filter((l) => /^\s/.test(l))
    const frames = lines.map((l) => l.trim().replace(/^[0-9a-f]+\s+/, '').replace(/ \([^)]*\)$/, ''))
    if (frames.length === 0) continue
    samples++
    // the sampled instruction itself (leaf frame) in the kernel: syscalls, TCP, interrupts
    if (lines[0]!.includes('[kernel.kallsyms]')) kernel++
    const js = frames.find((f) => f.startsWith('JS:'))
    // no JavaScript on the stack: the event loop itself (epoll, reads), GC, timers
    const fn = js === undefined ? '(no JS frame)' : js.slice(3).replace(/\+0x[0-9a-f]+$/, '').replace(/^[*~^]/, '')
    byFunction.set(fn, (byFunction.get(fn) ?? 0) + usPerSample)
    const file = /(dist\/[\w/.-]+|node_modules\/[@\w.-]+|node:[\w/_]+)/.exec(fn)?.[1] ?? fn
    byFile.set(file, (byFile.get(file) ?? 0) + usPerSample)
  }
  return { requests, totalUs: samples * usPerSample, kernelUs: kernel * usPerSample, byFunction, byFile }
}

function render (t: PerfTable, top: number): string {
  const rows = (m: Map<string, number>, n: number) => [...m].sort((a, b) => b[1] - a[1]).slice(0, n).map(([k, v]) => `| ${k.replace(/\|/g, '\\|').replace('file://', '')} | ${v.toFixed(2)} |`)
  return [`Samples of the server's main thread: ${t.totalUs.toFixed(1)} µs per request (${t.requests} requests), of which ${t.kernelUs.toFixed(1)} µs in the kernel and ${(t.totalUs - t.kernelUs).toFixed(1)} µs in user space.`, '',
    '| file or package (nearest JS frame) | µs/req |', '|---|---:|', ...rows(t.byFile, 25), '',
    '| function (nearest JS frame) | µs/req |', '|---|---:|', ...rows(t.byFunction, top)].join('\n')
}

function parseSaved (text: string): PerfTable {
  const byFunction = new Map<string, number>()
  const byFile = new Map<string, number>()
  let section: Map<string, number> | undefined
  for (const line of text.split('\n')) {
    if (line.startsWith('| file or package')) section = byFile
    else if (line.startsWith('| function')) section = byFunction
    const m = /^\| (.+) \| ([\d.]+) \|$/.exec(line)
    if (m !== null && section !== undefined) section.set(m[1]!, Number(m[2]))
  }
  const total = Number(/([\d.]+) µs per request/.exec(text)?.[1] ?? NaN)
  const kernel = Number(/([\d.]+) µs in the kernel/.exec(text)?.[1] ?? NaN)
  return { requests: 0, totalUs: total, kernelUs: kernel, byFunction, byFile }
}

async function profile (): Promise<void> {
  if (spawnSync('perf', ['--version'], { stdio: 'ignore' }).error !== undefined) {
    console.error('perf is not installed (Debian: apt-get install -y linux-perf)')
    process.exit(2)
  }
  const children = new Children()
  const redis = values.redis ? await startPrivateRedis() : undefined
  try {
    const fast = await children.start(['--import', 'tsx', 'bench/upstream.ts'], { QUERY_LATENCY_MS: '0' }, (l) => l.url as string)
    const doc = await children.start(['--import', 'tsx', 'bench/upstream.ts'], { QUERY_LATENCY_MS: '1' }, (l) => l.url as string)
    const dir = mkdtempSync(join(tmpdir(), 'flaggate-perf-'))
    writeFileSync(join(dir, 'gateway.yaml'), policy({ docUrl: doc, fastUrl: fast, redis, ...(values.without !== undefined ? { without: new RegExp(values.without, 'i') } : {}) }))
    const target = values.target
    const gateway = await children.spawnFlaggate(join(dir, 'gateway.yaml'), target === 'hit' || target === 'flags' ? ['--perf-basic-prof'] : [])
    let gw: { pid: number; url: string } = gateway
    if (target === 'ceiling') {
      // the ceiling copies a HIT's bytes and headers from the gateway at start
      const c = await children.spawn(['--perf-basic-prof', '--import', 'tsx', 'bench/ceiling.ts'], { GATEWAY_URL: gateway.url }, (l) => typeof l.url === 'string')
      gw = { pid: c.pid, url: c.info.url as string }
    } else if (target === 'bare') {
      // the baseline of the proxied targets: @fastify/http-proxy in front of the same fake Core
      const b = await children.spawn(['--perf-basic-prof', '--import', 'tsx', 'bench/bare-proxy.ts'], { UPSTREAM_URL: fast }, (l) => typeof l.url === 'string')
      gw = { pid: b.pid, url: b.info.url as string }
    } else if (target === 'nginx') {
      const bin = ensureNginx().bin
      if (bin === undefined) throw new Error('nginx is not installed (Debian: apt-get install -y nginx)')
      const n = await startNginx(children, bin, { docUpstream: doc, fastUpstream: fast })
      // the master only supervises: the worker serves every request
      const worker = spawnSync('pgrep', ['-P', String(n.pid)], { encoding: 'utf8' }).stdout.trim().split('\n')[0]
      gw = { pid: Number(worker), url: n.url }
    }
    const proxied = values.target === 'flags' || values.target === 'bare'
    const url = gw.url + (proxied ? FLAGS : ENV_DOC)
    const headers = { 'x-environment-key': proxied ? 'dev_client_key' : 'ser.dev_server_key' }
    const connections = Number(values.connections)
    await load(url, { connections, durationS: 3, headers }) // JIT, pools, cache fill
    const data = join(dir, 'perf.data')
    const seconds = Number(values.duration)
    // the main thread only (-t): the event loop, where a request's work is done
    const rec = recordPerf(gw.pid, seconds, data, HZ)
    const r = await load(url, { connections, durationS: seconds, headers })
    await rec
    const script = spawnSync('perf', ['script', '-i', data], { maxBuffer: 1 << 30 }).stdout.toString()
    const table = tabulate(script, r.requests)
    const text = `target ${values.target}${values.redis ? ' (Redis)' : ''}: ${r.rps.toFixed(0)} req/s, p99 ${r.p99.toFixed(1)} ms\n\n${render(table, Number(values.top))}\n`
    console.log(text)
    if (values.out !== undefined) writeFileSync(values.out, text)
  } finally {
    children.stopAll()
    await redis?.stop()
  }
}

function compare (a: string, b: string): void {
  const [ta, tb] = [parseSaved(readFileSync(a, 'utf8')), parseSaved(readFileSync(b, 'utf8'))]
  console.log(`total µs/req: a ${ta.totalUs.toFixed(1)} (kernel ${ta.kernelUs.toFixed(1)}), b ${tb.totalUs.toFixed(1)} (kernel ${tb.kernelUs.toFixed(1)})\n`)
  for (const [title, ma, mb] of [['file or package', ta.byFile, tb.byFile], ['function', ta.byFunction, tb.byFunction]] as const) {
    const keys = [...new Set([...ma.keys(), ...mb.keys()])].sort((x, y) => Math.abs((mb.get(y) ?? 0) - (ma.get(y) ?? 0)) - Math.abs((mb.get(x) ?? 0) - (ma.get(x) ?? 0)))
    console.log(`| ${title} | a | b | b − a |\n|---|---:|---:|---:|`)
    for (const k of keys.slice(0, 25)) console.log(`| ${k} | ${(ma.get(k) ?? 0).toFixed(2)} | ${(mb.get(k) ?? 0).toFixed(2)} | ${((mb.get(k) ?? 0) - (ma.get(k) ?? 0)).toFixed(2)} |`)
    console.log('')
  }
}

function fromData (file: string, requests: number): void {
  const script = spawnSync('perf', ['script', '-i', file], { maxBuffer: 1 << 30 }).stdout.toString()
  const text = `${file}\n\n${render(tabulate(script, requests), Number(values.top))}\n`
  console.log(text)
  if (values.out !== undefined) writeFileSync(values.out, text)
}

if (values.compare) compare(positionals[0]!, positionals[1]!)
else if (values.data !== undefined) fromData(values.data, Number(values.requests))
else await profile()
