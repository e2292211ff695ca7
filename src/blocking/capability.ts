/**
 * Everything the composition (gateway.ts) needs from blocking, built in one call: the registry
 * of blocks, where they persist (Redis when the policy has a store, else a state file), the
 * automatic blocks, the request-path plugin and the admin extension.
 */
import { createHash } from 'node:crypto'
import { dirname, isAbsolute, resolve } from 'node:path'
import type { Logger } from 'pino'
import type { Policy } from '../policy/compile.js'
import type { Metrics } from '../metrics/registry.js'
import type { AdminExtension, Capability, PluginEntry } from '../contracts/capability.js'
import { redactKey } from '../shared/redact.js'
import { keyDigest } from '../shared/key-digest.js'
import { describeTarget, staticBlocks, type Block } from './core.js'
import { BlockRegistry, type Clock } from './registry.js'
import type { BlockBackend } from './backend.js'
import { StateFileBackend } from './state-file.js'
import { RedisBlockSync, type BlockSyncRedis, type RedisBlockSyncOptions } from './redis-sync.js'
import { AbuseDetector, type AbuseEvent, type AbuseSettings } from './abuse.js'
import blockingPlugin, { blockedError, type BlockingPluginOptions } from './plugin.js'
import type { GatewayError } from '../errors.js'
import { blockingAdminExtension } from './admin.js'
import type { TopRecorder } from '../top/capability.js'
import { formatDuration } from '../shared/duration.js'

export interface BlockingDeps {
  policy: () => Policy
  /** the policy file, whose directory anchors a relative `blocking.stateFile` */
  policyFile: string
  redis?: BlockSyncRedis
  metrics: Pick<Metrics, 'blocksActive'>
  logger: Logger
  clock?: Clock
  /** how often expired blocks are dropped; default 1 s */
  sweepMs?: number
  sync?: RedisBlockSyncOptions
  /** told of every routed answer and whether it was refused (gateway.ts passes `top`'s); none: not reported */
  recordOutcome?: TopRecorder
}

export interface BlockingCapability extends Capability {
  registry: BlockRegistry
  backend: BlockBackend
  /** the `block` step; its onResponse hook also feeds the recorder and the automatic blocks */
  steps: { block: PluginEntry }
  admin: AdminExtension
  add: (block: Block) => void
  /** the 403 for a request outside the proxied scope (the webhook), or undefined; `route` is the name route-scoped blocks are matched against */
  check: (route: string, envKey: string | undefined, ip: string, net: string, userAgent: string | undefined) => GatewayError | undefined
  remove: (id: string) => Block | undefined
  /** resolves when the blocks of the previous run / the fleet are loaded (bounded) */
  ready: () => Promise<void>
  reload: (policy: Policy) => void
  /** lines for the readiness body: with Redis, a state file that cannot keep the last known blocks */
  readinessWarnings: () => string[]
  close: () => Promise<void>
}

/** `blocking.stateFile`, resolved against the policy file's directory when relative. */
export function stateFilePath (policy: Policy, policyFile: string): string {
  const f = policy.data.blocking.stateFile
  return isAbsolute(f) ? f : resolve(dirname(policyFile), f)
}

function abuseSettings (policy: Policy): AbuseSettings | undefined {
  const a = policy.data.abuse
  return a === undefined ? undefined : { rejections: a.rejections.count, windowMs: a.rejections.windowMs, blockForMs: a.blockFor }
}

export function createBlocking (deps: BlockingDeps): BlockingCapability {
  const log = deps.logger.child({ component: 'blocking' })
  const gauge = deps.metrics.blocksActive
  // with Redis, the state file mirrors every change this replica learns (state-file.ts): set below
  let mirror: StateFileBackend | undefined
  const registry: BlockRegistry = new BlockRegistry({
    ...(deps.clock !== undefined ? { clock: deps.clock } : {}),
    onChange: () => {
      mirror?.changed()
      const c = registry.counts()
      gauge.set({ source: 'static' }, c.static)
      gauge.set({ source: 'runtime' }, c.runtime)
      gauge.set({ source: 'abuse' }, c.abuse)
    }
  })
  const clock = registry.clock
  registry.setStatic(staticBlocks(deps.policy().data.blocklist, clock()))

  let backend: BlockBackend
  if (deps.redis !== undefined) {
    // the blocks this replica last knew, in force until Redis answers (a start during an outage)
    mirror = new StateFileBackend(stateFilePath(deps.policy(), deps.policyFile), registry, log, { mirror: true })
    mirror.start()
    const sync = new RedisBlockSync(deps.redis, registry, log, deps.sync)
    sync.restoredFromFile(mirror.restored)
    backend = sync
  } else {
    backend = new StateFileBackend(stateFilePath(deps.policy(), deps.policyFile), registry, log)
  }
  backend.start()

  const add = (block: Block): void => {
    if (registry.upsert(block)) backend.added(block)
  }
  /** a runtime block from the admin API: in force only once stored (state file), else undone */
  const addDurably = async (block: Block): Promise<string | undefined> => {
    add(block)
    const problem = await backend.flush?.()
    if (problem === undefined) return undefined
    if (registry.delete(block.id) !== undefined) backend.removed(block.id)
    return problem
  }
  const remove = (id: string): Block | undefined => {
    const b = registry.delete(id)
    if (b !== undefined) backend.removed(id)
    return b
  }

  const onAbuse = (e: AbuseEvent): void => {
    const id = 'a-' + createHash('sha256').update(e.target).digest('hex').slice(0, 12)
    if (registry.has(id)) return // the same burst of 429s: already blocked
    const now = clock()
    const block: Block = {
      id,
      ...(e.client.key !== undefined ? { keyDigest: keyDigest(e.client.key), key: redactKey(e.client.key)! } : {}),
      ...(e.client.ip !== undefined ? { ip: e.client.ip } : {}),
      reason: `automatic: more than ${e.settings.rejections} requests refused with 429 within ${formatDuration(e.settings.windowMs, 'setting')} (limit ${e.limit} on route ${e.route})`,
      source: 'abuse',
      createdAt: now,
      expiresAt: now + e.settings.blockForMs,
      actor: 'abuse'
    }
    add(block)
    log.warn({ who: 'abuse', action: 'block', id, target: describeTarget(block), expiresAt: new Date(block.expiresAt!).toISOString(), reason: block.reason }, 'client blocked automatically')
  }
  const abuse = new AbuseDetector({ ...(deps.redis !== undefined ? { redis: deps.redis } : {}), logger: log, onAbuse })
  abuse.configure(abuseSettings(deps.policy()))

  const sweeper = setInterval(() => {
    const gone = registry.sweep()
    if (gone.length === 0) return
    backend.expired(gone)
    for (const b of gone) log.info({ id: b.id, source: b.source, target: describeTarget(b) }, 'block expired')
  }, deps.sweepMs ?? 1000)
  sweeper.unref()

  const pluginOpts: BlockingPluginOptions = { registry, recordOutcome: deps.recordOutcome ?? (() => {}), abuse }
  const status = (): Record<string, unknown> => {
    const c = registry.counts()
    const a = abuse.settings
    return {
      blocks: registry.size,
      blocking: {
        ...c,
        store: mirror === undefined ? backend.status() : { ...backend.status(), stateFile: mirror.status() },
        automatic: a === undefined ? null : { rejections: a.rejections, windowMs: a.windowMs, blockForMs: a.blockForMs }
      }
    }
  }

  return {
    name: 'blocking',
    registry,
    backend,
    steps: { block: { plugin: blockingPlugin, opts: pluginOpts } },
    admin: blockingAdminExtension({ registry, policy: deps.policy, logger: log, add: addDurably, remove, status, scope: deps.redis !== undefined ? 'fleet' : 'replica' }),
    add,
    check: (route, envKey, ip, net, userAgent) => {
      if (registry.index.size === 0) return undefined
      const now = clock()
      const b = registry.index.match(route, envKey, ip, userAgent, now, net)
      return b === undefined ? undefined : blockedError(b, now)
    },
    remove,
    ready: () => backend.ready(),
    reload: (policy) => {
      registry.setStatic(staticBlocks(policy.data.blocklist, clock()))
      abuse.configure(abuseSettings(policy))
    },
    readinessWarnings: () => {
      const p = mirror?.problem()
      return p === undefined ? [] : [p]
    },
    close: async () => {
      clearInterval(sweeper)
      await backend.close()
      await mirror?.close()
    }
  }
}
