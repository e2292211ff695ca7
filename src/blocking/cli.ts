/**
 * `flaggate block | unblock | blocks | top`: thin clients of the admin API.
 * Output is for people on call: one line per block or client, with the command to run next.
 */
import { parseArgs } from 'node:util'
import type { BlockView } from './core.js'
import { parseClient, type TopResult } from '../top/top-clients.js'

type AdminCall = (argv: string[], method: string, path: string, body?: unknown) => Promise<{ status: number; json: unknown }>
type Fail = (message: string, code?: number) => never

const ADMIN = { admin: { type: 'string' } } as const

function answerError (r: { status: number; json: unknown }, fail: Fail): never {
  const message = typeof r.json === 'object' && r.json !== null && 'message' in r.json ? String((r.json as { message: unknown }).message) : JSON.stringify(r.json)
  fail(`admin API answered ${r.status}: ${message}`, 1)
}

function until (b: BlockView): string {
  if (b.expiresAt === undefined) return 'until lifted'
  const s = Math.max(0, Math.round((Date.parse(b.expiresAt) - Date.now()) / 1000))
  const left = s >= 3600 ? `${Math.floor(s / 3600)}h${Math.floor((s % 3600) / 60)}m` : s >= 60 ? `${Math.floor(s / 60)}m${s % 60}s` : `${s}s`
  return `until ${b.expiresAt} (${left} left)`
}

function target (b: BlockView): string {
  const parts: string[] = []
  if (b.key !== undefined) parts.push(`key ${b.key}`)
  if (b.ip !== undefined) parts.push(`ip ${b.ip}`)
  if (b.userAgent !== undefined) parts.push(`user-agent /${b.userAgent}/`)
  return parts.join(' from ')
}

export async function block (argv: string[], adminCall: AdminCall, fail: Fail): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: { ...ADMIN, key: { type: 'string' }, ip: { type: 'string' }, 'user-agent': { type: 'string' }, client: { type: 'string' }, route: { type: 'string', multiple: true }, ttl: { type: 'string' }, reason: { type: 'string' }, 'public-reason': { type: 'string' } },
    strict: true
  })
  const body: Record<string, unknown> = {}
  if (values.key !== undefined) body.key = values.key
  if (values.ip !== undefined) body.ip = values.ip
  if (values['user-agent'] !== undefined) body.userAgent = values['user-agent']
  if (values.client !== undefined) {
    if (values.key !== undefined || values.ip !== undefined) fail('--client is a key or an ip already: give it alone')
    Object.assign(body, parseClient(values.client))
  }
  if (values.route !== undefined) body.routes = values.route
  if (values.ttl !== undefined) body.ttl = values.ttl
  if (values.reason !== undefined) body.reason = values.reason
  if (values['public-reason'] !== undefined) body.publicReason = values['public-reason']
  const r = await adminCall(argv, 'POST', '/admin/blocks', body)
  if (r.status !== 201) answerError(r, fail)
  const b = r.json as BlockView
  process.stdout.write(`blocked ${b.id}: ${target(b)} ${b.routes === undefined ? 'on every route' : `on ${b.routes.join(', ')}`}, ${until(b)}, on every replica\n` +
    `  reason: ${b.reason}\n  lift it with: flaggate unblock ${b.id}\n`)
}

export async function unblock (argv: string[], adminCall: AdminCall, fail: Fail): Promise<void> {
  const { positionals } = parseArgs({ args: argv, options: ADMIN, allowPositionals: true, strict: true })
  const id = positionals[0]
  if (id === undefined || positionals.length > 1) fail('unblock needs one block ID (see flaggate blocks)')
  const r = await adminCall(argv, 'DELETE', `/admin/blocks/${encodeURIComponent(id)}`)
  if (r.status !== 204) answerError(r, fail)
  process.stdout.write(`unblocked ${id} on every replica\n`)
}

export async function blocks (argv: string[], adminCall: AdminCall, fail: Fail): Promise<void> {
  parseArgs({ args: argv, options: ADMIN, strict: true })
  const r = await adminCall(argv, 'GET', '/admin/blocks')
  if (r.status !== 200) answerError(r, fail)
  const list = r.json as BlockView[]
  if (list.length === 0) { process.stdout.write('no blocks in force\n'); return }
  const rows = list.map((b) => [b.id, b.source, target(b), b.routes?.join(',') ?? '*', b.expiresAt === undefined ? 'never' : until(b).replace(/^until \S+ \((.*) left\)$/, 'in $1'), b.actor, b.reason])
  table(['ID', 'SOURCE', 'TARGET', 'ROUTES', 'EXPIRES', 'BY', 'REASON'], rows)
}

export async function top (argv: string[], adminCall: AdminCall, fail: Fail): Promise<void> {
  const { values } = parseArgs({ args: argv, options: { ...ADMIN, by: { type: 'string' }, limit: { type: 'string' } }, strict: true })
  const q = new URLSearchParams({ by: values.by ?? 'requests', limit: values.limit ?? '10' })
  const r = await adminCall(argv, 'GET', `/admin/top?${q.toString()}`)
  if (r.status !== 200) answerError(r, fail)
  const t = r.json as TopResult
  process.stdout.write(`busiest clients by ${t.by} over the last ${Math.round(t.windowMs / 1000)} s on this replica (${t.tracked} tracked)\n`)
  if (t.clients.length === 0) { process.stdout.write('no traffic\n'); return }
  table(['REQUESTS', 'REJECTED', 'ROUTE', 'CLIENT'], t.clients.map((c) => [String(c.requests), String(c.rejections), c.route, c.client]))
  const first = t.clients[0]!
  process.stdout.write(`\nto block the first one on every route for an hour:\n  flaggate block --client '${first.client}' --ttl 1h --reason '...'\n`)
}

function table (head: string[], rows: string[][]): void {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)))
  const line = (cells: string[]): string => cells.map((c, i) => i === cells.length - 1 ? c : c.padEnd(widths[i]!)).join('  ')
  process.stdout.write([line(head), ...rows.map(line)].join('\n') + '\n')
}
