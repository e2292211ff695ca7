/**
 * Local evaluation's cost, beside a cache HIT: the gateway's own CPU time per answer (read from
 * /proc/<pid>/stat of a separate gateway process, so the load client's CPU is not counted) and
 * answers per second, for a fixed number of requests of each kind:
 *
 *   hit           GET environment-document/ from the cache (the reference)
 *   local-flags   GET flags/ with the client key, answered from the document (mode always)
 *   local-id-get  GET identities/?identifier=
 *   local-id-post POST identities/ with three traits (transient)
 *
 *   npm run bench:local [-- --requests 20000 --connections 10]
 *   npm run bench -- --only local [--requests 20000]   (the same rows, in the bench's entry point)
 *
 * Short by design (a few seconds per kind). The target: a local flags/ answer costs no more
 * than twice the CPU of a cache HIT.
 */
import { readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { startFakeCore } from '../test/support/fake-flagsmith.js'
import { policyYaml, spawnGateway } from '../test/support/gateway.js'
import { stateDir } from '../test/local/support.js'

const TICKS_PER_SECOND = 100

function cpuTicks (pid: number): number {
  // fields 14 and 15 (utime, stime) after the command name in parentheses
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return Number(fields[11]) + Number(fields[12])
}

interface Kind { name: string; method: 'GET' | 'POST'; path: string; key: string; body?: string }

/** The rows, also `npm run bench -- --only local` (bench/run.ts). */
export async function runLocalBench (REQUESTS = 20000, CONNECTIONS = 10): Promise<void> {
  const { default: autocannon } = await import('autocannon')
  const core = await startFakeCore()
  const gw = await spawnGateway(policyYaml({
    coreUrl: core.url,
    routes: `  - name: environment-document
    match: { methods: [GET], path: /api/v1/environment-document/ }
    upstream: core
    cache: { ttl: 1h }
  - name: flags
    match: { methods: [GET], path: /api/v1/flags/ }
    upstream: core
  - name: identities
    match: { methods: [GET, POST], path: /api/v1/identities/ }
    upstream: core
  - name: default
    match: { pathPrefix: / }
    upstream: core`,
    extra: `localEvaluation:\n  mode: always\n  refresh: 1h\n  stateFile: ${stateDir()}/s.json\n  environments:\n    - serverKey: ser.dev_server_key\n`
  }))
  const pid = gw.process.pid!
  const kinds: Kind[] = [
    { name: 'hit', method: 'GET', path: '/api/v1/environment-document/', key: 'ser.dev_server_key' },
    { name: 'local-flags', method: 'GET', path: '/api/v1/flags/', key: 'dev_client_key' },
    { name: 'local-id-get', method: 'GET', path: '/api/v1/identities/?identifier=user-42', key: 'dev_client_key' },
    { name: 'local-id-post', method: 'POST', path: '/api/v1/identities/', key: 'dev_client_key', body: JSON.stringify({ identifier: 'user-42', transient: true, traits: [{ trait_key: 'plan', trait_value: 'pro' }, { trait_key: 'age', trait_value: 31 }, { trait_key: 'beta', trait_value: true }] }) }
  ]
  const run = async (k: Kind, amount: number): Promise<{ rps: number; non2xx: number }> => {
    const r = await autocannon({
      url: gw.url, connections: CONNECTIONS, amount, method: k.method,
      headers: { 'x-environment-key': k.key, 'content-type': 'application/json' },
      requests: [{ method: k.method, path: k.path, ...(k.body !== undefined ? { body: k.body } : {}) }]
    })
    return { rps: r.requests.average, non2xx: r.non2xx }
  }
  const rows: Array<Record<string, unknown>> = []
  for (const k of kinds) await run(k, 2000) // warm-up: JIT, the document, the cache entry
  for (const k of kinds) {
    const before = cpuTicks(pid)
    const t0 = process.hrtime.bigint()
    const { non2xx } = await run(k, REQUESTS)
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9
    const cpuSeconds = (cpuTicks(pid) - before) / TICKS_PER_SECOND
    rows.push({ kind: k.name, requests: REQUESTS, non2xx, answersPerSecond: Math.round(REQUESTS / seconds), cpuMicrosecondsPerAnswer: Math.round(cpuSeconds * 1e6 / REQUESTS * 10) / 10 })
  }
  const hit = rows[0]!.cpuMicrosecondsPerAnswer as number
  for (const r of rows) r.vsHit = Math.round((r.cpuMicrosecondsPerAnswer as number) / hit * 100) / 100
  console.table(rows)
  process.stdout.write(JSON.stringify({ core: core.counts('/api/v1/flags/') + core.counts('/api/v1/identities/'), rows }) + '\n')
  await gw.stop()
  await core.close()
}

// run directly (npm run bench:local), not when bench/run.ts imports the rows
if (process.argv[1] !== undefined && import.meta.url.endsWith(process.argv[1].replace(/^.*\/bench\//, '/bench/'))) {
  const { values } = parseArgs({ options: { requests: { type: 'string', default: '20000' }, connections: { type: 'string', default: '10' } } })
  await runLocalBench(Number(values.requests), Number(values.connections))
}
