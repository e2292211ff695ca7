/**
 * Connections to the upstreams: one undici Agent whose factory gives each origin its own
 * keep-alive Pool sized by that upstream's `maxConnections`. Upstream URLs reload live: a new
 * origin simply gets a new pool on first use. TLS certificates are verified (reply-from's own
 * default turns verification off; we never use its default agent).
 */
import { Agent, Pool, errors as undiciErrors, type Dispatcher } from 'undici'
import type { Policy } from '../policy/compile.js'
import { GatewayError } from '../errors.js'

export interface UpstreamResponse { statusCode: number; headers: Record<string, string | string[] | undefined>; body: Buffer }

export class Upstreams {
  readonly agent: Agent
  #connectionsByOrigin = new Map<string, number>()
  #rejectUnauthorizedByOrigin = new Map<string, boolean>()

  constructor () {
    this.agent = new Agent({
      factory: (origin, opts) => {
        const o = String(origin)
        return new Pool(origin, {
          ...opts,
          connections: this.#connectionsByOrigin.get(o) ?? 128,
          pipelining: 1,
          keepAliveTimeout: 30_000,
          connect: { rejectUnauthorized: this.#rejectUnauthorizedByOrigin.get(o) ?? true }
        })
      }
    })
  }

  /** Called on every (re)load, before the policy serves requests. */
  configure (policy: Policy): void {
    for (const u of Object.values(policy.upstreams)) {
      const origin = new URL(u.url).origin
      this.#connectionsByOrigin.set(origin, u.maxConnections)
      this.#rejectUnauthorizedByOrigin.set(origin, u.tls?.rejectUnauthorized ?? true)
    }
  }

  /**
   * One buffered request, for the gateway's own fetches (cache fills, probes). Errors come back as
   * the gateway's 502/504 answers so callers never see a raw socket error.
   */
  async request (opts: { origin: string; path: string; method: 'GET' | 'HEAD' | 'POST'; headers: Record<string, string>; timeoutMs: number; body?: Buffer; maxBodyBytes?: number }): Promise<UpstreamResponse> {
    try {
      const res = await this.agent.request({
        origin: opts.origin,
        path: opts.path,
        method: opts.method,
        headers: opts.headers,
        body: opts.body,
        headersTimeout: opts.timeoutMs,
        bodyTimeout: opts.timeoutMs
      } as Dispatcher.RequestOptions)
      const chunks: Buffer[] = []
      let size = 0
      for await (const chunk of res.body) {
        size += (chunk as Buffer).length
        chunks.push(chunk as Buffer)
      }
      return { statusCode: res.statusCode, headers: res.headers, body: Buffer.concat(chunks, size) }
    } catch (err) {
      throw toGatewayError(err)
    }
  }

  /** Graceful when `force` is false; past the shutdown deadline, hung upstream requests are cut. */
  async close (force = false): Promise<void> {
    if (force) { await this.agent.destroy().catch(() => {}); return }
    await this.agent.close().catch(async () => await this.agent.destroy())
  }
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
