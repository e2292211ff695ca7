/**
 * One process at a time: fresh gateways of builds A and B, alternating, each warmed as the bench
 * warms the memory-mode gateway (flags proxied, then cache hits), then measured in three short hit
 * runs; prints each process's runs and median CPU per hit. On a VM whose slow phases can hold one
 * process for a whole bench run, this separates "this build is slower" from "this process landed
 * in a slow phase".
 *
 *   cp -r dist .tmp/before/dist && cp package.json .tmp/before/   (before the change)
 *   node --import tsx bench/processes.ts [--builds .tmp/before,.] [--processes 4]
 */
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { Children, load, median } from './support.js'
import { ENV_DOC, FLAGS, policy } from './policy.js'

const { values } = parseArgs({ options: { builds: { type: 'string', default: '.tmp/before,.' }, processes: { type: 'string', default: '4' } } })
const builds = values.builds!.split(',')
const children = new Children()
try {
  const fast = await children.start(['--import', 'tsx', 'bench/upstream.ts'], { QUERY_LATENCY_MS: '0' }, (l) => l.url as string)
  const doc = await children.start(['--import', 'tsx', 'bench/upstream.ts'], { QUERY_LATENCY_MS: '1' }, (l) => l.url as string)
  const dir = mkdtempSync(join(tmpdir(), 'flaggate-processes-'))
  writeFileSync(join(dir, 'gateway.yaml'), policy({ docUrl: doc, fastUrl: fast }))
  const hit = { 'x-environment-key': 'ser.dev_server_key' }
  const medians: Record<string, number[]> = {}
  for (let i = 0; i < Number(values.processes); i++) {
    for (const b of builds) {
      const gw = await children.spawn([join(resolve(b), 'dist/cli.js'), 'serve', '--config', join(dir, 'gateway.yaml')], { LOG_LEVEL: 'info' }, (l) => l.msg === 'flaggate serving')
      const url = gw.info.url as string
      await load(url + FLAGS, { connections: 50, durationS: 2, headers: { 'x-environment-key': 'dev_client_key' } })
      await load(url + ENV_DOC, { connections: 50, durationS: 2, headers: hit })
      const runs: number[] = []
      for (let r = 0; r < 3; r++) runs.push((await load(url + ENV_DOC, { connections: 50, durationS: 3, headers: hit, watch: { server: gw.pid } })).cpuUsPerReq.server!)
      ;(medians[b] ??= []).push(median(runs))
      console.log(`${b} process ${i + 1}: ${runs.map((x) => x.toFixed(1)).join(' ')} µs per hit`)
      process.kill(gw.pid, 'SIGTERM')
    }
  }
  for (const b of builds) console.log(`${b}: per-process medians ${medians[b]!.map((x) => x.toFixed(1)).join(' ')} µs per hit`)
} finally {
  children.stopAll()
}
