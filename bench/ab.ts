/**
 * Two flaggate builds side by side on one path, in interleaved rounds (the only fair comparison
 * on a shared machine): CPU µs per request and req/s of each, medians.
 *
 *   cp -r dist .tmp/before/dist && cp package.json .tmp/before/   (before the change)
 *   npm run build                                                 (after)
 *   node --import tsx bench/ab.ts --a .tmp/before --b . [--target hit|flags] [--rounds 5] [--duration 4] [--redis]
 *
 * What one capability costs: the same build on both sides, b without the capabilities whose name
 * (bench/policy.ts CAPABILITIES) matches:
 *   node --import tsx bench/ab.ts --a . --b . --without 'blocking'
 *
 * An older build that does not know a capability's policy keys runs without it (`--a-without`):
 *   node --import tsx bench/ab.ts --a ../old --b . --a-without 'unknown-key'
 */
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { Children, load, median, type LoadResult } from './support.js'
import { ENV_DOC, FLAGS, policy } from './policy.js'
import { startPrivateRedis } from '../test/support/redis-server.js'

const { values } = parseArgs({ options: { a: { type: 'string', default: '.tmp/before' }, b: { type: 'string', default: '.' }, target: { type: 'string', default: 'hit' }, rounds: { type: 'string', default: '5' }, duration: { type: 'string', default: '4' }, connections: { type: 'string', default: '50' }, 'doc-bytes': { type: 'string', default: '0' }, redis: { type: 'boolean', default: false }, without: { type: 'string' }, 'a-without': { type: 'string' } } })
const children = new Children()
const redis = values.redis ? await startPrivateRedis() : undefined

try {
  const fast = await children.start(['--import', 'tsx', 'bench/upstream.ts'], { QUERY_LATENCY_MS: '0' }, (l) => l.url as string)
  const doc = await children.start(['--import', 'tsx', 'bench/upstream.ts'], { QUERY_LATENCY_MS: '1', DOC_BYTES: values['doc-bytes'] }, (l) => l.url as string)
  const dir = mkdtempSync(join(tmpdir(), 'flaggate-ab-'))
  const aWithout = values['a-without'] === undefined ? undefined : new RegExp(values['a-without'], 'i')
  writeFileSync(join(dir, 'gateway.yaml'), policy({ docUrl: doc, fastUrl: fast, redis, ...(aWithout !== undefined ? { without: aWithout } : {}) }))
  const without = values.without === undefined ? undefined : new RegExp(values.without, 'i')
  writeFileSync(join(dir, 'gateway-b.yaml'), policy({ docUrl: doc, fastUrl: fast, redis, ...(without !== undefined ? { without } : {}) }))
  const path = values.target === 'flags' ? FLAGS : ENV_DOC
  const headers = { 'x-environment-key': values.target === 'flags' ? 'dev_client_key' : 'ser.dev_server_key' }
  const sides = []
  for (const label of ['a', 'b'] as const) {
    const root = resolve(values[label]!)
    const gw = await children.spawn([join(root, 'dist/cli.js'), 'serve', '--config', join(dir, label === 'b' ? 'gateway-b.yaml' : 'gateway.yaml')], { LOG_LEVEL: 'info' }, (l) => l.msg === 'flaggate serving')
    const url = (gw.info.url as string) + path
    await load(url, { connections: Number(values.connections), durationS: 2, headers })
    sides.push({ label, root, url, pid: gw.pid, results: [] as LoadResult[] })
  }
  for (let r = 0; r < Number(values.rounds); r++) {
    for (const s of r % 2 === 0 ? sides : [...sides].reverse()) {
      const res = await load(s.url, { connections: Number(values.connections), durationS: Number(values.duration), headers, watch: { server: s.pid } })
      s.results.push(res)
      console.log(`round ${r + 1} ${s.label}: ${res.rps.toFixed(0)} req/s, p99 ${res.p99.toFixed(1)} ms, ${res.cpuUsPerReq.server!.toFixed(1)} µs/req`)
    }
  }
  for (const s of sides) {
    console.log(`${s.label} (${s.root}): median ${median(s.results.map((x) => x.rps)).toFixed(0)} req/s, p99 ${median(s.results.map((x) => x.p99)).toFixed(1)} ms, CPU ${median(s.results.map((x) => x.cpuUsPerReq.server!)).toFixed(1)} µs/req`)
  }
  // each round's two runs are neighbours in time: their ratio cancels the machine's drift
  const [a, b] = sides
  const paired = a!.results.map((x, i) => b!.results[i]!.cpuUsPerReq.server! / x.cpuUsPerReq.server!)
  console.log(`b/a CPU per request, median of the rounds' ratios: ${median(paired).toFixed(3)} (rounds: ${paired.map((r) => r.toFixed(2)).join(' ')})`)
  const pairedUser = a!.results.map((x, i) => b!.results[i]!.userUsPerReq.server! / x.userUsPerReq.server!)
  console.log(`b/a user-mode CPU per request (a ${median(a!.results.map((x) => x.userUsPerReq.server!)).toFixed(1)} µs, b ${median(b!.results.map((x) => x.userUsPerReq.server!)).toFixed(1)} µs), median of the rounds' ratios: ${median(pairedUser).toFixed(3)} (rounds: ${pairedUser.map((r) => r.toFixed(2)).join(' ')})`)
} finally {
  children.stopAll()
  await redis?.stop()
}
