/**
 * The one table of answers the gateway gives on its own behalf. A test checks that
 * docs/operations.md ("Errors") lists every code here with its status.
 *
 * Not @fastify/error: it makes one Error class per code from a message template, while what we
 * need is this table (status, reason phrase, default message) and one wire-body writer for it;
 * GatewayError already carries code, status and headers, so it would add a dependency, not remove code.
 */
export const ERRORS = {
  FLAGGATE_RATE_LIMITED: { status: 429, error: 'Too Many Requests', message: 'Rate limit exceeded; retry after the number of seconds in Retry-After.' },
  FLAGGATE_BLOCKED: { status: 403, error: 'Forbidden', message: 'This client is blocked.' },
  FLAGGATE_UPSTREAM_OVERLOADED: { status: 503, error: 'Service Unavailable', message: 'The upstream is overloaded; retry after the number of seconds in Retry-After.' },
  FLAGGATE_OVERLOADED: { status: 503, error: 'Service Unavailable', message: 'The gateway is at a resource limit; retry after the number of seconds in Retry-After.' },
  FLAGGATE_UPSTREAM_UNREACHABLE: { status: 502, error: 'Bad Gateway', message: 'The upstream could not be reached.' },
  FLAGGATE_UPSTREAM_TIMEOUT: { status: 504, error: 'Gateway Timeout', message: 'The upstream did not answer in time.' },
  FLAGGATE_BODY_TOO_LARGE: { status: 413, error: 'Payload Too Large', message: 'The request body is larger than the gateway accepts.' },
  FLAGGATE_HEADERS_TOO_LARGE: { status: 431, error: 'Request Header Fields Too Large', message: 'A request header, or the header block, is larger than the gateway accepts.' },
  FLAGGATE_REQUEST_TIMEOUT: { status: 408, error: 'Request Timeout', message: 'The request was not received in time (server.headersTimeout / server.requestTimeout).' },
  FLAGGATE_BAD_REQUEST: { status: 400, error: 'Bad Request', message: 'The request is malformed.' },
  FLAGGATE_NOT_FOUND: { status: 404, error: 'Not Found', message: 'No route matches this request.' },
  FLAGGATE_UNAUTHORIZED: { status: 401, error: 'Unauthorized', message: 'Missing or invalid credentials.' },
  FLAGGATE_FORBIDDEN: { status: 403, error: 'Forbidden', message: 'This request may not use the admin API.' },
  FLAGGATE_POLICY_INVALID: { status: 422, error: 'Unprocessable Entity', message: 'The policy file is invalid; the previous policy stays in force.' },
  FLAGGATE_STATE_UNAVAILABLE: { status: 503, error: 'Service Unavailable', message: 'The change could not be stored, so it was not applied.' },
  FLAGGATE_INTERNAL_ERROR: { status: 500, error: 'Internal Server Error', message: 'The gateway failed unexpectedly; this is a bug.' }
} as const satisfies Record<string, { status: number; error: string; message: string }>

export type ErrorCode = keyof typeof ERRORS

/** A rejection the gateway answers itself; thrown by the steps, rendered by the one error handler. */
export class GatewayError extends Error {
  readonly code: ErrorCode
  readonly statusCode: number
  readonly headers: Readonly<Record<string, string>> | undefined
  constructor (code: ErrorCode, message?: string, headers?: Record<string, string>, options?: { cause?: unknown }) {
    super(message ?? ERRORS[code].message, options)
    this.name = 'GatewayError'
    this.code = code
    this.statusCode = ERRORS[code].status
    this.headers = headers
  }
}

/** The wire body of every answer the gateway gives itself: `{statusCode, code, error, message}`. */
export function errorBody (code: ErrorCode, message?: string): string {
  const e = ERRORS[code]
  return JSON.stringify({ statusCode: e.status, code, error: e.error, message: message ?? e.message })
}
