/**
 * Synthetic probes (the policy's `probes:`): real SDK-style calls made through the gateway's
 * OWN public listener on an interval, so status and alerts see what a client sees (rate limits,
 * cache, breaker and upstream included), not what a health endpoint claims. Flagsmith's `/health`
 * said 200 while flags were broken; a probe of `/api/v1/flags/` would not have.
 *
 * One timer per probe, re-armed after each run finishes (a slow run never overlaps the next);
 * timers are unref'd, and all of them are cleared on reload and close. The probe's key is sent in
 * `X-Environment-Key` and never appears whole in the status, the logs or a metric label.
 */
import { Agent, request } from 'undici'
import type { Logger } from 'pino'
import type { Metrics } from '../metrics/registry.js'
import type { PolicyData } from '../policy/schema.js'
import { redactKey } from '../shared/redact.js'

export type ProbeData = PolicyData['probes'][number]

/** One row of `probes` in `/admin/status`. */
export interface ProbeStatus {
  name: string
  method: string
  path: string
  /** the probe's key, redacted (first characters and a short hash) */
  key: string
  intervalMs: number
  /** null until the first run has finished */
  ok: boolean | null
  /** HTTP status of the last run; null when no answer came (connection error, timeout) */
  status: number | null
  /** time to the end of the response body, ms */
  latencyMs: number | null
  lastAt: string | null
  lastError: string | null
  consecutiveFailures: number
}

export interface ProbeRunnerOptions {
  logger: Logger
  metrics: Pick<Metrics, 'probeSuccess' | 'probeDuration'>
  /** `flaggate-probe/<version>`: probe traffic is recognisable in access logs and at Core */
  userAgent: string
}

/** How much of a failed answer is read to name its error code; the rest is drained unparsed. */
const ERROR_BODY_PEEK_BYTES = 4096
/** The gateway answers 504 within the upstream timeout; a probe waits a little longer than that. */
const PROBE_TIMEOUT_MARGIN_MS = 1000

interface Slot {
  readonly def: ProbeData
  readonly redacted: string
  state: ProbeStatus
  timer: NodeJS.Timeout | undefined
  abort: AbortController | undefined
}

const sameDefinition = (a: ProbeData, b: ProbeData): boolean =>
  a.method === b.method && a.path === b.path && a.key === b.key && a.interval === b.interval

export class ProbeRunner {
  readonly #opts: ProbeRunnerOptions
  readonly #agent = new Agent({ connections: 4 })
  #slots = new Map<string, Slot>()
  #baseUrl: string | undefined
  #timeoutMs = 10_000 + PROBE_TIMEOUT_MARGIN_MS
  #closed = false

  constructor (opts: ProbeRunnerOptions) {
    this.#opts = opts
  }

  /** Starts probing `baseUrl` (the public listener, known once it listens). */
  start (baseUrl: string, data: PolicyData): void {
    this.#baseUrl = baseUrl
    this.configure(data)
  }

  /**
   * Applies the probes of a (re)loaded policy: every timer is cleared and re-armed; a probe whose
   * definition did not change keeps its last result until its next run, so a reload does not
   * blank the status or flap the metric.
   */
  configure (data: PolicyData): void {
    if (this.#closed) return
    this.#timeoutMs = Math.max(...Object.values(data.upstreams).map((u) => u.timeout)) + PROBE_TIMEOUT_MARGIN_MS
    const next = new Map<string, Slot>()
    for (const def of data.probes) {
      const old = this.#slots.get(def.name)
      const redacted = redactKey(def.key) ?? ''
      const keep = old !== undefined && sameDefinition(old.def, def)
      next.set(def.name, {
        def,
        redacted,
        state: keep ? old.state : { name: def.name, method: def.method, path: def.path, key: redacted, intervalMs: def.interval, ok: null, status: null, latencyMs: null, lastAt: null, lastError: null, consecutiveFailures: 0 },
        timer: undefined,
        abort: undefined
      })
    }
    for (const [name, slot] of this.#slots) {
      this.#stop(slot)
      if (!next.has(name)) {
        this.#opts.metrics.probeSuccess.remove(name)
        this.#opts.metrics.probeDuration.remove(name)
      }
    }
    this.#slots = next
    if (this.#baseUrl === undefined) return
    for (const slot of next.values()) this.#arm(slot, 0)
  }

  status (): ProbeStatus[] {
    return [...this.#slots.values()].map((s) => ({ ...s.state }))
  }

  async close (): Promise<void> {
    this.#closed = true
    for (const slot of this.#slots.values()) this.#stop(slot)
    await this.#agent.destroy().catch(() => {})
  }

  #stop (slot: Slot): void {
    clearTimeout(slot.timer)
    slot.timer = undefined
    slot.abort?.abort()
    slot.abort = undefined
  }

  #arm (slot: Slot, delayMs: number): void {
    slot.timer = setTimeout(() => { void this.#run(slot) }, delayMs)
    slot.timer.unref()
  }

  async #run (slot: Slot): Promise<void> {
    slot.timer = undefined
    const abort = new AbortController()
    slot.abort = abort
    const { def } = slot
    const started = process.hrtime.bigint()
    let status: number | null = null
    let error: string | null = null
    try {
      const res = await request(new URL(def.path, this.#baseUrl), {
        method: def.method,
        dispatcher: this.#agent,
        headers: { 'x-environment-key': def.key, 'user-agent': this.#opts.userAgent, accept: 'application/json' },
        signal: AbortSignal.any([abort.signal, AbortSignal.timeout(this.#timeoutMs)])
      })
      status = res.statusCode
      // latency as an SDK sees it: up to the last byte of the body
      let peek = ''
      for await (const chunk of res.body) {
        if (status >= 200 && status < 300) continue
        if (peek.length < ERROR_BODY_PEEK_BYTES) peek += (chunk as Buffer).toString('utf8')
      }
      if (status < 200 || status >= 300) error = describeFailure(status, peek, res.headers['x-flaggate-upstream'])
    } catch (err) {
      if (abort.signal.aborted) return // stopped by reload or close: no result to record
      const e = err as Error & { code?: string }
      error = e.name === 'TimeoutError' ? `no answer within ${this.#timeoutMs} ms` : `${e.code ?? e.name}: ${e.message}`
    }
    if (abort.signal.aborted || this.#slots.get(def.name) !== slot) return
    slot.abort = undefined
    const latencyMs = Number(process.hrtime.bigint() - started) / 1e6
    this.#record(slot, status, latencyMs, error)
    if (!this.#closed) this.#arm(slot, def.interval)
  }

  #record (slot: Slot, status: number | null, latencyMs: number, error: string | null): void {
    const s = slot.state
    const ok = error === null
    // a key the upstream echoes back in an error body must not leak through the status
    const safeError = error === null ? null : error.replaceAll(slot.def.key, slot.redacted)
    const wasOk = s.ok
    slot.state = {
      ...s,
      ok,
      status,
      latencyMs: Math.round(latencyMs * 10) / 10,
      lastAt: new Date().toISOString(),
      lastError: ok ? s.lastError : safeError,
      consecutiveFailures: ok ? 0 : s.consecutiveFailures + 1
    }
    this.#opts.metrics.probeSuccess.set({ probe: s.name }, ok ? 1 : 0)
    this.#opts.metrics.probeDuration.set({ probe: s.name }, latencyMs / 1000)
    // transitions only: a probe every few seconds would otherwise fill the log
    const log = { probe: s.name, method: s.method, path: s.path, key: slot.redacted, status, latencyMs: slot.state.latencyMs }
    if (!ok && wasOk !== false) this.#opts.logger.warn({ ...log, error: safeError }, 'probe failing: clients calling this endpoint get errors')
    else if (ok && wasOk === false) this.#opts.logger.info(log, 'probe recovered')
  }
}

/** `HTTP 503 FLAGGATE_UPSTREAM_OVERLOADED (gateway)`, or `HTTP 403 from core`. */
function describeFailure (status: number, body: string, upstream: string | string[] | undefined): string {
  const code = /"code"\s*:\s*"(FLAGGATE_[A-Z_]+)"/.exec(body)?.[1]
  if (code !== undefined) return `HTTP ${status} ${code}`
  return `HTTP ${status}${typeof upstream === 'string' && upstream !== 'none' ? ` from ${upstream}` : ''}`
}
