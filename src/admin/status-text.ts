/**
 * `flaggate status` for humans: `/admin/status` as a few aligned lines. Tolerant by design: any
 * section may be absent (an older gateway, a capability not configured) or carry fields this
 * version does not know, and the summary still prints what is there. `--json` prints the raw
 * answer for scripts.
 */
import { formatDuration } from '../shared/duration.js'

type Obj = Record<string, unknown>

const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v)
const num = (v: unknown): number | undefined => typeof v === 'number' && Number.isFinite(v) ? v : undefined
const str = (v: unknown): string | undefined => typeof v === 'string' ? v : undefined

export function formatBytes (n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB']
  let v = n
  let i = 0
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++ }
  return i === 0 ? `${n} B` : `${v.toFixed(1)} ${units[i]}`
}

export function formatAgo (iso: unknown, now: Date): string {
  const t = typeof iso === 'string' ? Date.parse(iso) : NaN
  if (Number.isNaN(t)) return 'never'
  return `${formatDuration(now.getTime() - t, 'coarse')} ago`
}

const LABEL_WIDTH = 10
function section (label: string, lines: string[]): string[] {
  return lines.map((l, i) => `${(i === 0 ? label : '').padEnd(LABEL_WIDTH)}${l}`)
}

function policyLines (p: Obj, now: Date): string[] {
  const out = [`version ${str(p.version) ?? '?'}, loaded ${str(p.loadedAt) ?? '?'} (${formatAgo(p.loadedAt, now)})`]
  const last = p.lastError
  if (isObj(last)) {
    out.push(`LAST RELOAD REFUSED ${formatAgo(last.at, now)}: the policy above stays in force`)
    if (Array.isArray(last.errors)) for (const e of last.errors) out.push(`  ${String(e)}`)
  } else {
    out.push('last reload: ok')
  }
  if (Array.isArray(p.restartRequired) && p.restartRequired.length > 0) {
    out.push(`restart required to apply: ${p.restartRequired.join(', ')}`)
  }
  return out
}

function storeLine (s: Obj): string {
  const parts = [str(s.kind) ?? '?', s.healthy === true ? 'healthy' : s.healthy === false ? 'UNHEALTHY' : '']
  if (str(s.mode) !== undefined && s.mode !== s.kind) parts.push(`mode ${String(s.mode)}`)
  if (num(s.liveReplicas) !== undefined) parts.push(`${String(s.liveReplicas)} live replica(s)`)
  if (str(s.lastError) !== undefined) parts.push(`last error: ${String(s.lastError)}`)
  return parts.filter((p) => p !== '').join(', ')
}

function breakerLines (b: Obj): string[] {
  const names = Object.keys(b)
  if (names.length === 0) return ['none configured']
  const width = Math.max(...names.map((n) => n.length))
  return names.map((name) => {
    const v = b[name]
    if (!isObj(v)) return `${name.padEnd(width)}  ${JSON.stringify(v)}`
    const state = str(v.state) ?? '?'
    const parts = [`${name.padEnd(width)}  ${(state === 'closed' ? state : state.toUpperCase()).padEnd(9)}`]
    parts.push(num(v.p95Ms) === undefined ? 'p95 -' : `p95 ${Math.round(num(v.p95Ms)!)} ms`)
    if (num(v.errorRate) !== undefined) parts.push(`errors ${(num(v.errorRate)! * 100).toFixed(1)}%`)
    if (num(v.inFlight) !== undefined) parts.push(`in flight ${String(v.inFlight)}${num(v.limit) === undefined ? '' : `/${String(v.limit)}`}`)
    return parts.join('  ')
  })
}

function cacheLine (c: Obj): string {
  const parts: string[] = []
  if (num(c.entries) !== undefined) parts.push(`${String(c.entries)} entries`)
  if (num(c.bytes) !== undefined) parts.push(`${formatBytes(num(c.bytes)!)}${num(c.maxSize) === undefined ? '' : ` of ${formatBytes(num(c.maxSize)!)}`}`)
  const hits = num(c.hits)
  const misses = num(c.misses)
  if (hits !== undefined && misses !== undefined) {
    parts.push(`hits ${hits}, misses ${misses}${hits + misses > 0 ? ` (${((hits / (hits + misses)) * 100).toFixed(1)}% hit)` : ''}`)
  }
  if (num(c.stale) !== undefined) parts.push(`stale ${String(c.stale)}`)
  return parts.length === 0 ? JSON.stringify(c) : parts.join(', ')
}

function blocksLine (b: unknown): string {
  if (num(b) !== undefined) return `${String(b)} active`
  if (Array.isArray(b)) return `${b.length} active`
  if (isObj(b)) {
    // e.g. {active: 3, bySource: {static: 1, runtime: 1, abuse: 1}}
    return Object.entries(b).map(([k, v]) => `${k} ${isObj(v) ? Object.entries(v).map(([a, n]) => `${a} ${String(n)}`).join(', ') : String(v)}`).join('; ')
  }
  return String(b)
}

function upstreamLines (u: Obj, now: Date): string[] {
  const names = Object.keys(u)
  if (names.length === 0) return ['none']
  const width = Math.max(...names.map((n) => n.length))
  return names.map((name) => {
    const v = u[name]
    if (!isObj(v)) return `${name.padEnd(width)}  ${JSON.stringify(v)}`
    const last = str(v.lastError)
    return `${name.padEnd(width)}  ${str(v.url) ?? '?'}  ${last === undefined ? 'no failure seen' : `last failure ${formatAgo(v.lastErrorAt, now)}: ${last}`}`
  })
}

function trafficLine (t: Obj): string {
  const per = isObj(t.perSecond) ? t.perSecond : {}
  const parts = Object.entries(per).filter(([, v]) => num(v) !== undefined && num(v)! > 0).map(([d, v]) => `${d} ${String(v)}/s`)
  return `${parts.length === 0 ? 'no requests' : parts.join(', ')} (average over the last ${num(t.windowSeconds) ?? 60} s)`
}

/** `blocking` in words: how many of each source, where they are kept (and whether it works), the automatic rule */
function blockingLines (b: Obj, now: Date): string[] {
  const counts = ['static', 'runtime', 'abuse'].filter((k) => num(b[k]) !== undefined).map((k) => `${k} ${String(b[k])}`)
  const out = [counts.length === 0 ? 'no blocks' : counts.join(', ')]
  const s = b.store
  if (isObj(s)) {
    if (s.kind === 'file') {
      const saved = str(s.savedAt) === undefined ? '' : `, last saved ${formatAgo(s.savedAt, now)}`
      out.push(str(s.lastError) !== undefined
        ? `STATE FILE NOT WRITABLE: ${String(s.file)}: ${String(s.lastError)} (runtime blocks are refused; set FLAGGATE_STATE_FILE to a writable path or use Redis)`
        : `kept in ${String(s.file)}${saved}`)
    } else {
      out.push(`kept in ${String(s.kind)}${str(s.lastError) !== undefined ? `, last error: ${String(s.lastError)}` : ''}`)
      // with Redis, the state file is this replica's last copy (a start while Redis is down)
      const f = s.stateFile
      if (isObj(f)) {
        out.push(str(f.lastError) !== undefined
          ? `STATE FILE NOT WRITABLE: ${String(f.file)}: ${String(f.lastError)} (blocks are still kept in Redis; a replica started while Redis is down will not enforce them)`
          : `last copy in ${String(f.file)}${str(f.savedAt) === undefined ? '' : `, saved ${formatAgo(f.savedAt, now)}`}`)
      }
    }
  }
  const a = b.automatic
  out.push(isObj(a) ? `automatic: more than ${String(a.rejections)} requests refused with 429 within ${Math.round((num(a.windowMs) ?? 0) / 1000)} s blocks the client for ${Math.round((num(a.blockForMs) ?? 0) / 1000)} s` : 'automatic: off')
  return out
}

function probeLines (probes: unknown[], now: Date): string[] {
  if (probes.length === 0) return ['none configured (add `probes:` to the policy)']
  const rows = probes.filter(isObj)
  const width = Math.max(...rows.map((p) => (str(p.name) ?? '?').length))
  return rows.map((p) => {
    const state = p.ok === true ? 'ok' : p.ok === false ? 'FAILING' : 'pending'
    const parts = [`${(str(p.name) ?? '?').padEnd(width)}  ${state.padEnd(7)}`]
    parts.push(num(p.status) === undefined ? '---' : String(p.status))
    parts.push(num(p.latencyMs) === undefined ? '-' : `${num(p.latencyMs)!.toFixed(1)} ms`)
    parts.push(formatAgo(p.lastAt, now))
    if (p.ok === false) {
      const n = num(p.consecutiveFailures)
      parts.push(`${str(p.lastError) ?? 'failed'}${n !== undefined && n > 1 ? ` (${n} in a row)` : ''}`)
    }
    return parts.join('  ')
  })
}

function localLines (l: Obj, now: Date): string[] {
  const out = [`mode ${str(l.mode) ?? '?'}, refresh ${num(l.refreshSeconds) ?? '?'}s, ${str(l.engine) ?? ''}`]
  for (const e of Array.isArray(l.environments) ? l.environments.filter(isObj) : []) {
    const last = isObj(e.lastRefresh) ? e.lastRefresh : undefined
    const result = str(last?.result) ?? 'pending'
    const age = num(e.documentAgeSeconds)
    out.push(`${str(e.serverKey) ?? '?'} (${str(e.name) ?? 'no document'})  document ${age === undefined ? 'none' : `${age}s old`}  last refresh ${['ok', 'not-modified', 'shared'].includes(result) ? result : result.toUpperCase()} ${formatAgo(last?.at, now)}${str(last?.detail) === undefined ? '' : ` (${String(last!.detail)})`}  ${num(e.localAnswers) ?? 0} local answers`)
  }
  if (isObj(l.kept)) out.push(`kept for Core: ${num(l.kept.writes) ?? 0} writes, ${num(l.kept.analyticsCounters) ?? 0} analytics counters`)
  return out
}

/** The human summary of an `/admin/status` answer. */
export function renderStatus (status: unknown, opts: { adminUrl?: string; now?: Date } = {}): string {
  const now = opts.now ?? new Date()
  if (!isObj(status)) return JSON.stringify(status, null, 2)
  const out: string[] = [`flaggate ${str(status.version) ?? '?'}${opts.adminUrl === undefined ? '' : `  (admin ${opts.adminUrl})`}`]
  const known = new Set(['version', 'policy', 'store', 'upstreams', 'traffic', 'breakers', 'cache', 'blocks', 'blocking', 'probes', 'localEvaluation'])
  if (isObj(status.policy)) out.push(...section('policy', policyLines(status.policy, now)))
  if (isObj(status.store)) out.push(...section('store', [storeLine(status.store)]))
  if (isObj(status.upstreams)) out.push(...section('upstreams', upstreamLines(status.upstreams, now)))
  if (isObj(status.traffic)) out.push(...section('traffic', [trafficLine(status.traffic)]))
  if (isObj(status.breakers)) out.push(...section('breakers', breakerLines(status.breakers)))
  if (isObj(status.cache)) out.push(...section('cache', [cacheLine(status.cache)]))
  if (isObj(status.blocking)) out.push(...section('blocks', blockingLines(status.blocking, now)))
  else if (status.blocks !== undefined) out.push(...section('blocks', [blocksLine(status.blocks)]))
  if (Array.isArray(status.probes)) out.push(...section('probes', probeLines(status.probes, now)))
  if (isObj(status.localEvaluation)) out.push(...section('local', localLines(status.localEvaluation, now)))
  // sections added by a newer gateway still show, in their raw form
  for (const [k, v] of Object.entries(status)) if (!known.has(k)) out.push(...section(k, [JSON.stringify(v)]))
  return out.join('\n')
}
