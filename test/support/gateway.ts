/**
 * Real gateways for tests: in-process (startTestGateway) or as separate `node dist/cli.js serve`
 * processes (spawnGateway) for multi-replica and signal tests. Both listen on ephemeral ports.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import pino from 'pino'
import { startGateway, type Gateway } from '../../src/gateway.js'

export function tempPolicyFile (yaml: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'flaggate-test-'))
  const file = join(dir, 'gateway.yaml')
  writeFileSync(file, yaml)
  return file
}

export interface PolicyOptions {
  coreUrl: string
  edgeUrl?: string
  redis?: { url: string; keyPrefix: string; commandTimeout?: string }
  adminToken?: string
  /** YAML for `routes:` (indented list items); default: the SDK routes without limits */
  routes?: string
  /** extra top-level YAML appended as is */
  extra?: string
  bodyLimit?: string
  shutdownTimeout?: string
  coreTimeout?: string
  /** extra YAML lines under `server:` (indented by two spaces), e.g. `  requestTimeout: 1s` */
  server?: string
}

/** A policy listening on ephemeral ports, pointing at the given fake upstreams. */
export function policyYaml (o: PolicyOptions): string {
  return `server:
  listen: 127.0.0.1:0
  bodyLimit: ${o.bodyLimit ?? '1mb'}
  shutdownTimeout: ${o.shutdownTimeout ?? '5s'}
${o.server === undefined ? '' : o.server + '\n'}admin:
  listen: 127.0.0.1:0
${o.adminToken === undefined ? '' : `  token: ${o.adminToken}\n`}upstreams:
  core: { url: "${o.coreUrl}", timeout: ${o.coreTimeout ?? '5s'} }
${o.edgeUrl === undefined ? '' : `  edge: { url: "${o.edgeUrl}", timeout: 5s }\n`}${o.redis === undefined ? '' : `store:
  redis:
    url: ${o.redis.url}
    keyPrefix: "${o.redis.keyPrefix}"
    commandTimeout: ${o.redis.commandTimeout ?? '50ms'}
`}routes:
${o.routes ?? `  - name: environment-document
    match: { methods: [GET], path: /api/v1/environment-document/ }
    upstream: core
  - name: flags
    match: { methods: [GET], path: /api/v1/flags/ }
    upstream: core
  - name: identities
    match: { methods: [GET, POST], path: /api/v1/identities/ }
    upstream: core
  - name: default
    match: { pathPrefix: / }
    upstream: core`}
${o.extra ?? ''}`
}

/** Captures log lines written by an in-process gateway. */
export class LogCapture extends Writable {
  readonly lines: Array<Record<string, unknown>> = []
  override _write (chunk: Buffer, _enc: string, cb: () => void): void {
    for (const line of chunk.toString().split('\n')) if (line !== '') this.lines.push(JSON.parse(line) as Record<string, unknown>)
    cb()
  }
}

export interface TestGateway extends Gateway { file: string; logs: LogCapture }

export async function startTestGateway (yaml: string, opts: { env?: NodeJS.ProcessEnv; watch?: boolean } = {}): Promise<TestGateway> {
  const file = tempPolicyFile(yaml)
  const logs = new LogCapture()
  const logger = pino({ level: 'info' }, logs)
  const gw = await startGateway({ configPath: file, env: opts.env ?? process.env, logger, watch: opts.watch ?? true })
  return Object.assign(gw, { file, logs })
}

export interface SpawnedGateway {
  url: string
  adminUrl: string
  process: ChildProcess
  file: string
  logs: Array<Record<string, unknown>>
  stderr: string[]
  /** sends the signal and resolves with the exit code */
  stop: (signal?: NodeJS.Signals) => Promise<number | null>
}

// A test that fails before stopping its gateways must not leave them running after the worker.
const spawned = new Set<ChildProcess>()
process.once('exit', () => { for (const c of spawned) c.kill('SIGKILL') })

/** `node dist/cli.js serve` in its own process; resolves once it logs that it serves. */
export async function spawnGateway (yaml: string, env: NodeJS.ProcessEnv = {}): Promise<SpawnedGateway> {
  const file = tempPolicyFile(yaml)
  const child = spawn(process.execPath, ['dist/cli.js', 'serve', '--config', file], {
    env: { ...process.env, LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  spawned.add(child)
  const logs: Array<Record<string, unknown>> = []
  const stderr: string[] = []
  let buffered = ''
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => { spawned.delete(child); resolve(code) }))
  const ready = new Promise<{ url: string; admin: string }>((resolve, reject) => {
    child.stdout!.on('data', (chunk: Buffer) => {
      buffered += chunk.toString()
      let nl: number
      while ((nl = buffered.indexOf('\n')) !== -1) {
        const line = buffered.slice(0, nl)
        buffered = buffered.slice(nl + 1)
        try {
          const entry = JSON.parse(line) as Record<string, unknown>
          logs.push(entry)
          if (entry.msg === 'flaggate serving') resolve({ url: entry.url as string, admin: entry.admin as string })
        } catch { stderr.push(line) }
      }
    })
    child.stderr!.on('data', (c: Buffer) => stderr.push(c.toString()))
    void exited.then((code) => reject(new Error(`gateway exited with ${code} before serving: ${stderr.join('')}`)))
    setTimeout(() => reject(new Error(`gateway did not start within 45 s: ${stderr.join('')}`)), 45_000).unref()
  })
  const { url, admin } = await ready
  return {
    url,
    adminUrl: admin,
    process: child,
    file,
    logs,
    stderr,
    async stop (signal: NodeJS.Signals = 'SIGTERM') {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode
      child.kill(signal)
      return await exited
    }
  }
}
