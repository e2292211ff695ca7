/** The fake Flagsmith Core in its own process, for benchmarks: prints {"url"} and serves until killed. */
import { startFakeCore } from '../test/support/fake-flagsmith.js'

const core = await startFakeCore({ db: { queryLatencyMs: Number(process.env.QUERY_LATENCY_MS ?? 0), poolSize: Number(process.env.POOL_SIZE ?? 20) } })
process.stdout.write(JSON.stringify({ url: core.url }) + '\n')
process.on('SIGTERM', () => { void core.close().then(() => process.exit(0)) })
