#!/usr/bin/env node
/**
 * `flaggate <command>`. Operator commands talk to the admin API; `serve` is the
 * only one that touches process signals.
 */
import { parseArgs } from 'node:util'
import { setFlagsFromString } from 'node:v8'
import { formatPolicyError } from './policy/load.js'
import { loadPolicyFile } from './policy/file.js'
import { resolveTarget } from './routing/match.js'
import { describeLimits } from './rate-limit/core.js'
import { PolicyInvalidError } from './policy/load.js'
import { clientIp } from './routing/client.js'
import { decideEdge, describeEdge, EDGE_UPSTREAM } from './edge/core.js'
import * as blockingCli from './blocking/cli.js'
import { renderStatus } from './admin/status-text.js'

const USAGE = `usage: flaggate <command> [options]

  serve [--config FILE]                       run the gateway (default config/gateway.yaml or $FLAGGATE_CONFIG)
  validate FILE                               check a policy file; exit 0 valid, 1 invalid
  explain --config FILE --key KEY --path PATH [--method M] [--ip IP]
                                              which route, upstream (edge routing: why), limits and cache rule apply
  status [--json]                             policy, store, breakers, cache, blocks and probes of a running gateway
  purge [--key KEY] [--reason TEXT]           drop cached environment documents (one key, or all)
  block (--key KEY | --ip IP_OR_CIDR | --user-agent REGEX | --client CLIENT) [--route NAME]...
        [--ttl DURATION] --reason TEXT [--public-reason TEXT]
                                              block a client on every replica (--client takes
                                              the CLIENT column of \`flaggate top\`: KEY@IP blocks the key)
  unblock ID                                  lift a runtime or automatic block
  blocks                                      list the blocks in force
  top [--by requests|rejections] [--limit N]  the busiest clients of the last minute

Operator commands use --admin URL (default $FLAGGATE_ADMIN_URL or http://127.0.0.1:8081)
and the token in $FLAGGATE_ADMIN_TOKEN.`

function fail (message: string, code = 2): never {
  process.stderr.write(`flaggate: ${message}\n`)
  process.exit(code)
}

/**
 * V8 lets the old generation grow to up to four times what survived the last full collection
 * before it collects again. A gateway's old space fills with garbage at the rate new clients
 * arrive (each new key's bucket and memo entries live until evicted, long enough to be promoted),
 * so under a rotation of a million keys the process sat at 240–350 MB of RSS around 60 MB of
 * live objects; with growth fixed at 1.5× it stays near 190 MB at the same throughput
 * (bench/results.md, "Fourth round"). An operator's own `node --heap-growing-percent=N` wins (Node
 * refuses the flag in NODE_OPTIONS).
 */
const HEAP_GROWING_PERCENT = 50
function boundHeapGrowth (): void {
  const given = process.execArgv.some((a) => a.startsWith('--heap-growing-percent'))
  if (!given) setFlagsFromString(`--heap-growing-percent=${HEAP_GROWING_PERCENT}`)
}

async function serve (argv: string[]): Promise<void> {
  const { values } = parseArgs({ args: argv, options: { config: { type: 'string' } }, strict: true })
  boundHeapGrowth()
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
  // Not close-with-grace: its defaults treat SIGHUP (our reload) as a shutdown, and gw.close()
  // already bounds the drain by server.shutdownTimeout; a crash exits non-zero for the supervisor.
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
  // total (policy/file.ts): every outcome is a verdict, printed as FILE:LINE:COL lines
  const result = loadPolicyFile(file, file, process.env)
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
  const result = loadPolicyFile(file, file, process.env)
  if (!result.ok) { for (const e of result.errors) process.stderr.write(formatPolicyError(e) + '\n'); process.exit(1) }
  const policy = result.policy
  const method = (values.method ?? 'GET').toUpperCase()
  const url = values.path
  // the same resolution as the gateway's (routing/match.ts); the operator's text as the wire
  // would carry it: UTF-8 bytes, read as latin1 by Node's HTTP parser
  const r = resolveTarget(policy, method, Buffer.from(url, 'utf8').toString('latin1'))
  const out: string[] = [`request:  ${method} ${url}${values.key === undefined ? '' : `  key ${values.key}`}${values.ip === undefined ? '' : `  ip ${values.ip}`}`]
  if (r.kind === 'bad') {
    out.push(`path:     refused: the gateway answers 400 FLAGGATE_BAD_REQUEST (${r.message})`)
  } else if (r.kind === 'none') {
    out.push(`path:     ${r.path} (canonical)`)
    out.push('route:    none: the gateway answers 404 FLAGGATE_NOT_FOUND')
  } else {
    const m = r
    // edge routing: the gateway's own decision function (src/edge/core.ts), breaker closed
    const edgeQuery = { routeUpstream: m.route.upstream, method, key: values.key, upstreamOpen: false }
    const edge = m.route.edge !== undefined && policy.targets[EDGE_UPSTREAM] !== undefined ? m.route.edge : undefined
    const upstream = edge === undefined ? m.route.upstream : decideEdge(edge, edgeQuery).upstream
    const routeTarget = policy.targets[m.route.upstream]!
    const target = policy.targets[upstream]!
    const sent = m.upstreamUrl.slice(routeTarget.basePath.length)
    out.push(`path:     ${m.path} (canonical)`)
    out.push(`route:    ${m.route.name} (#${policy.routes.indexOf(m.route) + 1} of ${policy.routes.length}, first match wins)`)
    out.push(`upstream: ${upstream} → ${target.origin}${target.basePath}${sent}  (timeout ${target.timeoutMs} ms)`)
    const sentPath = sent.split('?')[0]!
    if (sentPath !== m.path) out.push(`          trailing slash added: ${m.path} → ${sentPath}`)
    if (edge !== undefined) for (const line of describeEdge(edge, edgeQuery)) out.push(`edge:     ${line}`)
    const ip = values.ip === undefined ? '<client ip>' : clientIp(values.ip, undefined, policy.trustedProxies)
    out.push(`client:   ${values.key === undefined ? 'no key (limited by ip)' : `key ${values.key}`}, ip ${ip}`)
    for (const line of describeLimits(policy, m.route, values.key)) out.push(`limit:    ${line}`)
    const c = m.route.cache
    out.push(c === undefined
      ? 'cache:    none'
      : `cache:    ttl ${c.ttl} ms, stale-while-revalidate ${c.staleWhileRevalidate} ms, stale-if-error ${c.staleIfError} ms, max entry ${c.maxEntrySize} bytes; keyed by environment key + path + page_id`)
  }
  process.stdout.write(out.join('\n') + '\n')
}

const adminBase = (flag: string | undefined): string => flag ?? process.env.FLAGGATE_ADMIN_URL ?? 'http://127.0.0.1:8081'

async function adminCall (argv: string[], method: string, path: string, body?: unknown): Promise<{ status: number; json: unknown }> {
  const { values } = parseArgs({ args: argv, options: { admin: { type: 'string' }, key: { type: 'string' }, reason: { type: 'string' } }, strict: false })
  const base = adminBase(values.admin as string | undefined)
  const headers: Record<string, string> = {}
  if (process.env.FLAGGATE_ADMIN_TOKEN !== undefined && process.env.FLAGGATE_ADMIN_TOKEN !== '') headers.authorization = `Bearer ${process.env.FLAGGATE_ADMIN_TOKEN}`
  if (body !== undefined) headers['content-type'] = 'application/json'
  // the "why" of the admin API's audit log line
  if (typeof values.reason === 'string') headers['x-flaggate-reason'] = values.reason
  // who runs the command, for the audit log of changes (the token says which team, this says who)
  const user = process.env.USER ?? process.env.LOGNAME
  if (user !== undefined && /^[\w.@+-]{1,64}$/.test(user)) headers['x-flaggate-actor'] = user
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
  const { values } = parseArgs({ args: argv, options: { admin: { type: 'string' }, key: { type: 'string' }, reason: { type: 'string' } }, strict: true })
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
  case 'block': await blockingCli.block(rest, adminCall, fail); break
  case 'unblock': await blockingCli.unblock(rest, adminCall, fail); break
  case 'blocks': await blockingCli.blocks(rest, adminCall, fail); break
  case 'top': await blockingCli.top(rest, adminCall, fail); break
  case undefined: case '-h': case '--help': case 'help': process.stdout.write(USAGE + '\n'); break
  default: fail(`unknown command '${command}'\n${USAGE}`)
}
