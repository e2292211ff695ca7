/**
 * Everything the composition (gateway.ts) needs from the breakers, built in one call: the
 * {@link BreakerGate} (which the composition sets as `client.gate`, so every proxied request,
 * cache fill and probe asks it), what the load gauges read at scrape time, the `breakers` section
 * of /admin/status, the transition log and the optional active probe per upstream.
 *
 * No step on the request path: the upstream client calls the gate, the cache and Edge read
 * `gate.isOpen`, and the app's error handler marks a shed request (`shed`, contracts/request.ts).
 */
import type { Logger } from 'pino'
import type { Policy } from '../policy/compile.js'
import type { UpstreamClient } from '../upstream/index.js'
import type { AdminExtension, Capability } from '../contracts/capability.js'
import type { Metrics, UpstreamLoad } from '../metrics/registry.js'
import { BreakerGate } from './gate.js'
import type { BreakerTransition, Clock } from './core.js'

export interface BreakerDeps {
  /** the policy in force (PolicyStore.current) */
  policy: () => Policy
  /** probes go through its `fetch`, hence through the gate once the composition has set it */
  client: Pick<UpstreamClient, 'fetch'>
  metrics: Metrics
  logger: Logger
  clock?: Clock
  /** for the probe's User-Agent */
  version?: string
}

export interface BreakerCapability extends Capability {
  /** for `client.gate` (set by the composition) */
  gate: BreakerGate
  /** for `metrics.upstreamLoad.read` (set by the composition): each upstream's state, in-flight count and limit */
  upstreamLoad: () => Iterable<UpstreamLoad>
  /** for the admin listener: the `breakers` section of /admin/status */
  admin: AdminExtension
  /** call on every policy reload, before the policy serves requests */
  reload: (policy: Policy) => void
  close: () => void
}

/** A probe answer larger than this is not read further (a health check has no business being big). */
const PROBE_MAX_BODY_BYTES = 64 * 1024
export const PROBE_ROUTE = 'breaker-probe'

const MONOTONIC: Clock = () => performance.now()

export function createBreakers (deps: BreakerDeps): BreakerCapability {
  const log = deps.logger.child({ component: 'breaker' })
  const clock = deps.clock ?? MONOTONIC
  const onTransition = (t: BreakerTransition): void => {
    const fields = { upstream: t.upstream, from: t.from, to: t.to, reason: t.reason, p95Ms: t.p95Ms, errorRate: t.errorRate, requests: t.requests, inFlight: t.inFlight, limit: t.limit, ...(t.openForMs !== undefined ? { openForMs: t.openForMs } : {}) }
    if (t.to === 'open') log.warn(fields, `breaker ${t.upstream}: open`)
    else log.info(fields, `breaker ${t.upstream}: ${t.to}`)
  }
  const gate = new BreakerGate({ clock, onTransition })
  gate.configure(deps.policy())
  const upstreamLoad = function * (): Iterable<UpstreamLoad> {
    for (const b of gate.all()) yield { upstream: b.upstream, state: b.state(), inFlight: b.inFlight, limit: b.limit() }
  }

  // --- active probe: one timer per upstream with `probe`, unref'd, replaced on reload ---------
  const probes = new Map<string, { path: string; intervalMs: number; timer: NodeJS.Timeout }>()
  const userAgent = `flaggate/${deps.version ?? 'dev'} breaker-probe`

  async function probeOnce (upstream: string, path: string, intervalMs: number): Promise<void> {
    const b = gate.breaker(upstream)
    const policy = deps.policy()
    const target = policy.targets[upstream]
    if (b === undefined || target === undefined) return
    // real traffic says more than a health check: probe only when the upstream has been quiet,
    // or while half-open, where the probe is one of the trials that decide
    const state = b.state()
    if (state === 'open') return
    if (state === 'closed' && clock() - b.lastAdmitAt < intervalMs / 2) return
    try {
      // through the gate like any request: its latency and status feed the breaker; Core's
      // /health/readiness/ only answers 200 or 500, so its time is what tells a slow database
      await deps.client.fetch({ upstream, route: PROBE_ROUTE, path: target.basePath + path, method: 'GET', headers: { 'user-agent': userAgent, accept: 'application/json' }, timeoutMs: target.timeoutMs, maxBodyBytes: PROBE_MAX_BODY_BYTES })
    } catch (err) {
      log.debug({ upstream, err: (err as Error).message }, 'breaker probe failed')
    }
  }

  function configureProbes (policy: Policy): void {
    for (const [name, p] of probes) {
      const want = policy.data.breakers[name]?.probe
      if (want === undefined || want.path !== p.path || want.interval !== p.intervalMs || policy.upstreams[name] === undefined) {
        clearInterval(p.timer)
        probes.delete(name)
      }
    }
    for (const [name, b] of Object.entries(policy.data.breakers)) {
      if (b.probe === undefined || probes.has(name) || policy.upstreams[name] === undefined) continue
      const { path, interval } = b.probe
      const timer = setInterval(() => { void probeOnce(name, path, interval) }, interval)
      timer.unref()
      probes.set(name, { path, intervalMs: interval, timer })
    }
  }
  configureProbes(deps.policy())

  return {
    name: 'breaker',
    gate,
    upstreamLoad,
    admin: { status: () => ({ breakers: gate.status(deps.policy()) }) },
    reload: (policy) => { gate.configure(policy); configureProbes(policy) },
    close: () => { for (const p of probes.values()) clearInterval(p.timer); probes.clear() }
  }
}
