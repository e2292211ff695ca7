/**
 * The fake Flagsmith Core in its own process, for benchmarks: prints {"url", "docBytes"} and serves
 * until killed.
 *
 * QUERY_LATENCY_MS, POOL_SIZE   the fake database (Core's environment document is 11 queries)
 * DOC_BYTES                     grow the Development environment's document (identity overrides,
 *                               ~0.6 KB each) to at least this size: the 5 KB / 50 KB / 2 MB rows
 * BENCH_KEYS=1                  every `ser.bench-<n>` key is a server key of Development, so the
 *                               distinct-keys curve gets real answers for a million keys
 */
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
process.stdout.write(JSON.stringify({ url: core.url, docBytes: bytes }) + '\n')
process.on('SIGTERM', () => { void core.close().then(() => process.exit(0)) })
