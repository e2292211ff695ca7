/**
 * `flaggate serve`: the only command that touches process signals. SIGTERM/SIGINT drain and exit 0,
 * SIGHUP reloads the policy.
 */
import { setFlagsFromString } from 'node:v8'
import { PolicyInvalidError } from '../policy/load.js'
import { fail } from './admin-client.js'
import { stateFilePath } from '../blocking/capability.js'
import type { Gateway } from '../gateway.js'

/** What the start-up line names: the first thing an operator reads when a gateway misbehaves. */
function startupFields (gw: Gateway): Record<string, unknown> {
  const p = gw.store.current
  const redis = p.data.store?.redis
  const upstreams: Record<string, string> = {}
  for (const [name, t] of Object.entries(p.targets)) upstreams[name] = `${t.origin}${t.basePath}`
  return {
    policyFile: gw.store.file,
    policy: p.version,
    url: gw.url,
    admin: gw.adminUrl,
    upstreams,
    store: redis === undefined
      ? `memory (this replica only; blocks kept in ${stateFilePath(p, gw.store.file)})`
      : `redis ${redis.url !== undefined ? new URL(redis.url).host : redis.sentinels !== undefined ? `sentinels ${redis.sentinels.join(',')}` : `cluster ${redis.cluster!.join(',')}`}`
  }
}

/**
 * V8 lets the old generation grow to up to four times what survived the last full collection
 * before it collects again. A gateway's old space fills with garbage at the rate new clients
 * arrive (each new key's bucket and memo entries live until evicted, long enough to be promoted),
 * so under a rotation of a million keys the process sat at 240–350 MB of RSS around 60 MB of
 * live objects; with growth fixed at 1.5× it stays near 190 MB at the same throughput
 * (bench/results.md, "Fourth round"). An operator's own `node --heap-growing-percent=N` wins (Node
 * refuses the flag in NODE_OPTIONS).
 */
const HEAP_GROWING_PERCENT = 50
function boundHeapGrowth (): void {
  const given = process.execArgv.some((a) => a.startsWith('--heap-growing-percent'))
  if (!given) setFlagsFromString(`--heap-growing-percent=${HEAP_GROWING_PERCENT}`)
}

export const DEFAULT_CONFIG = 'config/gateway.yaml'

export async function serve (opts: { config?: string }): Promise<void> {
  boundHeapGrowth()
  const configPath = opts.config ?? process.env.FLAGGATE_CONFIG ?? DEFAULT_CONFIG
  const { startGateway } = await import('../gateway.js')
  let gw
  try {
    gw = await startGateway({ configPath })
  } catch (err) {
    if (err instanceof PolicyInvalidError) fail(`the policy file is invalid, not starting:\n${err.message}`)
    const e = err as NodeJS.ErrnoException
    if (e.code === 'EADDRINUSE') fail(`cannot start: ${e.message} (another process listens there: change server.listen / admin.listen, or FLAGGATE_LISTEN / FLAGGATE_ADMIN_LISTEN)`)
    fail(`cannot start: ${e.message}`)
  }
  gw.logger.info(startupFields(gw), 'flaggate serving')
  // Not close-with-grace: its defaults treat SIGHUP (our reload) as a shutdown, and gw.close()
  // already bounds the drain by server.shutdownTimeout; a crash exits non-zero for the supervisor.
  let stopping = false
  const stop = (signal: string): void => {
    if (stopping) return
    stopping = true
    gw.logger.info({ signal }, 'draining: no new connections, finishing in-flight requests')
    // the exit handler of the logger writes what is still batched, synchronously
    gw.close().then(() => process.exit(0), (err) => { gw.logger.error({ err }, 'shutdown failed'); process.exit(1) })
  }
  process.on('SIGTERM', () => stop('SIGTERM'))
  process.on('SIGINT', () => stop('SIGINT'))
  process.on('SIGHUP', () => { gw.reload() })
}
