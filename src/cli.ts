#!/usr/bin/env node
/**
 * `flaggate <command>` (SPEC section 1). Operator commands talk to the admin API; `serve` is the
 * only one that touches process signals.
 */
import { readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { loadPolicy, formatPolicyError } from './policy/load.js'
import { matchRoute } from './policy/compile.js'
import { describeLimits } from './rate-limit/core.js'
import { PolicyInvalidError } from './policy/load.js'
import { clientIp } from './routing/client.js'
import { renderStatus } from './admin/status-text.js'

const USAGE = `usage: flaggate <command> [options]

  serve [--config FILE]                       run the gateway (default config/gateway.yaml or $FLAGGATE_CONFIG)
  validate FILE                               check a policy file; exit 0 valid, 1 invalid
  explain --config FILE --key KEY --path PATH [--method M] [--ip IP]
                                              which route, upstream, limits and cache rule apply
  status [--json]                             policy, store, breakers, cache, blocks and probes of a running gateway
  purge [--key KEY]                           drop cached environment documents (one key, or all)

Operator commands use --admin URL (default $FLAGGATE_ADMIN_URL or http://127.0.0.1:8081)
and the token in $FLAGGATE_ADMIN_TOKEN.`

function fail (message: string, code = 2): never {
  process.stderr.write(`flaggate: ${message}\n`)
  process.exit(code)
}

async function serve (argv: string[]): Promise<void> {
  const { values } = parseArgs({ args: argv, options: { config: { type: 'string' } }, strict: true })
  const configPath = values.config ?? process.env.FLAGGATE_CONFIG ?? 'config/gateway.yaml'
  const { startGateway } = await import('./gateway.js')
  let gw
  try {
    gw = await startGateway({ configPath })
  } catch (err) {
    if (err instanceof PolicyInvalidError) fail(`the policy file is invalid, not starting:\n${err.message}`, 1)
    fail(`cannot start: ${(err as Error).message}`, 1)
  }
  gw.logger.info({ url: gw.url, admin: gw.adminUrl, policy: gw.store.current.version }, 'flaggate serving')
  let stopping = false
  const stop = (signal: string) => {
    if (stopping) return
    stopping = true
    gw.logger.info({ signal }, 'draining: no new connections, finishing in-flight requests')
    // the exit handler of the logger writes what is still batched, synchronously
    gw.close().then(() => process.exit(0), (err) => { gw.logger.error({ err }, 'shutdown failed'); process.exit(1) })
  }
  process.on('SIGTERM', () => stop('SIGTERM'))
  process.on('SIGINT', () => stop('SIGINT'))
  process.on('SIGHUP', () => { gw.reload() })
}

function validate (argv: string[]): void {
  const file = argv[0]
  if (file === undefined) fail('validate needs a FILE\n' + USAGE)
  let text: string
  try { text = readFileSync(file, 'utf8') } catch (err) { fail(`cannot read ${file}: ${(err as Error).message}`, 1) }
  const result = loadPolicy(file, text, process.env)
  if (!result.ok) {
    for (const e of result.errors) process.stderr.write(formatPolicyError(e) + '\n')
    process.stderr.write(`${file}: ${result.errors.length} error${result.errors.length === 1 ? '' : 's'}\n`)
    process.exit(1)
  }
  process.stdout.write(`${file}: valid (policy version ${result.policy.version}, ${result.policy.routes.length} routes)\n`)
}

function explain (argv: string[]): void {
  const { values } = parseArgs({ args: argv, options: { config: { type: 'string' }, key: { type: 'string' }, path: { type: 'string' }, method: { type: 'string' }, ip: { type: 'string' } }, strict: true })
  const file = values.config ?? process.env.FLAGGATE_CONFIG ?? 'config/gateway.yaml'
  if (values.path === undefined) fail('explain needs --path PATH')
  const result = loadPolicy(file, readFileSync(file, 'utf8'), process.env)
  if (!result.ok) { for (const e of result.errors) process.stderr.write(formatPolicyError(e) + '\n'); process.exit(1) }
  const policy = result.policy
  const method = (values.method ?? 'GET').toUpperCase()
  const url = values.path
  const q = url.indexOf('?')
  const rawPath = q === -1 ? url : url.slice(0, q)
  // matched on the decoded path, as the gateway does
  let path = rawPath
  try { path = decodeURIComponent(rawPath) } catch { fail(`the path ${rawPath} has an invalid percent-encoding: the gateway answers 400`, 1) }
  const m = matchRoute(policy, method, path)
  const out: string[] = [`request:  ${method} ${url}${values.key === undefined ? '' : `  key ${values.key}`}${values.ip === undefined ? '' : `  ip ${values.ip}`}`]
  if (m === undefined) {
    out.push('route:    none: the gateway answers 404 FLAGGATE_NOT_FOUND')
  } else {
    const target = policy.targets[m.route.upstream]!
    out.push(`route:    ${m.route.name} (#${policy.routes.indexOf(m.route) + 1} of ${policy.routes.length}, first match wins)`)
    out.push(`upstream: ${m.route.upstream} → ${target.origin}${target.basePath}${m.upstreamPath}${q === -1 ? '' : url.slice(q)}  (timeout ${target.timeoutMs} ms)`)
    if (m.upstreamPath !== path) out.push(`          trailing slash added: ${path} → ${m.upstreamPath}`)
    if (m.route.edge !== undefined && (m.route.edge.percent > 0 || m.route.edge.keys.size > 0)) {
      out.push(`edge:     ${m.route.edge.percent}% of keys, plus ${m.route.edge.keys.size} listed key(s)`)
    }
    const ip = values.ip === undefined ? '<client ip>' : clientIp(values.ip, undefined, policy.trustedProxies)
    out.push(`client:   ${values.key === undefined ? 'no key (limited by ip)' : `key ${values.key}`}, ip ${ip}`)
    for (const line of describeLimits(policy, m.route, values.key)) out.push(`limit:    ${line}`)
    const c = m.route.cache
    out.push(c === undefined
      ? 'cache:    none'
      : `cache:    ttl ${c.ttl} ms, stale-while-revalidate ${c.staleWhileRevalidate} ms, stale-if-error ${c.staleIfError} ms, max entry ${c.maxEntrySize} bytes; keyed by environment key + path + query`)
  }
  process.stdout.write(out.join('\n') + '\n')
}

const adminBase = (flag: string | undefined): string => flag ?? process.env.FLAGGATE_ADMIN_URL ?? 'http://127.0.0.1:8081'

async function adminCall (argv: string[], method: string, path: string, body?: unknown): Promise<{ status: number; json: unknown }> {
  const { values } = parseArgs({ args: argv, options: { admin: { type: 'string' }, key: { type: 'string' } }, strict: false })
  const base = adminBase(values.admin as string | undefined)
  const headers: Record<string, string> = {}
  if (process.env.FLAGGATE_ADMIN_TOKEN !== undefined && process.env.FLAGGATE_ADMIN_TOKEN !== '') headers.authorization = `Bearer ${process.env.FLAGGATE_ADMIN_TOKEN}`
  if (body !== undefined) headers['content-type'] = 'application/json'
  let res: Response
  try {
    res = await fetch(new URL(path, base), { method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal: AbortSignal.timeout(5000) })
  } catch (err) {
    fail(`admin API unreachable at ${base}: ${(err as Error).cause instanceof Error ? ((err as Error).cause as Error).message : (err as Error).message}`, 1)
  }
  const text = await res.text()
  let json: unknown = text
  try { json = JSON.parse(text) } catch {}
  return { status: res.status, json }
}

async function status (argv: string[]): Promise<void> {
  const { values } = parseArgs({ args: argv, options: { admin: { type: 'string' }, json: { type: 'boolean' } }, strict: true })
  const r = await adminCall(argv, 'GET', '/admin/status')
  if (r.status !== 200) fail(`admin API answered ${r.status}: ${JSON.stringify(r.json)}`, 1)
  process.stdout.write((values.json === true ? JSON.stringify(r.json, null, 2) : renderStatus(r.json, { adminUrl: adminBase(values.admin) })) + '\n')
}

async function purge (argv: string[]): Promise<void> {
  const { values } = parseArgs({ args: argv, options: { admin: { type: 'string' }, key: { type: 'string' } }, strict: true })
  const r = await adminCall(argv, 'POST', '/admin/cache/purge', values.key === undefined ? {} : { key: values.key })
  if (r.status !== 200) fail(`admin API answered ${r.status}: ${JSON.stringify(r.json)}`, 1)
  process.stdout.write(`purged ${(r.json as { purged: number }).purged} cached document(s)${values.key === undefined ? '' : ' for that key'} on every replica\n`)
}

const [command, ...rest] = process.argv.slice(2)
switch (command) {
  case 'serve': await serve(rest); break
  case 'validate': validate(rest); break
  case 'explain': explain(rest); break
  case 'status': await status(rest); break
  case 'purge': await purge(rest); break
  case undefined: case '-h': case '--help': case 'help': process.stdout.write(USAGE + '\n'); break
  default: fail(`unknown command '${command}'\n${USAGE}`)
}
