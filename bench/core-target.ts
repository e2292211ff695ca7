/**
 * Which Core a scenario runs against, chosen with `--core`:
 *
 *   (absent) | fake   the fake Core (bench/upstream.ts): a database pool, POOL connections, a
 *                     per-query latency; keys dev_client_key / ser.dev_server_key
 *   model             the gunicorn-like model (bench/model-core.ts): WORKERS sync workers, an
 *                     accept backlog, a latency per database round trip; same keys as the fake
 *   http://HOST:PORT  any running Core, e.g. the real Flagsmith Core (docs/real-core.md), with
 *                     `--client-key` and `--server-key`; its database latency is raised through a
 *                     delaying proxy in front of its PostgreSQL when `--db-delay-proxy` names the
 *                     proxy's control URL (bench/delay-proxy.ts), and cannot be changed otherwise
 *
 * The fake and the model are started fresh for each phase that asks (`start()` again); a Core
 * given by URL is the same one throughout, so `settle()` waits for it to drain between phases.
 */
import type { Children } from './support.js'

export const CORE_OPTIONS = {
  core: { type: 'string' },
  'client-key': { type: 'string' },
  'server-key': { type: 'string' },
  'db-delay-proxy': { type: 'string' },
  workers: { type: 'string', default: '2' },
  backlog: { type: 'string', default: '2048' }
} as const

export interface CoreArgs {
  core?: string | undefined
  'client-key'?: string | undefined
  'server-key'?: string | undefined
  'db-delay-proxy'?: string | undefined
  workers?: string | undefined
  backlog?: string | undefined
}

export type CoreKind = 'fake' | 'model' | 'external'

export interface RunningCore {
  readonly url: string
  /** Sets the database latency: the fake's per-query time, the model's or the proxy's per round trip. */
  setDbLatency: (ms: number) => Promise<void>
  /** What the Core reports of itself, when it can (not a Core given by URL). */
  stats: () => Promise<{ busy: number; maxBusySeen: number; requests: number } | undefined>
}

export interface CoreTarget {
  readonly kind: CoreKind
  readonly clientKey: string
  readonly serverKey: string
  /** Whether `setDbLatency` does anything (a URL without `--db-delay-proxy`: no). */
  readonly latencyKnob: boolean
  /** One sentence for the scenario's header. */
  describe: () => string
  /** A Core to use, started in `children` (fake, model) or the given one, its latency set to `dbLatencyMs`. */
  start: (children: Children, dbLatencyMs: number, opts?: { poolSize?: number }) => Promise<RunningCore>
  /** Between phases: a Core given by URL finishes what the last phase left (no-op for fresh ones). */
  settle: () => Promise<void>
}

export function coreTarget (args: CoreArgs): CoreTarget {
  const spec = args.core ?? 'fake'
  if (spec === 'fake' || spec === 'model') {
    const model = spec === 'model'
    const workers = Number(args.workers ?? 2)
    const backlog = Number(args.backlog ?? 2048)
    return {
      kind: spec,
      clientKey: args['client-key'] ?? 'dev_client_key',
      serverKey: args['server-key'] ?? 'ser.dev_server_key',
      latencyKnob: true,
      describe: () => model ? `gunicorn-like Core model, ${workers} sync workers, backlog ${backlog}` : 'fake Core',
      start: async (children, dbLatencyMs, opts = {}) => {
        const env = model
          ? { WORKERS: String(workers), BACKLOG: String(backlog), DB_LATENCY_MS: String(dbLatencyMs) }
          : { POOL_SIZE: String(opts.poolSize ?? 8), QUERY_LATENCY_MS: String(dbLatencyMs) }
        const line = await children.start(['--import', 'tsx', model ? 'bench/model-core.ts' : 'bench/upstream.ts'], env,
          (l) => typeof l.control === 'string' ? JSON.stringify(l) : undefined)
        const { url, control } = JSON.parse(line) as { url: string; control: string }
        return {
          url,
          setDbLatency: async (ms) => {
            await postJson(`${control}/db`, model ? { dbLatencyMs: ms } : { queryLatencyMs: ms })
          },
          stats: async () => await (await fetch(`${control}/stats`)).json() as { busy: number; maxBusySeen: number; requests: number }
        }
      },
      settle: async () => {}
    }
  }
  let base: URL
  try {
    base = new URL(spec)
  } catch {
    throw new Error(`--core must be "fake", "model" or a Core URL like http://127.0.0.1:18500, got ${JSON.stringify(spec)}`)
  }
  const clientKey = args['client-key']
  const serverKey = args['server-key']
  if (clientKey === undefined || serverKey === undefined) throw new Error('--core URL needs --client-key and --server-key (the real Core\'s start command prints them)')
  const proxy = args['db-delay-proxy']
  const url = base.origin
  return {
    kind: 'external',
    clientKey,
    serverKey,
    latencyKnob: proxy !== undefined,
    describe: () => `Core at ${url}${proxy === undefined ? ' (no database latency knob)' : `, database delayed through ${proxy}`}`,
    start: async (_children, dbLatencyMs) => {
      const running: RunningCore = {
        url,
        setDbLatency: async (ms) => { if (proxy !== undefined) await postJson(`${proxy}/delay`, { delayMs: ms }) },
        stats: async () => undefined
      }
      await running.setDbLatency(dbLatencyMs)
      return running
    },
    settle: async () => {
      // a sync-worker Core works through every request it accepted, even those whose client left;
      // it has drained when a liveness probe is answered quickly again
      const deadline = Date.now() + 60_000
      while (Date.now() < deadline) {
        const t0 = performance.now()
        try {
          const res = await fetch(`${url}/health/liveness/`, { signal: AbortSignal.timeout(2000) })
          await res.arrayBuffer()
          if (res.ok && performance.now() - t0 < 100) return
        } catch {}
        await new Promise((resolve) => setTimeout(resolve, 500))
      }
    }
  }
}

async function postJson (url: string, body: unknown): Promise<void> {
  const res = await fetch(url, { method: 'POST', body: JSON.stringify(body) })
  if (!res.ok) throw new Error(`${url}: ${res.status} ${await res.text()}`)
}
