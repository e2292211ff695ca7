/**
 * Everything the composition (gateway.ts) needs from the cache, built in one call: the document
 * cache, the purge bus, the request-path plugin, the webhook route and the admin extension.
 */
import type { Logger } from 'pino'
import { DocumentCache } from './core.js'
import type { PurgeTarget } from './document.js'
import type { Clock } from '../shared/clock.js'
import cacheLookupStep, { type CachePluginOptions } from './lookup-step.js'
import { cacheConditionalStep, cacheFreshHitStep } from './hit-steps.js'
import { PurgeBus, type PurgeBusRedis } from './purge.js'
import { cacheAdminExtension } from './admin.js'
import webhooks, { type WebhookPluginOptions } from './webhook.js'
import type { Metrics } from '../metrics/registry.js'
import type { HotChild } from '../metrics/hot-counter.js'
import type { Policy } from '../policy/compile.js'
import type { UpstreamClient } from '../upstream/index.js'
import type { AdminExtension, Capability, PluginEntry } from '../contracts/capability.js'
import { Compressor } from '../compress/forms.js'
import { Representations } from './representations.js'

export interface CacheDeps {
  /** the policy in force (PolicyStore.current) */
  policy: () => Policy
  /** fills go through its `fetch`; its gate says when the breaker is open */
  client: Pick<UpstreamClient, 'fetch' | 'gate'>
  metrics: Metrics
  logger: Logger
  /** the RedisStore when `store.redis` is configured: purges then reach every replica */
  redis?: PurgeBusRedis
  clock?: Clock
  /** told of every purge a signed Flagsmith webhook asks for here, and of every purge another
   *  replica publishes (local evaluation refreshes its documents on both) */
  onWebhook?: (target: PurgeTarget) => void
  /** blocks and the webhook route's own limit (the composition wires blocking and rate-limit here) */
  admitWebhook?: WebhookPluginOptions['admit']
}

export interface CacheCapability extends Capability {
  cache: DocumentCache
  bus: PurgeBus
  /** three steps of the pipeline: conditional 304 (before the limit), fresh HIT (after it), lookup */
  steps: { conditional: PluginEntry; 'fresh-hit': PluginEntry; lookup: PluginEntry }
  /** the Flagsmith webhook (registers nothing when webhooks.flagsmith is absent at boot) */
  routes: PluginEntry[]
  /** for the admin listener: POST /admin/cache/purge and the `cache` section of /admin/status */
  admin: AdminExtension
  /** purge on this replica and every other one; what `POST /admin/cache/purge` calls */
  purge: PurgeBus['purge']
  /** call on every policy reload: `cache.maxSize` applies live */
  reload: (policy: Policy) => void
  close: () => Promise<void>
}

const BYTES_EVENTS = new Set(['store', 'evict', 'purge', 'revalidated', 'compressed'])

export function createCache (deps: CacheDeps): CacheCapability {
  const { metrics, logger } = deps
  const log = logger.child({ component: 'cache' })
  // one hot child counter per event, resolved once (metrics/hot-counter.ts)
  const counters = new Map<string, HotChild>()
  const cache: DocumentCache = new DocumentCache({
    maxSize: deps.policy().data.cache.maxSize,
    ...(deps.clock !== undefined ? { clock: deps.clock } : {}),
    onEvent: (event, count) => {
      let c = counters.get(event)
      if (c === undefined) { c = metrics.hot.cacheEvents.child({ event }); counters.set(event, c) }
      c.inc(count)
      if (BYTES_EVENTS.has(event)) metrics.cacheBytes.set(cache.bytes)
    }
  })
  // a webhook on any replica reaches every replica's documents: the purge it published arrives
  // here, and local evaluation refreshes on it as on a webhook of its own
  const bus = new PurgeBus({ cache, logger: log, ...(deps.redis !== undefined ? { redis: deps.redis } : {}), ...(deps.onWebhook !== undefined ? { onRemote: deps.onWebhook } : {}) })
  bus.start()
  // compressed forms of entries, made one entry at a time off the request path (src/compress)
  const compressor = new Compressor({ onError: (err) => { log.warn({ err }, 'compressing a cached answer failed; it is served identity') } })
  const representations = new Representations(cache, compressor, metrics)
  const pluginOpts: CachePluginOptions = {
    cache,
    client: deps.client,
    metrics,
    representations
  }
  const webhookOpts: WebhookPluginOptions = {
    policy: deps.policy,
    purge: (t) => { deps.onWebhook?.(t); return bus.purge(t) },
    ...(deps.admitWebhook !== undefined ? { admit: deps.admitWebhook } : {}),
    logger: log
  }
  return {
    name: 'cache',
    cache,
    bus,
    steps: {
      conditional: { plugin: cacheConditionalStep, opts: { cache, representations } },
      'fresh-hit': { plugin: cacheFreshHitStep, opts: { cache, representations } },
      lookup: { plugin: cacheLookupStep, opts: pluginOpts }
    },
    routes: [{ plugin: webhooks, opts: webhookOpts }],
    admin: cacheAdminExtension({ cache, bus, logger: log, scope: deps.redis !== undefined ? 'fleet' : 'replica' }),
    purge: (t) => bus.purge(t),
    reload: (policy) => { cache.resize(policy.data.cache.maxSize); metrics.cacheBytes.set(cache.bytes) },
    close: async () => { await bus.close() }
  }
}
