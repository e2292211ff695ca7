/**
 * `flaggate block | unblock | blocks | top`: thin clients of the admin API.
 * Output is for people on call: one line per block or client, with the command to run next.
 */
import type { BlockView } from '../blocking/core.js'
import { parseClient, type TopResult } from '../top/top-clients.js'
import { adminCall, answerError, fail, type AdminOptions } from './admin-client.js'
import { shellQuote } from '../shared/shell-quote.js'
import { formatDuration } from '../shared/duration.js'

function until (b: BlockView): string {
  if (b.expiresAt === undefined) return 'until lifted'
  const left = formatDuration(Date.parse(b.expiresAt) - Date.now(), 'compound')
  return `until ${b.expiresAt} (${left} left)`
}

function target (b: BlockView): string {
  const parts: string[] = []
  if (b.key !== undefined) parts.push(`key ${b.key}`)
  if (b.ip !== undefined) parts.push(`ip ${b.ip}`)
  if (b.userAgent !== undefined) parts.push(`user-agent /${b.userAgent}/`)
  return parts.join(' from ')
}

export interface BlockOptions extends AdminOptions {
  key?: string
  ip?: string
  userAgent?: string
  client?: string
  route?: string[]
  ttl?: string
  publicReason?: string
}

/** Where a change applies, as the admin API's answer says (`replica`: no shared store). */
function scopeText (scope: unknown): string {
  return scope === 'replica' ? 'on this gateway only (no shared store: repeat it on each replica)' : 'on every replica'
}

export async function block (opts: BlockOptions): Promise<void> {
  const targets = [opts.key, opts.ip, opts.userAgent, opts.client].filter((t) => t !== undefined).length
  if (targets !== 1) fail('block needs exactly one of --key, --ip, --user-agent or --client (see flaggate block --help)', 2)
  const body: Record<string, unknown> = {}
  if (opts.key !== undefined) body.key = opts.key
  if (opts.ip !== undefined) body.ip = opts.ip
  if (opts.userAgent !== undefined) body.userAgent = opts.userAgent
  // checked as the option was parsed (program.ts), so never undefined here
  if (opts.client !== undefined) Object.assign(body, parseClient(opts.client))
  if (opts.route !== undefined) body.routes = opts.route
  if (opts.ttl !== undefined) body.ttl = opts.ttl
  if (opts.reason !== undefined) body.reason = opts.reason
  if (opts.publicReason !== undefined) body.publicReason = opts.publicReason
  const r = await adminCall(opts, 'POST', '/admin/blocks', body)
  if (r.status !== 201) answerError(r)
  const b = r.json as BlockView & { scope?: string }
  process.stdout.write(`blocked ${b.id}: ${target(b)} ${b.routes === undefined ? 'on every route' : `on ${b.routes.join(', ')}`}, ${until(b)}, ${scopeText(b.scope)}\n` +
    `  reason: ${b.reason}\n  lift it with: flaggate unblock ${b.id}\n`)
}

export async function unblock (id: string, opts: AdminOptions): Promise<void> {
  const r = await adminCall(opts, 'DELETE', `/admin/blocks/${encodeURIComponent(id)}`)
  if (r.status === 404) fail(`no block ${id} (it may have expired); \`flaggate blocks\` lists the blocks in force`)
  if (r.status !== 204) answerError(r)
  process.stdout.write(`unblocked ${id}\n`)
}

export async function blocks (opts: AdminOptions): Promise<void> {
  const r = await adminCall(opts, 'GET', '/admin/blocks')
  if (r.status !== 200) answerError(r)
  const list = r.json as BlockView[]
  if (list.length === 0) { process.stdout.write('no blocks in force\n'); return }
  const rows = list.map((b) => [b.id, b.source, target(b), b.routes?.join(',') ?? '*', b.expiresAt === undefined ? 'never' : until(b).replace(/^until \S+ \((.*) left\)$/, 'in $1'), b.actor, b.reason])
  table(['ID', 'SOURCE', 'TARGET', 'ROUTES', 'EXPIRES', 'BY', 'REASON'], rows)
}

export async function top (opts: AdminOptions & { by: string; limit: number }): Promise<void> {
  const q = new URLSearchParams({ by: opts.by, limit: String(opts.limit) })
  const r = await adminCall(opts, 'GET', `/admin/top?${q.toString()}`)
  if (r.status !== 200) answerError(r)
  const t = r.json as TopResult
  process.stdout.write(`busiest clients by ${t.by} over the last ${Math.round(t.windowMs / 1000)} s on this replica (${t.tracked} tracked)\n`)
  if (t.clients.length === 0) { process.stdout.write('no traffic\n'); return }
  table(['REQUESTS', 'REJECTED', 'ROUTE', 'CLIENT'], t.clients.map((c) => [String(c.requests), String(c.rejections), c.route, c.client]))
  const first = t.clients[0]!
  // the client chose its key (and, behind a trusted proxy, its address): quoted for the shell it is pasted into
  process.stdout.write(`\nto block the first one on every route for an hour:\n  flaggate block --client ${shellQuote(first.client)} --ttl 1h --reason '...'\n`)
}

function table (head: string[], rows: string[][]): void {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)))
  const line = (cells: string[]): string => cells.map((c, i) => i === cells.length - 1 ? c : c.padEnd(widths[i]!)).join('  ')
  process.stdout.write([line(head), ...rows.map(line)].join('\n') + '\n')
}
