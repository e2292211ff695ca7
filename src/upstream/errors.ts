/**
 * Upstream failures as the gateway's wire answers, and as gate outcomes.
 */
import type { Readable } from 'node:stream'
import { errors as undiciErrors } from 'undici'
import { GatewayError } from '../errors.js'

/** The upstream's body passed `maxBodyBytes`: not an upstream failure, a reason not to buffer. */
export class BodyTooLarge extends Error {
  constructor (
    readonly bytes: number,
    /**
     * With `handOverLargeBody`: the answer, still streaming (the bytes already read, then the
     * rest), for a caller to send on instead of asking again; whoever gets it must consume or
     * destroy `body`, or the upstream connection stays taken.
     */
    readonly answer?: { statusCode: number; headers: Record<string, string | string[] | undefined>; body: Readable }
  ) { super(`upstream body larger than the buffering limit (${bytes} bytes read or declared)`) }
}

const TIMEOUT_CODES = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'UND_ERR_CONNECT_TIMEOUT', 'ETIMEDOUT'])

/** Maps any upstream failure to the gateway's answer: 504 for timeouts, 502 for everything else. */
export function toGatewayError (err: unknown): GatewayError {
  if (err instanceof GatewayError) return err
  const e = err as { code?: string; cause?: { code?: string }; name?: string }
  const code = e.code ?? e.cause?.code ?? ''
  if (err instanceof undiciErrors.HeadersTimeoutError || err instanceof undiciErrors.BodyTimeoutError ||
      err instanceof undiciErrors.ConnectTimeoutError || TIMEOUT_CODES.has(code) || e.name === 'TimeoutError') {
    return new GatewayError('FLAGGATE_UPSTREAM_TIMEOUT', undefined, undefined, { cause: err })
  }
  return new GatewayError('FLAGGATE_UPSTREAM_UNREACHABLE', undefined, undefined, { cause: err })
}

// A keep-alive socket that the upstream closed just as we reused it fails before the upstream saw
// anything: NGINX's proxy_next_upstream sends an idempotent request once more on a fresh one.
const SOCKET_CLOSED = new Set(['UND_ERR_SOCKET', 'ECONNRESET', 'EPIPE'])

export function diedUnanswered (err: unknown): boolean {
  return SOCKET_CLOSED.has((err as { code?: string } | null)?.code ?? '')
}
