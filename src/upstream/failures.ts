/**
 * The upstream failures an operator needs to see: for each upstream its last failure and when
 * (`flaggate status`), a `warn` line per upstream and kind of failure at most every 10 s (an
 * outage of thousands of requests a second must not flood the log), and the cause of each 502/504
 * for the access log, kept beside the GatewayError it explains.
 */
import type { Logger } from 'pino'
import type { GatewayError } from '../errors.js'
import type { Policy, UpstreamTarget } from '../policy/compile.js'
import { describeCause, type UpstreamCause } from './cause.js'

/** at most one warning per upstream and kind of failure in this long */
export const WARN_EVERY_MS = 10_000

const causes = new WeakMap<GatewayError, UpstreamCause>()

/** why this 502/504 happened (DNS, refused, reset, TLS, timeout; which upstream and host), when an upstream attempt caused it */
export function causeOf (err: unknown): UpstreamCause | undefined {
  return typeof err === 'object' && err !== null ? causes.get(err as GatewayError) : undefined
}

export class UpstreamFailures {
  readonly #logger: Pick<Logger, 'warn'>
  readonly #last = new Map<string, { at: number; cause: UpstreamCause }>()
  readonly #warned = new Map<string, { at: number; suppressed: number }>()
  readonly #now: () => number

  constructor (logger: Pick<Logger, 'warn'>, now: () => number = Date.now) {
    this.#logger = logger
    this.#now = now
  }

  /** Notes why an attempt to `upstream` failed; returns `ge`, now carrying its cause. */
  record (ge: GatewayError, upstream: string, target: UpstreamTarget): GatewayError {
    // the gate's own refusals (503) are not failures of the upstream
    if (ge.code !== 'FLAGGATE_UPSTREAM_UNREACHABLE' && ge.code !== 'FLAGGATE_UPSTREAM_TIMEOUT') return ge
    const cause = describeCause(ge.cause ?? ge, upstream, target.host)
    causes.set(ge, cause)
    const now = this.#now()
    this.#last.set(upstream, { at: now, cause })
    const k = `${upstream}\n${cause.kind}`
    const w = this.#warned.get(k)
    if (w === undefined || now - w.at >= WARN_EVERY_MS) {
      this.#logger.warn({ upstream, host: target.host, cause: cause.kind, code: cause.code, status: ge.statusCode, ...(w !== undefined && w.suppressed > 0 ? { alsoFailed: w.suppressed } : {}) },
        `upstream failing: ${cause.text}`)
      this.#warned.set(k, { at: now, suppressed: 0 })
    } else {
      w.suppressed++
    }
    return ge
  }

  /** each upstream of the policy: its URL, and its last failure with its time */
  status (policy: Policy | undefined): Record<string, unknown> {
    const out: Record<string, unknown> = {}
    for (const [name, t] of Object.entries(policy?.targets ?? {})) {
      const last = this.#last.get(name)
      out[name] = { url: `${t.origin}${t.basePath}`, ...(last === undefined ? {} : { lastError: last.cause.text, lastErrorAt: new Date(last.at).toISOString() }) }
    }
    return out
  }
}
