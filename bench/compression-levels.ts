/**
 * `node --import tsx bench/compression-levels.ts`: how small and how slow each brotli and gzip
 * level makes the bench's 5 KB, 100 KB and 2 MB environment documents (the fake Core's, grown with
 * identity overrides as bench/upstream.ts does), and whether the asynchronous zlib calls keep the
 * event loop free while a 2 MB document is compressed. Prints Markdown; the levels the gateway
 * uses (src/compress/levels.ts) were chosen from its output (docs/compression.md).
 *
 * Usage: node --import tsx bench/compression-levels.ts [--runs 5]
 */
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { parseArgs } from 'node:util'
import zlib from 'node:zlib'
import { startFakeCore, type FakeEnvironment } from '../test/support/fake-flagsmith.js'
import { compressForms } from '../src/compress/forms.js'
import { brotliOptions, gzipOptions } from '../src/compress/levels.js'

const { values } = parseArgs({ options: { runs: { type: 'string', default: '5' } } })
const RUNS = Number(values.runs)
const SIZES = [{ label: '5 KB', bytes: 5 * 1024 }, { label: '100 KB', bytes: 100 * 1024 }, { label: '2 MB', bytes: 2 * 1024 * 1024 }]
// quality 11 is left out: it took 47 s for the 2 MB document
const BROTLI = [1, 3, 4, 5, 6, 9]
const GZIP = [1, 4, 6, 9]

const core = await startFakeCore()
const dev = core.envs[0] as FakeEnvironment

async function fetchDoc (): Promise<Buffer> {
  const res = await fetch(`${core.url}/api/v1/environment-document/`, { headers: { 'x-environment-key': dev.serverKeys[0]! } })
  return Buffer.from(await res.arrayBuffer())
}

/** The document grown to at least `target` bytes (identity overrides, as bench/upstream.ts). */
async function documentOf (target: number): Promise<Buffer> {
  dev.identityOverrides = 0
  let doc = await fetchDoc()
  if (doc.length >= target) return doc
  dev.identityOverrides = 100
  const per = ((await fetchDoc()).length - doc.length) / 100
  dev.identityOverrides = Math.ceil((target - doc.length) / per)
  while ((doc = await fetchDoc()).length < target) dev.identityOverrides += 1 + Math.ceil((target - doc.length) / per)
  return doc
}

function medianMs (fn: () => void): number {
  const xs: number[] = []
  for (let i = 0; i < RUNS; i++) {
    const t = process.hrtime.bigint()
    fn()
    xs.push(Number(process.hrtime.bigint() - t) / 1e6)
  }
  xs.sort((a, b) => a - b)
  return xs[Math.floor(xs.length / 2)]!
}

const out: string[] = []
out.push(`Node ${process.version}, ${RUNS} runs per cell (median); one core's time, measured with the synchronous calls.`, '')
out.push('| document | codec | level | bytes | ratio | ms to compress |', '|---|---|---|---:|---:|---:|')
const docs = new Map<string, Buffer>()
for (const size of SIZES) {
  const doc = await documentOf(size.bytes)
  docs.set(size.label, doc)
  out.push(`| ${size.label} (${doc.length} B) | identity | – | ${doc.length} | 1.0 | – |`)
  for (const q of BROTLI) {
    const opts = { params: { [zlib.constants.BROTLI_PARAM_QUALITY]: q, [zlib.constants.BROTLI_PARAM_SIZE_HINT]: doc.length, [zlib.constants.BROTLI_PARAM_MODE]: zlib.constants.BROTLI_MODE_TEXT } }
    const n = zlib.brotliCompressSync(doc, opts).length
    const ms = medianMs(() => zlib.brotliCompressSync(doc, opts))
    out.push(`| | br | ${q} | ${n} | ${(doc.length / n).toFixed(1)} | ${ms.toFixed(2)} |`)
  }
  for (const l of GZIP) {
    const n = zlib.gzipSync(doc, { level: l }).length
    const ms = medianMs(() => zlib.gzipSync(doc, { level: l }))
    out.push(`| | gzip | ${l} | ${n} | ${(doc.length / n).toFixed(1)} | ${ms.toFixed(2)} |`)
  }
}

// The event loop while the 2 MB document's forms are made: a 1 ms interval timer should keep
// firing on time if the work runs on libuv's threadpool, and stall for the whole compression if
// it runs on the main thread (the synchronous calls, for comparison).
const big = docs.get('2 MB')!
async function loopDelay (work: () => Promise<unknown>): Promise<{ maxMs: number; p99Ms: number; wallMs: number }> {
  const h = monitorEventLoopDelay({ resolution: 1 })
  h.enable()
  const t = process.hrtime.bigint()
  await work()
  const wallMs = Number(process.hrtime.bigint() - t) / 1e6
  h.disable()
  return { maxMs: h.max / 1e6, p99Ms: h.percentile(99) / 1e6, wallMs }
}
const pause = async (): Promise<void> => await new Promise((resolve) => setTimeout(resolve, 20))
const rows: Array<[string, () => Promise<unknown>]> = [
  ['nothing (a 20 ms pause only: the machine\'s own noise)', async () => {}],
  ['synchronous (brotliCompressSync + gzipSync)', async () => { zlib.brotliCompressSync(big, brotliOptions(big.length)); zlib.gzipSync(big, gzipOptions) }],
  ['asynchronous (compressForms: brotliCompress + gzip on the threadpool)', async () => await compressForms(big)]
]
out.push('', `Event-loop delay while the 2 MB document (${big.length} B) gets both forms at the chosen levels (monitorEventLoopDelay, 1 ms resolution; median of 3 runs each):`, '')
out.push('| how | wall ms | loop delay p99 ms | loop delay max ms |', '|---|---:|---:|---:|')
for (const [label, work] of rows) {
  const runs: Array<{ maxMs: number; p99Ms: number; wallMs: number }> = []
  for (let i = 0; i < 3; i++) runs.push(await loopDelay(async () => { await pause(); await work(); await pause() }))
  const med = (f: (r: { maxMs: number; p99Ms: number; wallMs: number }) => number): string => runs.map(f).sort((a, b) => a - b)[1]!.toFixed(1)
  out.push(`| ${label} | ${med((r) => r.wallMs)} | ${med((r) => r.p99Ms)} | ${med((r) => r.maxMs)} |`)
}
process.stdout.write(out.join('\n') + '\n')
await core.close()
