/**
 * What the composition (gateway.ts) needs from the probes: the runner, started once the public
 * listener has its address, and the `probes` section of `/admin/status`.
 */
import type { Logger } from 'pino'
import type { AdminExtension, Capability } from '../contracts/capability.js'
import type { Metrics } from '../metrics/registry.js'
import type { Policy } from '../policy/compile.js'
import { ProbeRunner } from './runner.js'

export interface ProbesCapability extends Capability {
  runner: ProbeRunner
  admin: AdminExtension
  start: (publicUrl: string, policy: Policy) => void
  reload: (policy: Policy) => void
  close: () => Promise<void>
}

export function createProbes (deps: { metrics: Metrics; logger: Logger; version: string }): ProbesCapability {
  const runner = new ProbeRunner({ metrics: deps.metrics, logger: deps.logger.child({ component: 'probes' }), userAgent: `flaggate-probe/${deps.version}` })
  const admin: AdminExtension = { status: () => ({ probes: runner.status() }) }
  return {
    name: 'probes',
    runner,
    admin,
    /** call after the public listener listens: probes go through it */
    start: (publicUrl: string, policy: Policy) => { runner.start(publicUrl, policy.data) },
    reload: (policy: Policy) => { runner.configure(policy.data) },
    /** before draining: a probe of a closing listener would only report the drain */
    close: async () => { await runner.close() }
  }
}
