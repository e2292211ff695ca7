/**
 * Where a flaggate request's CPU time goes: runs flaggate under `node --cpu-prof` (policy of
 * bench/policy.ts), puts load on one path with wrk, and prints the CPU µs per request (from /proc)
 * and the top self-time functions of the profile in µs per request.
 *
 *   hit     GET the environment document, answered from the cache (5 KB unless --doc-bytes)
 *   flags   GET flags, proxied to an instant fake Core
 *
 * --redis puts the rate limits (and everything else shared) in a private redis-server.
 *
 * Usage: npm run bench:profile [-- --target hit --duration 10 --connections 50 --top 25 --redis]
 */
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { Children, load } from './support.js'
import { ENV_DOC, FLAGS, policy } from './policy.js'
import { render, summarise } from './cpuprofile.js'
import { startPrivateRedis } from '../test/support/redis-server.js'

const { values } = parseArgs({ options: { target: { type: 'string', default: 'hit' }, duration: { type: 'string', default: '10' }, connections: { type: 'string', default: '50' }, top: { type: 'string', default: '25' }, 'doc-bytes': { type: 'string', default: '0' }, redis: { type: 'boolean', default: false } } })
const children = new Children()

async function main (): Promise<void> {
  const redis = values.redis ? await startPrivateRedis() : undefined
  try {
    const fast = await children.start(['--import', 'tsx', 'bench/upstream.ts'], { QUERY_LATENCY_MS: '0' }, (l) => l.url as string)
    const doc = await children.start(['--import', 'tsx', 'bench/upstream.ts'], { QUERY_LATENCY_MS: '1', DOC_BYTES: values['doc-bytes'] }, (l) => l.url as string)
    const dir = mkdtempSync(join(tmpdir(), 'flaggate-profile-'))
    writeFileSync(join(dir, 'gateway.yaml'), policy({ docUrl: doc, fastUrl: fast, redis }))
    const gw = await children.spawnFlaggate(join(dir, 'gateway.yaml'), ['--cpu-prof', '--cpu-prof-dir', dir])
    const url = gw.url + (values.target === 'flags' ? FLAGS : ENV_DOC)
    const headers = { 'x-environment-key': values.target === 'flags' ? 'dev_client_key' : 'ser.dev_server_key' }
    await load(url, { connections: Number(values.connections), durationS: 3, headers }) // JIT, pools, cache fill
    const from = Number(process.hrtime.bigint() / 1000n)
    const r = await load(url, { connections: Number(values.connections), durationS: Number(values.duration), headers, watch: { server: gw.pid } })
    const to = Number(process.hrtime.bigint() / 1000n)
    const cpuPerReq = r.cpuUsPerReq.server!
    await children.stop(gw.pid)
    const file = readdirSync(dir).find((f) => f.endsWith('.cpuprofile'))
    if (file === undefined) throw new Error(`no .cpuprofile in ${dir}`)
    const s = summarise(JSON.parse(readFileSync(join(dir, file), 'utf8')), Number(values.top), [from, to])
    console.log(`target ${values.target}: ${r.rps.toFixed(0)} req/s, p99 ${r.p99.toFixed(1)} ms, gateway CPU ${cpuPerReq.toFixed(1)} µs/req (/proc, measured run only); profile ${join(dir, file)}`)
    console.log('Profile: the samples taken during the measured run only; µs/req = their time over its requests (the profiler itself adds some).\n')
    console.log(render(s, r.requests))
  } finally {
    children.stopAll()
    await redis?.stop()
  }
}

await main()
