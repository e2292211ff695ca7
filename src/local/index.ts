/**
 * Everything the composition (gateway.ts) needs from local evaluation, built in one call: the
 * documents and their refresher, the outbox of writes kept for Core, the state file, the
 * request-path plugin, the webhook trigger and the admin status section.
 *
 * The environments listed at start are the ones served until the next restart; `mode`,
 * `refresh`, `firstDocumentTimeout` and the bounds apply live on reload.
 */
import { isAbsolute, resolve, dirname } from 'node:path'
import { Counter } from 'prom-client'
import type { Logger } from 'pino'
import type { Policy, UpstreamTarget } from '../policy/compile.js'
import type { UpstreamClient } from '../upstream/index.js'
import type { Metrics } from '../metrics/registry.js'
import type { AdminExtension, Capability } from '../contracts/capability.js'
import type { PurgeTarget } from '../contracts/purge-target.js'
import { resolveTarget } from '../policy/resolve.js'
import { redactKey } from '../shared/redact.js'
import { GatewayError } from '../errors.js'
import { LocalDocuments } from './documents.js'
import { Refresher, type DocumentFetch } from './refresher.js'
import { Outbox, keyDigest } from './outbox.js'
import { sharedDocuments, type SharedRedis } from './shared.js'
import { StateSaver, loadState, type LocalState } from './state.js'
import { ENGINE_VERSION } from './engine.js'
import localAnswer, { type LocalPluginOptions } from './plugin.js'
import { readinessWarnings, stalenessOf, STALE_AFTER_REFRESHES } from './staleness.js'

export interface LocalRoomDeps {
  policy: () => Policy
  /** the policy file, whose directory anchors a relative `localEvaluation.stateFile` */
  policyFile: string
  client: Pick<UpstreamClient, 'fetch'>
  metrics: Metrics
  logger: Logger
  version: string
  redis?: SharedRedis
  /** the clock of document ages (tests step it); Date.now by default */
  now?: () => number
}

export interface LocalCapability extends Capability {
  admin: AdminExtension
  /** a signed Flagsmith webhook arrived: refresh the environments it names now */
  onWebhook: (target: PurgeTarget) => void
  /** first refreshes and the periodic ones; call once the breakers are in place */
  start: () => void
  /** lines for the readiness body: listed environments whose document is stale (staleness.ts) */
  readinessWarnings: () => string[]
  close: () => Promise<void>
}

/** Core's documents run to a few MB at worst; past this one is refused, the previous kept. */
const MAX_DOCUMENT_BYTES = 32 * 1024 * 1024
const DOCUMENT_PATH = '/api/v1/environment-document/'
const WRITE_PATHS = { identities: '/api/v1/identities/', analytics: '/api/v1/analytics/flags/' } as const

/** Where documents come from and writes go: `localEvaluation.upstream`, else the document route's upstream. */
function coreOf (policy: Policy): UpstreamTarget {
  const named = policy.data.localEvaluation?.upstream
  const r = resolveTarget(policy, 'GET', DOCUMENT_PATH)
  const name = named ?? (r.kind === 'route' ? r.route.upstream : Object.keys(policy.targets)[0]!)
  const t = policy.targets[name]
  if (t === undefined) throw new GatewayError('FLAGGATE_UPSTREAM_UNREACHABLE', `No upstream named '${name}' in the policy.`)
  return t
}

function ageOf (s: Parameters<typeof stalenessOf>[0], refreshMs: number, at: number): { documentAgeSeconds: number | null; stale: boolean } {
  const st = stalenessOf(s, refreshMs, at)
  return { documentAgeSeconds: st.ageSeconds, stale: st.stale }
}

export function stateFilePath (policy: Policy, policyFile: string): string | undefined {
  const f = policy.data.localEvaluation?.stateFile
  if (f === undefined) return undefined
  return isAbsolute(f) ? f : resolve(dirname(policyFile), f)
}

export function createLocal (deps: LocalRoomDeps): LocalCapability {
  const log = deps.logger.child({ room: 'local-evaluation' })
  const config = deps.policy().data.localEvaluation
  const registers = [deps.metrics.registry]
  const answers = new Counter({ name: 'flaggate_local_answers_total', help: 'Answers given from environment documents, by kind (flags, identity-get, identity-post, analytics-v1, analytics-v2)', labelNames: ['kind'] as const, registers })
  const refreshes = new Counter({ name: 'flaggate_local_refresh_total', help: 'Environment document refreshes, by result (ok, not-modified, shared, refused, error, rejected)', labelNames: ['result'] as const, registers })
  const drops = new Counter({ name: 'flaggate_local_dropped_total', help: 'Writes kept for Core and dropped, by reason (writes-bound, analytics-bound, write-refused)', labelNames: ['reason'] as const, registers })
  if (config === undefined) {
    return { name: 'local', admin: {}, onWebhook: () => {}, start: () => {}, readinessWarnings: () => [], close: async () => {} }
  }

  const now = deps.now ?? Date.now
  const refreshMs = (): number => deps.policy().data.localEvaluation?.refresh ?? config.refresh
  const docs = new LocalDocuments(config.environments.map((e) => e.serverKey))
  const byDigest = new Map([...docs.states.keys()].map((k) => [keyDigest(k), k]))
  const headers = (serverKey: string, target: UpstreamTarget): Record<string, string> =>
    ({ host: target.host, 'x-environment-key': serverKey, accept: 'application/json', 'user-agent': `flaggate/${deps.version}` })

  const fetchDocument: DocumentFetch = async (serverKey, ifModifiedSince) => {
    const target = coreOf(deps.policy())
    const h = headers(serverKey, target)
    if (ifModifiedSince !== undefined) h['if-modified-since'] = ifModifiedSince
    const res = await deps.client.fetch({ upstream: target.name, route: 'local-evaluation', path: target.basePath + DOCUMENT_PATH, method: 'GET', headers: h, maxBodyBytes: MAX_DOCUMENT_BYTES })
    const lm = res.headers['last-modified']
    return { status: res.statusCode, lastModified: typeof lm === 'string' ? lm : undefined, body: res.body }
  }

  const outbox: Outbox = new Outbox({
    bounds: () => deps.policy().data.localEvaluation ?? config,
    keyOf: (d) => byDigest.get(d),
    send: async (serverKey, what, body) => {
      const target = coreOf(deps.policy())
      const res = await deps.client.fetch({ upstream: target.name, route: 'local-evaluation', path: target.basePath + WRITE_PATHS[what], method: 'POST', headers: { ...headers(serverKey, target), 'content-type': 'application/json' }, body, maxBodyBytes: 1024 * 1024 })
      return res.statusCode
    },
    onDrop: (reason, n) => { drops.inc({ reason }, n) },
    logger: log,
    onChange: () => { saver.changed() }
  })

  const file = stateFilePath(deps.policy(), deps.policyFile)!
  const snapshot = (): LocalState => {
    const documents: LocalState['documents'] = {}
    for (const s of docs.states.values()) {
      if (s.raw !== undefined) documents[keyDigest(s.serverKey)] = { raw: s.raw.toString('utf8'), lastModified: s.lastModified, confirmedAt: s.confirmedAt ?? 0 }
    }
    return { v: 1, outbox: outbox.snapshot(), documents }
  }
  const saver: StateSaver = new StateSaver(file, snapshot)
  const loaded = loadState(file)
  if (loaded.error !== undefined) log.warn({ file, err: loaded.error }, 'local evaluation: state file unreadable; nothing of the previous run is restored')
  if (loaded.state !== undefined) {
    for (const [digest, d] of Object.entries(loaded.state.documents)) {
      const key = byDigest.get(digest)
      if (key === undefined) continue
      try { docs.install(docs.states.get(key)!, Buffer.from(d.raw, 'utf8'), d.lastModified, d.confirmedAt) } catch (err) {
        log.warn({ key: redactKey(key), err: (err as Error).message }, 'local evaluation: the saved document is unreadable; waiting for Core')
      }
    }
    outbox.restore(loaded.state.outbox)
    log.info({ file, documents: Object.keys(loaded.state.documents).length, ...outbox.size }, 'local evaluation: restored the previous run\'s documents and kept writes')
  }

  const refresher = new Refresher({
    docs,
    fetch: fetchDocument,
    ...(deps.redis !== undefined ? { shared: sharedDocuments(deps.redis) } : {}),
    refreshMs,
    logger: log,
    now,
    onResult: (result) => {
      refreshes.inc({ result })
      if (result === 'ok' || result === 'shared') saver.changed()
    }
  })

  const pluginOpts: LocalPluginOptions = { docs, outbox, onAnswer: (kind) => { answers.inc({ kind }) } }

  const status = (): Record<string, unknown> => {
    const at = now()
    const cfg = deps.policy().data.localEvaluation ?? config
    return {
      localEvaluation: {
        mode: cfg.mode,
        refreshSeconds: cfg.refresh / 1000,
        staleAfterSeconds: STALE_AFTER_REFRESHES * cfg.refresh / 1000,
        engine: `flagsmith-nodejs ${ENGINE_VERSION}`,
        environments: [...docs.states.values()].map((s) => ({
          serverKey: redactKey(s.serverKey),
          clientKey: redactKey(s.env?.clientKey),
          name: s.env?.name,
          documentUpdatedAt: s.env?.updatedAt,
          ...ageOf(s, cfg.refresh, at),
          lastRefresh: s.last === undefined ? null : { at: new Date(s.last.at).toISOString(), result: s.last.result, ...(s.last.detail !== undefined ? { detail: s.last.detail } : {}) },
          localAnswers: s.served,
          ...(s.env !== undefined ? { features: s.env.size.features, segments: s.env.size.segments, identityOverrides: s.env.size.identityOverrides } : {})
        })),
        kept: outbox.size,
        stateFile: { file, ...(saver.lastError !== undefined ? { error: saver.lastError } : {}) }
      }
    }
  }

  return {
    name: 'local',
    steps: { local: { plugin: localAnswer, opts: pluginOpts } },
    admin: { status },
    onWebhook: (target) => {
      for (const s of docs.states.values()) {
        // a key purge is the cache's own business; a project or everything may include this environment
        const named = 'all' in target || 'projectId' in target || ('envId' in target && (s.env === undefined || s.env.id === target.envId))
        if (named) void refresher.refresh(s.serverKey, true)
      }
    },
    start: () => { refresher.start() },
    readinessWarnings: () => readinessWarnings(docs.states.values(), refreshMs(), now()),
    close: async () => {
      await refresher.close()
      await outbox.close()
      await saver.close()
    }
  }
}
