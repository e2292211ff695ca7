/**
 * Why an upstream attempt failed, in an operator's words: the class of failure (DNS, refused,
 * reset, TLS, timeout), the upstream's name and URL host, and the system's own code. The client
 * answers 502/504 with a fixed message (nothing about the network leaks to clients); this text is
 * what the access log, the rate-limited warning and `flaggate status` carry.
 */
export type CauseKind = 'dns' | 'refused' | 'reset' | 'tls' | 'timeout' | 'other'

export interface UpstreamCause { kind: CauseKind; upstream: string; host: string; code: string; text: string }

const KIND_TEXT: Record<CauseKind, string> = {
  dns: 'DNS lookup failed for',
  refused: 'connection refused by',
  reset: 'connection reset by',
  tls: 'TLS handshake failed with',
  timeout: 'timed out waiting for',
  other: 'request failed to'
}

/** the innermost error's code: undici wraps socket errors (`cause`), fetch wraps undici's */
function codeOf (err: unknown): { code: string; message: string } {
  let e = err as { code?: unknown; message?: unknown; cause?: unknown } | undefined
  let code = ''
  let message = ''
  for (let depth = 0; e !== undefined && e !== null && depth < 4; depth++) {
    if (typeof e.code === 'string' && e.code !== '') code = e.code
    if (typeof e.message === 'string' && e.message !== '') message = e.message
    e = e.cause as typeof e
  }
  return { code, message }
}

export function kindOf (code: string, name = ''): CauseKind {
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN' || code === 'EAI_FAIL' || code === 'EAI_NONAME') return 'dns'
  if (code === 'ECONNREFUSED') return 'refused'
  if (code === 'ECONNRESET' || code === 'EPIPE' || code === 'UND_ERR_SOCKET' || code === 'UND_ERR_CLOSED') return 'reset'
  if (code.startsWith('ERR_TLS') || code.startsWith('ERR_SSL') || code.startsWith('CERT_') || code.includes('CERT') || code.startsWith('UNABLE_TO_') || code === 'DEPTH_ZERO_SELF_SIGNED_CERT' || code === 'SELF_SIGNED_CERT_IN_CHAIN') return 'tls'
  if (code.endsWith('_TIMEOUT') || code === 'ETIMEDOUT' || name === 'TimeoutError') return 'timeout'
  return 'other'
}

export function describeCause (err: unknown, upstream: string, host: string): UpstreamCause {
  const { code, message } = codeOf(err)
  const kind = kindOf(code, (err as { name?: string } | null)?.name ?? '')
  const detail = code !== '' ? code : message.slice(0, 120)
  return { kind, upstream, host, code, text: `${KIND_TEXT[kind]} ${host} (upstream ${upstream}${detail === '' ? '' : `: ${detail}`})` }
}
