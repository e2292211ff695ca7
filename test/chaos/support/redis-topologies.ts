/**
 * Private Redis topologies for the chaos suite: a Sentinel group (master, replica, three
 * sentinels) and a Cluster (three masters, three replicas), each on free loopback ports in its own
 * temporary directory. Only processes we started are ever signalled; stop() kills them all.
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { freePort } from '../../support/redis-server.js'

const run = promisify(execFile)
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

export interface RedisNode { port: number; process: ChildProcess; kill (signal?: NodeJS.Signals): Promise<void> }

function startNode (args: string[], port: number): RedisNode {
  const child = spawn('redis-server', args, { stdio: 'ignore' })
  return {
    port,
    process: child,
    async kill (signal: NodeJS.Signals = 'SIGKILL') {
      if (child.exitCode !== null || child.signalCode !== null) return
      try { process.kill(child.pid!, 'SIGCONT') } catch {}
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
      child.kill(signal)
      await exited
    }
  }
}

export async function cli (port: number, ...args: string[]): Promise<string> {
  const { stdout } = await run('redis-cli', ['-h', '127.0.0.1', '-p', String(port), ...args], { timeout: 5000 })
  return stdout.trim()
}

export async function until (what: string, cond: () => Promise<boolean> | boolean, timeoutMs = 20_000, everyMs = 100): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    try { if (await cond()) return } catch {}
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await sleep(everyMs)
  }
}

const BASE = ['--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--protected-mode', 'no']

export interface SentinelGroup {
  name: string
  master: RedisNode
  replica: RedisNode
  sentinels: RedisNode[]
  /** `host:port` list for `store.redis.sentinels` */
  sentinelAddrs: string[]
  /** the port the sentinels currently name as master */
  currentMasterPort (): Promise<number>
  stop (): Promise<void>
}

export async function startSentinelGroup (name = 'flaggate'): Promise<SentinelGroup> {
  const dir = mkdtempSync(join(tmpdir(), 'flaggate-sentinel-'))
  const mPort = await freePort()
  const master = startNode(['--port', String(mPort), '--dir', dir, ...BASE], mPort)
  await until('master up', async () => (await cli(mPort, 'PING')) === 'PONG')
  const rPort = await freePort()
  const replica = startNode(['--port', String(rPort), '--dir', dir, '--replicaof', '127.0.0.1', String(mPort), ...BASE], rPort)
  await until('replica in sync', async () => (await cli(rPort, 'INFO', 'replication')).includes('master_link_status:up'))
  const sentinels: RedisNode[] = []
  for (let i = 0; i < 3; i++) {
    const port = await freePort()
    const conf = join(dir, `sentinel-${port}.conf`)
    writeFileSync(conf, [
      `port ${port}`, 'bind 127.0.0.1', 'protected-mode no', `dir ${dir}`,
      `sentinel monitor ${name} 127.0.0.1 ${mPort} 2`,
      `sentinel down-after-milliseconds ${name} 1000`,
      `sentinel failover-timeout ${name} 5000`,
      `sentinel parallel-syncs ${name} 1`
    ].join('\n') + '\n')
    sentinels.push(startNode([conf, '--sentinel'], port))
  }
  for (const s of sentinels) {
    await until(`sentinel ${s.port} sees the replica`, async () => {
      const out = await cli(s.port, 'SENTINEL', 'replicas', name)
      return out.includes(String(rPort))
    })
  }
  return {
    name,
    master,
    replica,
    sentinels,
    sentinelAddrs: sentinels.map((s) => `127.0.0.1:${s.port}`),
    async currentMasterPort () {
      const out = (await cli(sentinels[0]!.port, 'SENTINEL', 'get-master-addr-by-name', name)).split('\n')
      return Number(out[1])
    },
    async stop () { for (const n of [...sentinels, replica, master]) await n.kill() }
  }
}

export interface RedisCluster {
  nodes: RedisNode[]
  /** `host:port` list for `store.redis.cluster` */
  addrs: string[]
  /** ports of the nodes that are masters right now */
  masters (): Promise<number[]>
  stop (): Promise<void>
}

export async function startCluster (): Promise<RedisCluster> {
  const dir = mkdtempSync(join(tmpdir(), 'flaggate-cluster-'))
  const nodes: RedisNode[] = []
  for (let i = 0; i < 6; i++) {
    const port = await freePort()
    nodes.push(startNode(['--port', String(port), '--dir', dir, '--cluster-enabled', 'yes',
      '--cluster-config-file', `nodes-${port}.conf`, '--cluster-node-timeout', '1000', ...BASE], port))
  }
  for (const n of nodes) await until(`node ${n.port} up`, async () => (await cli(n.port, 'PING')) === 'PONG')
  await run('redis-cli', ['--cluster', 'create', ...nodes.map((n) => `127.0.0.1:${n.port}`), '--cluster-replicas', '1', '--cluster-yes'], { timeout: 30_000 })
  for (const n of nodes) await until(`node ${n.port} cluster ok`, async () => (await cli(n.port, 'CLUSTER', 'INFO')).includes('cluster_state:ok'), 30_000)
  const alive = (): RedisNode[] => nodes.filter((n) => n.process.exitCode === null && n.process.signalCode === null)
  return {
    nodes,
    addrs: nodes.map((n) => `127.0.0.1:${n.port}`),
    async masters () {
      const out = await cli(alive()[0]!.port, 'CLUSTER', 'NODES')
      return out.split('\n').filter((l) => /\bmaster\b/.test(l) && !/\bfail\b/.test(l))
        .map((l) => Number(/:(\d+)@/.exec(l)?.[1])).filter((p) => p > 0)
    },
    async stop () { for (const n of nodes) await n.kill() }
  }
}
