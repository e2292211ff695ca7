/**
 * The operator commands' side of the admin API: one call, its failures worded for the person on
 * call (unreachable, refused token, an error answer), never a stack trace.
 */
import { UPSTREAM_HEADER } from '../contracts/wire.js'

export interface AdminOptions {
  /** --admin URL */
  admin?: string
  /** --reason TEXT: the "why" of the admin API's audit line */
  reason?: string
}

export interface AdminAnswer { status: number; json: unknown }

export const DEFAULT_ADMIN_URL = 'http://127.0.0.1:8081'

export const adminBase = (flag: string | undefined): string => flag ?? process.env.FLAGGATE_ADMIN_URL ?? DEFAULT_ADMIN_URL

/** Prints `flaggate: message` to stderr and exits: 1 for a failed operation, 2 for bad arguments. */
export function fail (message: string, code = 1): never {
  process.stderr.write(`flaggate: ${message}\n`)
  process.exit(code)
}

export async function adminCall (opts: AdminOptions, method: string, path: string, body?: unknown): Promise<AdminAnswer> {
  const base = adminBase(opts.admin)
  let url: URL
  try { url = new URL(path, base) } catch { fail(`--admin must be a URL such as ${DEFAULT_ADMIN_URL}, not "${base}"`, 2) }
  const headers: Record<string, string> = {}
  const token = process.env.FLAGGATE_ADMIN_TOKEN
  if (token !== undefined && token !== '') headers.authorization = `Bearer ${token}`
  if (body !== undefined) headers['content-type'] = 'application/json'
  if (opts.reason !== undefined) headers['x-flaggate-reason'] = opts.reason
  // who runs the command, for the audit log of changes (the token says which team, this says who)
  const user = process.env.USER ?? process.env.LOGNAME
  if (user !== undefined && /^[\w.@+-]{1,64}$/.test(user)) headers['x-flaggate-actor'] = user
  let res: Response
  try {
    res = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal: AbortSignal.timeout(5000) })
  } catch (err) {
    const cause = (err as Error).cause instanceof Error ? ((err as Error).cause as Error).message : (err as Error).message
    fail(`admin API unreachable at ${base}: ${cause} (is the gateway running? --admin URL or FLAGGATE_ADMIN_URL says where its admin listener is)`)
  }
  const text = await res.text()
  // only the public listener marks its answers with the upstream: --admin names the wrong port, and
  // the answer (Core's 404, most often) would say nothing of that
  const upstream = res.headers.get(UPSTREAM_HEADER)
  if (upstream !== null) fail(`${base} is a gateway's public listener, not its admin API (the request went to upstream "${upstream}"): point --admin or FLAGGATE_ADMIN_URL at admin.listen (default ${DEFAULT_ADMIN_URL})`)
  let json: unknown = text
  try { json = JSON.parse(text) } catch {}
  return { status: res.status, json }
}

/** An error answer of the admin API, worded with what to do next; exits 1. */
export function answerError (r: AdminAnswer): never {
  const message = typeof r.json === 'object' && r.json !== null && 'message' in r.json ? String((r.json as { message: unknown }).message) : JSON.stringify(r.json)
  if (r.status === 401) {
    const set = process.env.FLAGGATE_ADMIN_TOKEN !== undefined && process.env.FLAGGATE_ADMIN_TOKEN !== ''
    fail(`admin API answered 401: ${set ? 'FLAGGATE_ADMIN_TOKEN does not match the gateway\'s admin.token' : 'this gateway requires a token: set FLAGGATE_ADMIN_TOKEN to its admin.token'}`)
  }
  fail(`admin API answered ${r.status}: ${message}`)
}
