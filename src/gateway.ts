/**
 * Composition root: builds every capability from the policy file, wires them (the only place
 * that does), listens on both ports, reloads on file change / SIGHUP / admin call, and drains on
 * close. The order of the request's steps is not decided here: the public app registers the
 * capabilities' steps in the order of the pipeline table (contracts/pipeline.ts).
 */
import { DecisionRates } from './observe/decision-rates.js'
import { readFileSync } from 'node:fs'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { GatewayError } from './errors.js'
import { clientOf } from './routing/client.js'
import type { Logger } from 'pino'
import { PolicyStore } from './policy/store.js'
import { formatPolicyError } from './policy/load.js'
import { createMetrics, type Metrics } from './metrics/registry.js'
import { UpstreamClient } from './upstream/index.js'
import { buildPublicApp } from './app.js'
import { buildAdminApp } from './admin/app.js'
import type { Capability, Lifecycle, Steps } from './contracts/capability.js'
import { createLogger } from './shared/logger.js'
import { createRedisStore } from './store/redis.js'
import { TOKEN_BUCKET_SCRIPT } from './rate-limit/redis-store.js'
import { createCache } from './cache/capability.js'
import { createRateLimit } from './rate-limit/capability.js'
import { createEdge } from './edge/capability.js'
import { createBlocking } from './blocking/capability.js'
import { createTop } from './top/capability.js'
import { createProbes } from './probes/capability.js'
import { createBreakers } from './breaker/capability.js'
import { createLocal } from './local/index.js'
import type { RequestTracing } from './observe/tracing.js'

export const VERSION: string = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version

/** the name route-scoped blocks (`routes: [webhook]`) give the Flagsmith webhook; unscoped blocks apply to it too */
export const WEBHOOK_ROUTE = 'webhook'

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
  /** the upstream module; its gate is the breakers' */
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

  // One Redis connection (and breaker) for every capability that shares state between replicas;
  // closed after all of them. The limiter's script batches its own commands: keep it out of
  // ioredis's auto-pipelining.
  const redisConfig = store.current.data.store?.redis
  const redis = redisConfig === undefined ? undefined : createRedisStore(redisConfig, logger, { selfBatchedCommands: [TOKEN_BUCKET_SCRIPT] })
  if (redis !== undefined) closers.push(() => redis.close())

  // Breakers and maxInFlight per upstream: their gate is what every upstream attempt asks first
  // (proxy, cache fill, probe); Edge and the cache read gate.isOpen; the load gauges read it.
  const breakers = createBreakers({ policy: () => store.current, client, metrics, logger, version: VERSION })
  client.gate = breakers.gate
  metrics.upstreamLoad.read = breakers.upstreamLoad

  // the busiest clients of this replica (GET /admin/top), told of each answer by the blocking step
  const top = createTop()
  const blocking = createBlocking({ policy: () => store.current, policyFile: store.file, metrics, logger, recordOutcome: top.record, ...(redis !== undefined ? { redis } : {}) })
  const edge = createEdge({ metrics, isOpen: (upstream) => client.gate.isOpen(upstream) })
  // local evaluation (src/local): a signed Flagsmith webhook refreshes its documents at once
  const local = createLocal({ policy: () => store.current, policyFile: store.file, client, metrics, logger, version: VERSION, ...(redis !== undefined ? { redis } : {}) })
  const rateLimit = createRateLimit({ redis, metrics })
  // the webhook route sits beside the proxied scope: blocks and its own limit are asked here
  const admitWebhook = (request: FastifyRequest): GatewayError | undefined => {
    const policy = store.current
    const c = clientOf(request.socket.remoteAddress, request.headers['x-forwarded-for'], policy)
    const limit = policy.data.webhooks.flagsmith?.limit
    return blocking.check(WEBHOOK_ROUTE, undefined, c.ip, c.net, request.headers['user-agent']) ??
      (limit === undefined ? undefined : rateLimit.webhookBudget.take(c.net, limit, 'too many webhook requests from this address'))
  }
  const cache = createCache({ policy: () => store.current, client, metrics, logger, ...(redis !== undefined ? { redis } : {}), onWebhook: (t) => { local.onWebhook(t) }, admitWebhook })
  // Synthetic probes call the public listener, so they start once it listens (below)
  const probes = createProbes({ metrics, logger, version: VERSION })

  // in the order of creation; closed in reverse. Where each step runs is the pipeline table's business.
  const capabilities: Capability[] = [breakers, top, blocking, edge, cache, rateLimit, local, probes]
  const steps: Steps = {}
  for (const c of capabilities) {
    for (const [step, entry] of Object.entries(c.steps ?? {}) as Array<[keyof Steps, NonNullable<Steps[keyof Steps]>]>) {
      if (steps[step] !== undefined) throw new Error(`two capabilities claim the pipeline step '${step}'`)
      steps[step] = entry
    }
  }
  const routes = capabilities.flatMap((c) => c.routes ?? [])
  const extensions = capabilities.flatMap((c) => c.admin === undefined ? [] : [c.admin])
  // the probes stop before the drain (close, below): a probe of a closing listener would only report it
  for (const c of capabilities) if (c.close !== undefined && c !== probes) closers.push(c.close)

  store.on('reload', (policy, previous) => {
    client.configure(policy)
    for (const c of capabilities) c.reload?.(policy)
    metrics.policyReloads.inc({ result: 'ok' })
    logger.info({ version: policy.version, previous: previous.version, restartRequired: store.restartRequired }, 'policy reloaded')
  })
  store.on('error', (errors) => {
    metrics.policyReloads.inc({ result: 'error' })
    logger.error({ errors: errors.map(formatPolicyError) }, 'policy reload refused: the previous policy stays in force')
  })
  const reload = (): ReturnType<PolicyStore['reload']> => store.reload()

  // OpenTelemetry only when the policy starts with a `tracing` section: without one, its packages
  // are never loaded and no request pays for it (adding the section later needs a restart)
  const tracing = await startTracing(store.current, logger, (policy, upstream) => policy.data.breakers[upstream] === undefined ? undefined : breakers.gate.breaker(upstream)?.state())
  if (tracing !== undefined) {
    closers.unshift(() => tracing.close()) // closed last, once every request (and its span) has ended
    store.on('reload', (policy) => { tracing.reload(policy) })
  }

  // each upstream's URL and last failure, and requests per second by decision, in /admin/status
  const rates = new DecisionRates()
  extensions.push({ status: () => ({ ...client.status(), traffic: rates.status() }) })
  const app = await buildPublicApp({ store, client, metrics, logger, lifecycle, steps, routes, rates, ...(tracing !== undefined ? { tracing } : {}) })
  const admin = await buildAdminApp({ store, metrics, logger, lifecycle, version: VERSION, extensions, reload })

  lifecycle.warnings = () => [...local.readinessWarnings(), ...blocking.readinessWarnings()]
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

async function startTracing (policy: PolicyStore['current'], logger: Logger, breakerState: (policy: PolicyStore['current'], upstream: string) => string | undefined): Promise<RequestTracing | undefined> {
  const config = policy.data.tracing
  if (config === undefined) return undefined
  const { createTracing } = await import('./observe/tracing.js')
  logger.info({ otlp: config.otlp, sampleRatio: config.sampleRatio }, 'tracing on: spans exported over OTLP/HTTP')
  return createTracing({ tracing: config, version: VERSION, logger, breakerState })
}
