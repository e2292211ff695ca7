/**
 * The only way to talk to an upstream (Core or Edge): `forward` streams a client's request and
 * the answer back (the proxy), `fetch` makes a buffered request for the gateway's own use (cache
 * fills, probes). Both go through the gate, apply the one header policy (headers.ts) and observe
 * `flaggate_upstream_request_duration_seconds` once per attempt that got response headers.
 *
 * undici's `dispatcher.request()` directly rather than @fastify/reply-from: the header policy,
 * the gate's exactly-once outcome and the fallback retry need the attempt in our hands, and
 * reply-from's own retries and header defaults (a Content-Type on a bare POST, 503 retries) would
 * each have to be switched off again.
 */
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { Logger } from 'pino'
import { Readable } from 'node:stream'
import type { Dispatcher } from 'undici'
import { GatewayError } from '../errors.js'
import type { Metrics } from '../metrics/registry.js'
import type { Policy, UpstreamTarget } from '../policy/compile.js'
import { OPEN_GATE, type Admission, type GateClient, type UpstreamGate } from './gate.js'
import { BodyTooLarge, diedUnanswered, toGatewayError } from './errors.js'
import { proxyRequestHeaders, type HeaderSet } from './headers.js'
import { invalidStatus, ProxyHandler, type AnswerHold, type ProxiedResponse } from './proxy-handler.js'
import { ANSWER_BUFFER_BYTES, HELD_PER_CLIENT, HeldAnswers } from './held-answers.js'
import { DEFAULT_IPV6_PREFIX } from '../shared/ip-prefix.js'
import { redactKey } from '../shared/redact.js'
import { Pools } from './pools.js'
import { compressProxied } from '../compress/proxied.js'
import { codingLabel, countStreamed } from '../compress/count-stream.js'
import { HotChildTable } from '../metrics/hot-counter.js'
import { takeFallback } from './fallback.js'
import { elapsedMs, timeUpstream } from './timing.js'
import { upstreamOf, upstreamUrlOf } from '../contracts/request.js'
import { UpstreamFailures } from './failures.js'

export interface UpstreamResponse { statusCode: number; headers: Record<string, string | string[] | undefined>; body: Buffer }

export interface FetchRequest {
  upstream: string
  route: string
  /** path and query as sent, base path included */
  path: string
  method: 'GET' | 'HEAD' | 'POST'
  headers: Record<string, string>
  /** default: the upstream's `timeout` */
  timeoutMs?: number
  body?: Buffer
  /** past this many body bytes the request is abandoned with BodyTooLarge */
  maxBodyBytes?: number
  /**
   * Past `maxBodyBytes`, hand the answer over in BodyTooLarge.answer (still streaming) instead of
   * abandoning it, so the caller can send it on rather than make the same request again.
   */
  handOverLargeBody?: boolean
  /** who the request is for (a cache fill: the client whose request started it); see GateClient */
  client?: GateClient
}

export { BUFFERED_BODY_BYTES } from './proxy-handler.js'

interface Answer { res: ProxiedResponse; upstream: string }

function failure (ge: GatewayError, latencyMs: number): { kind: 'timeout' | 'unreachable'; latencyMs: number } {
  return { kind: ge.code === 'FLAGGATE_UPSTREAM_TIMEOUT' ? 'timeout' : 'unreachable', latencyMs }
}

function dispatchOptions (origin: string, path: string, method: string, headers: HeaderSet, body: Buffer | undefined, timeoutMs: number): Dispatcher.DispatchOptions {
  return { origin, path, method: method as Dispatcher.HttpMethod, headers, body, headersTimeout: timeoutMs, bodyTimeout: timeoutMs }
}

/** The one retry on the same upstream: idempotent methods only, and only when nothing was answered (see errors.ts). */
function worthRetry (method: string, err: unknown): boolean {
  return (method === 'GET' || method === 'HEAD') && diedUnanswered(err)
}

/** What the fallback retries: a connection error, a timeout or a 5xx; never a shed request. */
function worthFallback (r: Answer | GatewayError): boolean {
  if (r instanceof GatewayError) return r.code === 'FLAGGATE_UPSTREAM_TIMEOUT' || r.code === 'FLAGGATE_UPSTREAM_UNREACHABLE'
  return r.res.statusCode >= 500
}

export class UpstreamClient {
  /** settable after construction: the composition sets the breakers' gate here */
  gate: UpstreamGate
  readonly #pools = new Pools()
  /** connections held by answers waiting on slow clients, per client (held-answers.ts) */
  readonly #held = new HeldAnswers()
  #lastCutLog = 0
  #cutsUnlogged = 0
  readonly #metrics: Metrics
  readonly #logger: Logger
  #policy: Policy | undefined
  // prom-client hashes a label object on every observe(); resolve each child once instead
  readonly #histograms = new Map<string, { observe: (v: number) => void }>()
  /** flaggate_response_body_bytes_total children for streamed answers, resolved once per route and coding */
  readonly #bytesOut: HotChildTable
  /** why attempts failed: the last one per upstream (status), a rate-limited warning, the cause for the access log */
  readonly failures: UpstreamFailures

  constructor (opts: { metrics: Metrics; logger: Logger; gate?: UpstreamGate }) {
    this.#metrics = opts.metrics
    this.#logger = opts.logger
    this.#bytesOut = new HotChildTable(opts.metrics.hot.responseBytes, (route, encoding) => ({ route, encoding }))
    this.gate = opts.gate ?? OPEN_GATE
    this.failures = new UpstreamFailures(opts.logger)
  }

  /** each upstream's URL and its last failure, for `/admin/status` */
  status (): Record<string, unknown> {
    return { upstreams: this.failures.status(this.#policy) }
  }

  /** Every (re)load, before the policy serves requests: pool sizes and TLS settings apply live. */
  configure (policy: Policy): void {
    this.#policy = policy
    this.#pools.configure(policy)
  }

  /** The pool settings an origin gets (admin view, tests). */
  poolSettings (origin: string): { connections: number; rejectUnauthorized: boolean } | undefined {
    return this.#pools.settingsOf(origin)
  }

  #observe (upstream: string, route: string, ms: number): void {
    const k = `${upstream}\n${route}`
    let h = this.#histograms.get(k)
    if (h === undefined) { h = this.#metrics.upstreamDuration.labels(upstream, route); this.#histograms.set(k, h) }
    h.observe(ms / 1000)
  }

  async #request (origin: string, path: string, method: string, headers: HeaderSet, body: Buffer | undefined, timeoutMs: number): Promise<Dispatcher.ResponseData> {
    const opts = dispatchOptions(origin, path, method, headers, body, timeoutMs)
    try {
      return await this.#pools.dispatcher.request(opts)
    } catch (err) {
      if (worthRetry(method, err)) return await this.#pools.dispatcher.request(opts)
      throw err
    }
  }

  /** The proxy's request: ProxyHandler instead of undici's request(); the same one retry as #request. */
  async #proxy (upstream: string, origin: string, path: string, method: string, headers: HeaderSet, body: Buffer | undefined, timeoutMs: number, hold: AnswerHold): Promise<ProxiedResponse> {
    const opts = dispatchOptions(origin, path, method, headers, body, timeoutMs)
    let handler: ProxyHandler | undefined
    const once = async (): Promise<ProxiedResponse> => await new Promise((resolve, reject) => {
      handler = new ProxyHandler(upstream, method === 'HEAD', resolve, reject, hold)
      this.#pools.dispatcher.dispatch(opts, handler)
    })
    try {
      return await once()
    } catch (err) {
      // a body cut short after the headers is the upstream's failure, not a stale keep-alive socket
      if (handler?.answered !== true && worthRetry(method, err)) return await once()
      throw err
    }
  }

  /** The slow-reader bound of one answer for `client` (held-answers.ts). */
  #holdFor (upstream: string, client: GateClient): AnswerHold {
    const who = HeldAnswers.clientOf(upstream, client, this.#policy?.data.server.ipv6Prefix ?? DEFAULT_IPV6_PREFIX)
    return {
      tryHold: () => this.#held.tryHold(who),
      release: () => { this.#held.release(who) },
      cut: () => {
        // at most one line a minute: each cut is an attacker's request, the log must not be theirs
        const now = Date.now()
        if (now - this.#lastCutLog < 60_000) { this.#cutsUnlogged++; return }
        this.#logger.warn({ upstream, client: client.key === undefined ? client.ip : `${redactKey(client.key)}@${client.ip}`, heldPerClient: HELD_PER_CLIENT, bufferBytes: ANSWER_BUFFER_BYTES, cutSinceLastLine: this.#cutsUnlogged }, 'answer cut: the client holds its share of upstream connections with answers it does not read')
        this.#lastCutLog = now
        this.#cutsUnlogged = 0
      }
    }
  }

  /** One gated attempt of a proxied request: the answer (a small body read, a larger one unread), or the error to send. */
  async #attempt (name: string, target: UpstreamTarget, route: string, client: GateClient, method: string, path: string, headers: HeaderSet, body: Buffer | undefined, timeoutMs: number): Promise<Answer | GatewayError> {
    const admission = this.gate.admit(name, route, client)
    if (admission instanceof GatewayError) return admission
    const t0 = process.hrtime.bigint()
    let res: ProxiedResponse
    try {
      res = await this.#proxy(name, target.origin, path, method, headers, body, timeoutMs, this.#holdFor(name, client))
    } catch (err) {
      const ge = this.failures.record(toGatewayError(err), name, target)
      admission.finish(failure(ge, elapsedMs(t0)))
      return ge
    }
    const latencyMs = Number(res.headersAt - t0) / 1e6
    admission.finish({ kind: 'response', status: res.statusCode, latencyMs })
    this.#observe(name, route, latencyMs)
    return { res, upstream: name }
  }

  /**
   * Streams the client's request to `upstreamOf(gw)` and the answer to the client. When the edge
   * step named a fallback, a GET or HEAD whose first attempt failed (connection error, timeout,
   * 5xx) is sent once to the fallback by the Edge fallback rule (fallback.ts). Other methods are
   * never retried.
   */
  async forward (request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> {
    const gw = request.gateway
    const route = gw.route?.name ?? 'none'
    const method = request.method
    const body = Buffer.isBuffer(request.body) && request.body.length > 0 ? request.body : undefined
    const upstream = upstreamOf(gw)
    const first = gw.policy.targets[upstream]
    if (first === undefined) throw new GatewayError('FLAGGATE_UPSTREAM_UNREACHABLE', `No upstream named '${upstream}' in the policy.`)
    const timer = timeUpstream(gw)
    const client: GateClient = { key: gw.envKey, ip: gw.clientIp }
    let result = await this.#attempt(upstream, first, route, client, method, upstreamUrlOf(gw), proxyRequestHeaders(request, first), body, first.timeoutMs)

    const plan = (method === 'GET' || method === 'HEAD') && worthFallback(result)
      ? takeFallback(gw, elapsedMs(timer.started))
      : undefined
    if (plan !== undefined) {
      // the first answer is not sent. A small one was read whole (its socket is back in the pool);
      // a streamed one is dropped, which aborts its upstream request rather than read a body
      // nobody will get
      if (!(result instanceof GatewayError) && !Buffer.isBuffer(result.res.body)) result.res.body.destroy()
      this.#logger.debug({ route, from: plan.from, to: plan.to, status: result instanceof GatewayError ? result.code : (result as Answer).res.statusCode }, 'upstream fallback')
      this.#metrics.upstreamFallbacks.labels(route, plan.from, plan.to).inc()
      result = await this.#attempt(plan.to, plan.target, route, client, method, plan.path, proxyRequestHeaders(request, plan.target), body, plan.timeoutMs)
    }
    timer.stop()
    if (result instanceof GatewayError) throw result
    // a 5xx for a request local evaluation can answer (a GatewayError reaches it through the error handler)
    if (result.res.statusCode >= 500 && gw.localFallback !== undefined) {
      const local = gw.localFallback(reply)
      if (local !== undefined) {
        if (!Buffer.isBuffer(result.res.body)) result.res.body.destroy()
        return local
      }
    }
    const res = result.res
    const compress = gw.route?.compress
    if (compress === undefined) {
      if (!Buffer.isBuffer(res.body)) this.#countStreamed(route, res.body, codingLabel(res.headers['content-encoding']))
      return reply.code(res.statusCode).headers(res.headers).send(res.body)
    }
    // the route asks for compression on the fly (src/compress/proxied.ts): never of an answer the
    // upstream already encoded
    const c = await compressProxied(compress, request.headers['accept-encoding'], method, res.statusCode, res.headers, res.body)
    if (c.encoding !== 'identity') {
      if (Buffer.isBuffer(c.body)) this.#metrics.responseBytes.labels(route, c.encoding).inc(c.body.length)
      if (c.identityBytes !== undefined && Buffer.isBuffer(c.body)) this.#metrics.compressedIdentityBytes.labels(route, c.encoding).inc(c.identityBytes)
    }
    if (!Buffer.isBuffer(c.body)) this.#countStreamed(route, c.body, c.encoding !== 'identity' ? c.encoding : codingLabel(res.headers['content-encoding']))
    return reply.code(res.statusCode).headers(res.headers).send(c.body)
  }

  /** A streamed answer's bytes, by the coding sent, counted as it ends (compress/count-stream.ts). */
  #countStreamed (route: string, body: Readable, coding: string): void {
    countStreamed(body, this.#bytesOut.get(route, coding, ''))
  }

  /**
   * A buffered request for the gateway's own use. Errors come back as GatewayError 502/504 (or the
   * gate's 503), never as raw socket errors; a body past `maxBodyBytes` is abandoned with
   * BodyTooLarge (read no further: the caller streams instead, memory stays bounded).
   */
  async fetch (req: FetchRequest): Promise<UpstreamResponse> {
    const target = this.#policy?.targets[req.upstream]
    if (target === undefined) throw new GatewayError('FLAGGATE_UPSTREAM_UNREACHABLE', `No upstream named '${req.upstream}' in the policy.`)
    const admission: Admission | GatewayError = this.gate.admit(req.upstream, req.route, req.client)
    if (admission instanceof GatewayError) throw admission
    const t0 = process.hrtime.bigint()
    let res: Dispatcher.ResponseData
    try {
      res = await this.#request(target.origin, req.path, req.method, req.headers, req.body, req.timeoutMs ?? target.timeoutMs)
    } catch (err) {
      const ge = this.failures.record(toGatewayError(err), req.upstream, target)
      admission.finish(failure(ge, elapsedMs(t0)))
      throw ge
    }
    const latencyMs = elapsedMs(t0)
    if (res.statusCode > 599) {
      res.body.on('error', () => {})
      res.body.destroy()
      admission.finish({ kind: 'unreachable', latencyMs })
      throw toGatewayError(invalidStatus(res.statusCode))
    }
    this.#observe(req.upstream, req.route, latencyMs)
    try {
      const body = await readBody(res, req.maxBodyBytes ?? Infinity, req.handOverLargeBody === true)
      admission.finish({ kind: 'response', status: res.statusCode, latencyMs })
      return { statusCode: res.statusCode, headers: res.headers, body }
    } catch (err) {
      if (err instanceof BodyTooLarge) {
        // handed over, the answer is used like any other; abandoned, it says nothing about the upstream
        admission.finish(err.answer !== undefined ? { kind: 'response', status: res.statusCode, latencyMs } : { kind: 'abandoned' })
        throw err
      }
      const ge = this.failures.record(toGatewayError(err), req.upstream, target)
      admission.finish(failure(ge, elapsedMs(t0)))
      throw ge
    }
  }

  /** Graceful when `force` is false; past the shutdown deadline, hung upstream requests are cut. */
  async close (force = false): Promise<void> { await this.#pools.close(force) }
}

async function readBody (res: Dispatcher.ResponseData, max: number, handOver: boolean): Promise<Buffer> {
  const chunks: Buffer[] = []
  let size = 0
  // the iterator by hand: leaving a for-await loop would destroy the body we may hand over
  const it = res.body[Symbol.asyncIterator]() as AsyncIterator<Buffer>
  const tooLarge = (bytes: number): never => {
    if (handOver) throw new BodyTooLarge(bytes, { statusCode: res.statusCode, headers: res.headers, body: Readable.from(remainder(chunks, it), { objectMode: false }) })
    // abandoning the body aborts the request, which the stream reports as an error: expected
    res.body.on('error', () => {})
    res.body.destroy()
    throw new BodyTooLarge(bytes)
  }
  const declared = Number(res.headers['content-length'])
  if (declared > max) tooLarge(declared)
  for (;;) {
    const r = await it.next()
    if (r.done === true) break
    size += r.value.length
    chunks.push(r.value)
    // stop buffering at the limit: the caller streams instead, memory stays bounded
    if (size > max) tooLarge(size)
  }
  return Buffer.concat(chunks, size)
}

/** The bytes already read, then the rest of the body; ending early (client gone) releases the upstream request. */
async function * remainder (read: Buffer[], it: AsyncIterator<Buffer>): AsyncGenerator<Buffer> {
  try {
    for (const chunk of read) yield chunk
    read.length = 0
    for (;;) {
      const r = await it.next()
      if (r.done === true) return
      yield r.value
    }
  } finally {
    await it.return?.()
  }
}
