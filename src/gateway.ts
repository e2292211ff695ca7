/**
 * Composition: builds every part from the policy file, listens on both ports, reloads on file
 * change / SIGHUP / admin call, and drains on close. The only place that wires rooms together.
 */
import { readFileSync } from 'node:fs'
import type { FastifyInstance } from 'fastify'
import type { Logger } from 'pino'
import { PolicyStore } from './policy/store.js'
import { formatPolicyError } from './policy/load.js'
import { createMetrics, type Metrics } from './metrics/registry.js'
import { UpstreamClient } from './upstream/index.js'
import { buildPublicApp, type Lifecycle, type RoomPlugin } from './app.js'
import { buildAdminApp, type AdminExtension } from './admin/app.js'
import { createLogger } from './shared/logger.js'
import { createRedisStore } from './store/redis.js'
import { createCacheRoom } from './cache/index.js'
import { createRateLimitRoom } from './rate-limit/plugin.js'
import edgeRouting, { type EdgePluginOptions } from './edge/plugin.js'
import { createBlockingRoom } from './blocking/index.js'
import { createProbesRoom } from './probes/index.js'
import { createBreakerRoom } from './breaker/index.js'
import { createLocalRoom } from './local/index.js'

export const VERSION: string = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version

export interface GatewayOptions {
  configPath: string
  env?: NodeJS.ProcessEnv
  logger?: Logger
  /** reload when the file changes (default true) */
  watch?: boolean
}

export interface Gateway {
  store: PolicyStore
  metrics: Metrics
  logger: Logger
  /** the upstream module; a breaker sets `client.gate` */
  client: UpstreamClient
  app: FastifyInstance
  admin: FastifyInstance
  /** http://host:port of the public listener */
  url: string
  adminUrl: string
  lifecycle: Lifecycle
  reload: PolicyStore['reload']
  /** stop accepting, readyz 503, finish in-flight requests (bounded by server.shutdownTimeout) */
  close: () => Promise<void>
}

function urlOf (app: FastifyInstance): string {
  const addr = app.server.address()
  if (addr === null || typeof addr === 'string') return String(addr)
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address
  return `http://${host === '0.0.0.0' ? '127.0.0.1' : host}:${addr.port}`
}

export async function startGateway (opts: GatewayOptions): Promise<Gateway> {
  const env = opts.env ?? process.env
  const logger = opts.logger ?? createLogger(env)
  const store = PolicyStore.open(opts.configPath, env)
  const metrics = createMetrics()
  const client = new UpstreamClient({ metrics, logger })
  client.configure(store.current)
  const lifecycle: Lifecycle = { draining: false }
  const closers: Array<() => Promise<void> | void> = []

  const rooms: RoomPlugin[] = []
  const extraRoutes: RoomPlugin[] = []
  const extensions: AdminExtension[] = []

  // One Redis connection (and breaker) for every room that shares state between replicas;
  // closed after all of them.
  const redisConfig = store.current.data.store?.redis
  const redis = redisConfig === undefined ? undefined : createRedisStore(redisConfig, logger)
  if (redis !== undefined) closers.push(() => redis.close())

  // Blocking first of all the rooms: a blocked client costs no token, no cache work, no upstream.
  const blocking = createBlockingRoom({ policy: () => store.current, policyFile: store.file, metrics, logger, ...(redis !== undefined ? { redis } : {}) })
  rooms.push(blocking.room)
  extensions.push(blocking.admin)
  closers.push(() => blocking.close())
  // Edge routing first (onRequest, right after routing): the cache key, the fill, the limits'
  // view and the proxy all see the upstream the request really goes to.
  rooms.push({ plugin: edgeRouting, opts: { metrics, isOpen: (upstream) => client.gate.isOpen(upstream) } satisfies EdgePluginOptions })

  // Rooms in hook order (STYLE.md 4.3): cache conditional 304 (onRequest) → rate limit
  // (onRequest) → fresh cache HIT (onRequest) → cache lookup (preHandler) → proxy. The cache
  // registers first so that a 304 from the cache costs no token.
  // Local evaluation (src/local): its step runs after blocks and limits; a signed webhook refreshes its documents
  const local = createLocalRoom({ policy: () => store.current, policyFile: store.file, client, metrics, logger, version: VERSION, ...(redis !== undefined ? { redis } : {}) })
  extensions.push(local.admin)
  closers.push(() => local.close())
  const cache = createCacheRoom({ policy: () => store.current, client, metrics, logger, ...(redis !== undefined ? { redis } : {}), onWebhook: (t) => { local.onWebhook(t) } })
  rooms.push(cache.room)
  extraRoutes.push(cache.webhook)
  extensions.push(cache.admin)
  closers.push(() => cache.close())

  const rateLimit = createRateLimitRoom({ redis, metrics })
  rooms.push({ plugin: rateLimit.plugin, opts: rateLimit.opts })
  if (local.room !== undefined) rooms.push(local.room)
  // fresh HITs in onRequest, once the limiter has decided (a HIT costs a token, a 304 does not)
  rooms.push(cache.hits)
  extensions.push({ status: rateLimit.status })
  closers.push(() => rateLimit.close())

  // Synthetic probes call the public listener, so they start once it listens (below)
  const probes = createProbesRoom({ metrics, logger, version: VERSION })
  extensions.push(probes.admin)
  store.on('reload', (policy) => { probes.reload(policy) })
  // Breakers and maxInFlight per upstream: the room sets `client.gate`, which every upstream
  // attempt asks first (proxy, cache fill, probe); the cache reads gate.isOpen to serve stale.
  const breakers = createBreakerRoom({ policy: () => store.current, client, metrics, logger, version: VERSION })
  extensions.push(breakers.admin)
  closers.push(() => breakers.close())

  store.on('reload', (policy, previous) => {
    client.configure(policy)
    breakers.reload(policy)
    cache.reload(policy)
    blocking.reload(policy)
    metrics.policyReloads.inc({ result: 'ok' })
    logger.info({ version: policy.version, previous: previous.version, restartRequired: store.restartRequired }, 'policy reloaded')
  })
  store.on('error', (errors) => {
    metrics.policyReloads.inc({ result: 'error' })
    logger.error({ errors: errors.map(formatPolicyError) }, 'policy reload refused: the previous policy stays in force')
  })
  const reload = (): ReturnType<PolicyStore['reload']> => store.reload()

  const app = await buildPublicApp({ store, client, metrics, logger, lifecycle, rooms, extraRoutes })
  const admin = await buildAdminApp({ store, metrics, logger, lifecycle, version: VERSION, extensions, reload })

  local.start()
  // the blocks of the previous run (state file) or of the fleet (Redis), bounded: serve anyway
  await blocking.ready()
  const p = store.current.data
  try {
    await admin.listen({ host: p.admin.listen.host, port: p.admin.listen.port })
    await app.listen({ host: p.server.listen.host, port: p.server.listen.port })
  } catch (err) {
    // a port in use: release everything already opened (Redis connections, timers) so the
    // process can exit with the error instead of hanging
    await app.close().catch(() => {})
    await admin.close().catch(() => {})
    for (const c of closers.reverse()) await Promise.resolve(c()).catch(() => {})
    await client.close(true)
    throw err
  }
  if (opts.watch !== false) store.watch()
  probes.start(urlOf(app), store.current)

  let closing: Promise<void> | undefined
  const close = async (): Promise<void> => {
    closing ??= (async () => {
      lifecycle.draining = true
      store.close()
      await probes.close()
      const timeoutMs = store.current.data.server.shutdownTimeout
      let timer: NodeJS.Timeout | undefined
      const deadline = new Promise<'timeout'>((resolve) => { timer = setTimeout(() => resolve('timeout'), timeoutMs) })
      const drained = await Promise.race([app.close().then(() => 'drained' as const), deadline])
      clearTimeout(timer)
      if (drained === 'timeout') {
        logger.warn({ timeoutMs }, 'shutdown timeout: closing the remaining connections')
        app.server.closeAllConnections()
      }
      for (const c of closers.reverse()) await c()
      await client.close(drained === 'timeout')
      await admin.close()
      logger.flush()
    })()
    return await closing
  }

  return { store, metrics, logger, client, app, admin, url: urlOf(app), adminUrl: urlOf(admin), lifecycle, reload, close }
}
