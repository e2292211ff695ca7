/**
 * Connections to the upstreams: an undici Agent whose factory gives each origin its own
 * keep-alive Pool sized by that upstream's `maxConnections`. Upstream URLs reload live: a new
 * origin simply gets a new pool on first use; changed pool settings get a new Agent. TLS certificates are verified (reply-from's own
 * default turns verification off; we never use its default agent).
 */
import { Agent, Dispatcher, Pool, errors as undiciErrors } from 'undici'
import type { Policy } from '../policy/compile.js'
import { GatewayError } from '../errors.js'

export interface UpstreamResponse { statusCode: number; headers: Record<string, string | string[] | undefined>; body: Buffer }

/**
 * A dispatcher that forwards to the Agent in force. reply-from is handed one dispatcher at boot;
 * when a reload changes an origin's pool settings (maxConnections, TLS verification), a new Agent
 * takes the new requests and the old one closes once its requests are done.
 */
class SwitchingDispatcher extends Dispatcher {
  current: Agent
  constructor (agent: Agent) { super(); this.current = agent }
  override dispatch (opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    return this.current.dispatch(opts, handler)
  }
  override async close (): Promise<void> { await this.current.close() }
  override async destroy (): Promise<void> { await this.current.destroy() }
}

interface PoolSettings { connections: number; rejectUnauthorized: boolean }

export class Upstreams {
  readonly agent: Dispatcher
  readonly #switch: SwitchingDispatcher
  #settings = new Map<string, PoolSettings>()

  constructor () {
    this.#switch = new SwitchingDispatcher(this.#newAgent(this.#settings))
    this.agent = this.#switch
  }

  #newAgent (settings: ReadonlyMap<string, PoolSettings>): Agent {
    return new Agent({
      factory: (origin, opts) => {
        const s = settings.get(String(origin))
        // keep-alive sockets idle for undici's default 4 s at most (a server hint may shorten it)
        return new Pool(origin, {
          ...opts,
          connections: s?.connections ?? 128,
          pipelining: 1,
          connect: { rejectUnauthorized: s?.rejectUnauthorized ?? true }
        })
      }
    })
  }

  /** Called on every (re)load, before the policy serves requests. */
  configure (policy: Policy): void {
    const next = new Map<string, PoolSettings>()
    for (const u of Object.values(policy.upstreams)) {
      next.set(new URL(u.url).origin, { connections: u.maxConnections, rejectUnauthorized: u.tls?.rejectUnauthorized ?? true })
    }
    let changed = false
    for (const [origin, s] of this.#settings) {
      const n = next.get(origin)
      if (n !== undefined && (n.connections !== s.connections || n.rejectUnauthorized !== s.rejectUnauthorized)) changed = true
    }
    // new origins get their pool on first use from the map; changed ones need a new Agent
    for (const [origin, s] of next) this.#settings.set(origin, s)
    if (changed) {
      const old = this.#switch.current
      this.#switch.current = this.#newAgent(new Map(this.#settings))
      void old.close().catch(() => {})
    }
  }

  /**
   * One buffered request, for the gateway's own fetches (cache fills, probes). Errors come back as
   * the gateway's 502/504 answers so callers never see a raw socket error.
   */
  async request (opts: { origin: string; path: string; method: 'GET' | 'HEAD' | 'POST'; headers: Record<string, string>; timeoutMs: number; body?: Buffer; maxBodyBytes?: number }): Promise<UpstreamResponse> {
    try {
      const res = await this.#switch.current.request({
        origin: opts.origin,
        path: opts.path,
        method: opts.method,
        headers: opts.headers,
        body: opts.body,
        headersTimeout: opts.timeoutMs,
        bodyTimeout: opts.timeoutMs
      } as Dispatcher.RequestOptions)
      const max = opts.maxBodyBytes ?? Infinity
      // abandoning the body aborts the request, which the stream reports as an error: expected
      const abandon = (bytes: number): never => { res.body.on('error', () => {}); res.body.destroy(); throw new BodyTooLarge(bytes) }
      const declared = Number(res.headers['content-length'])
      if (declared > max) abandon(declared)
      const chunks: Buffer[] = []
      let size = 0
      for await (const chunk of res.body) {
        size += (chunk as Buffer).length
        // stop reading at the limit: the caller falls back to streaming, memory stays bounded
        if (size > max) abandon(size)
        chunks.push(chunk as Buffer)
      }
      return { statusCode: res.statusCode, headers: res.headers, body: Buffer.concat(chunks, size) }
    } catch (err) {
      if (err instanceof BodyTooLarge) throw err
      throw toGatewayError(err)
    }
  }

  /** Graceful when `force` is false; past the shutdown deadline, hung upstream requests are cut. */
  async close (force = false): Promise<void> {
    const agent = this.#switch.current
    if (force) { await agent.destroy().catch(() => {}); return }
    await agent.close().catch(async () => await agent.destroy())
  }
}

/** The upstream's body passed `maxBodyBytes`: not an upstream failure, a reason not to buffer. */
export class BodyTooLarge extends Error {
  constructor (readonly bytes: number) { super(`upstream body larger than the buffering limit (${bytes} bytes read or declared)`) }
}

/** Maps any upstream failure to the gateway's wire answer (SPEC section 3). */
export function toGatewayError (err: unknown): GatewayError {
  if (err instanceof GatewayError) return err
  const e = err as { code?: string; cause?: { code?: string }; name?: string }
  const code = e.code ?? e.cause?.code
  if (err instanceof undiciErrors.HeadersTimeoutError || err instanceof undiciErrors.BodyTimeoutError ||
      code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT' || code === 'UND_ERR_CONNECT_TIMEOUT' ||
      code === 'FST_REPLY_FROM_GATEWAY_TIMEOUT' || code === 'FST_REPLY_FROM_CONNECT_TIMEOUT' || e.name === 'TimeoutError' || e.name === 'AbortError') {
    return new GatewayError('FLAGGATE_UPSTREAM_TIMEOUT', undefined, undefined, { cause: err })
  }
  return new GatewayError('FLAGGATE_UPSTREAM_UNREACHABLE', undefined, undefined, { cause: err })
}
