/**
 * Parsers for the policy's human units. Each returns `undefined` on bad input so the schema
 * layer can word the error with the file position; none of them throws.
 */

const DURATION_RE = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/
const DURATION_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }

/** `250ms`, `30s`, `15m`, `2h`, `1d` → milliseconds. */
export function parseDuration (text: string): number | undefined {
  const m = DURATION_RE.exec(text.trim())
  if (m === null) return undefined
  return Math.round(Number(m[1]) * DURATION_MS[m[2]!]!)
}

const SIZE_RE = /^(\d+(?:\.\d+)?)(b|kb|mb|gb)$/i
const SIZE_BYTES: Record<string, number> = { b: 1, kb: 1024, mb: 1024 ** 2, gb: 1024 ** 3 }

/** `512kb`, `5mb` → bytes (binary multiples, as NGINX reads `k` and `m`). */
export function parseSize (text: string): number | undefined {
  const m = SIZE_RE.exec(text.trim())
  if (m === null) return undefined
  return Math.round(Number(m[1]) * SIZE_BYTES[m[2]!.toLowerCase()]!)
}

const RATE_RE = /^(\d+(?:\.\d+)?)\s*\/\s*(\d*)(ms|s|m|h|d)$/
const RATE_UNIT_S: Record<string, number> = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400 }

export interface Rate { /** tokens per second */ perSecond: number; text: string }

/** `100/s`, `30/m`, `1000/h`, `5/10s` → tokens per second. */
export function parseRate (text: string): Rate | undefined {
  const m = RATE_RE.exec(text.trim())
  if (m === null) return undefined
  const count = Number(m[1])
  const periods = m[2] === '' ? 1 : Number(m[2])
  if (periods === 0) return undefined
  return { perSecond: count / (periods * RATE_UNIT_S[m[3]!]!), text: text.trim() }
}

const PERCENT_RE = /^(\d+(?:\.\d+)?)%$/
/** `50%` → 0.5 */
export function parsePercent (text: string): number | undefined {
  const m = PERCENT_RE.exec(text.trim())
  return m === null ? undefined : Number(m[1]) / 100
}

/** `300 per 1m` → { count, windowMs } */
export function parseCountPerWindow (text: string): { count: number; windowMs: number } | undefined {
  const m = /^(\d+)\s+per\s+(\S+)$/.exec(text.trim())
  if (m === null) return undefined
  const windowMs = parseDuration(m[2]!)
  if (windowMs === undefined || windowMs === 0) return undefined
  return { count: Number(m[1]), windowMs }
}

/** `127.0.0.1:8081`, `[::1]:8081`, `:8080` or `8080` → host and port. */
export function parseListen (text: string): { host: string; port: number } | undefined {
  const t = text.trim()
  let host = '0.0.0.0'
  let portText = t
  const v6 = /^\[([^\]]+)\]:(\d+)$/.exec(t)
  if (v6 !== null) { host = v6[1]!; portText = v6[2]! } else {
    const i = t.lastIndexOf(':')
    if (i >= 0) { host = t.slice(0, i) === '' ? '0.0.0.0' : t.slice(0, i); portText = t.slice(i + 1) }
  }
  if (!/^\d+$/.test(portText)) return undefined
  const port = Number(portText)
  if (port > 65535) return undefined
  return { host, port }
}

/** milliseconds → the largest policy unit that states it exactly: 30000 → `30s`, 600000 → `10m`, 250 → `250ms`. */
export function formatDuration (ms: number): string {
  for (const unit of ['d', 'h', 'm', 's'] as const) {
    const size = DURATION_MS[unit]!
    if (ms !== 0 && ms % size === 0) return `${ms / size}${unit}`
  }
  return `${ms}ms`
}

/** bytes → the largest policy unit that states it exactly: 10485760 → `10mb`, 1536 → `1536b`. */
export function formatSize (bytes: number): string {
  for (const unit of ['gb', 'mb', 'kb'] as const) {
    const size = SIZE_BYTES[unit]!
    if (bytes !== 0 && bytes % size === 0) return `${bytes / size}${unit}`
  }
  return `${bytes}b`
}
