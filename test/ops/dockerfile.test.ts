/**
 * What can be checked about the Dockerfile without a Docker engine (there is none on these
 * machines): its shape, its build context, and the runtime stage's steps run by hand in a clean
 * directory standing in for the image's root: production dependencies installed from the lockfile
 * (offline, from the npm cache), dist/ and config/ copied, then the image's ENTRYPOINT + CMD
 * started there. It serves, its HEALTHCHECK command passes, it proxies, and SIGTERM ends it with 0.
 * Since only production dependencies are installed, this also proves that no runtime code imports
 * a devDependency.
 *
 * What it cannot check: that the base image exists and builds, the `node` user's permissions in the
 * real image, and Docker's own handling of HEALTHCHECK and signals.
 */
import { spawn, spawnSync } from 'node:child_process'
import { chmodSync, chownSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join, relative } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startFakeCore, type FakeCore } from '../support/fake-flagsmith.js'
import { raw } from '../support/http.js'

interface Instruction { cmd: string; args: string }

/** the uid/gid that plays the image's unprivileged user when this test runs as root */
const NOBODY = 65534
interface Stage { image: string; name: string | undefined; steps: Instruction[] }

/** Dockerfile → stages of instructions (continuations joined, comments dropped). Written by hand: no npm parser is maintained. */
function parseDockerfile (text: string): Stage[] {
  const lines: string[] = []
  let pending = ''
  for (const line of text.split('\n')) {
    if (/^\s*#/.test(line) && pending === '') continue
    if (/^\s*#/.test(line)) continue // comment inside a continuation
    if (line.endsWith('\\')) { pending += line.slice(0, -1) + ' '; continue }
    const full = (pending + line).trim()
    pending = ''
    if (full !== '') lines.push(full)
  }
  const stages: Stage[] = []
  for (const l of lines) {
    const m = /^(\S+)\s*(.*)$/.exec(l)!
    const ins = { cmd: m[1]!.toUpperCase(), args: m[2]! }
    if (ins.cmd === 'FROM') {
      const f = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(ins.args)!
      stages.push({ image: f[1]!, name: f[2], steps: [] })
    } else {
      stages.at(-1)!.steps.push(ins)
    }
  }
  return stages
}

/** `--from=build /app/dist ./dist` → flags and paths. */
function copyArgs (args: string): { from: string | undefined; sources: string[]; dest: string } {
  const words = args.split(/\s+/)
  const from = words.find((w) => w.startsWith('--from='))?.slice(7)
  const paths = words.filter((w) => !w.startsWith('--'))
  return { from, sources: paths.slice(0, -1), dest: paths.at(-1)! }
}

/** .dockerignore semantics (moby patternmatcher): a path or any parent matching; last match wins; `*` stays within a segment. */
function dockerIgnored (patterns: string[], path: string): boolean {
  const rules = patterns.map((p) => p.trim()).filter((p) => p !== '' && !p.startsWith('#')).map((p) => {
    const negate = p.startsWith('!')
    const body = (negate ? p.slice(1) : p).replace(/^\/+|\/+$/g, '')
    const re = new RegExp('^' + body.split('**').map((part) => part.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*').replace(/\?/g, '[^/]')).join('.*') + '$')
    return { negate, re }
  })
  const parts = path.split('/')
  let ignored = false
  for (const r of rules) {
    for (let i = 1; i <= parts.length; i++) if (r.re.test(parts.slice(0, i).join('/'))) { ignored = !r.negate; break }
  }
  return ignored
}

async function freePort (): Promise<number> {
  return await new Promise((resolve, reject) => {
    const s = createServer()
    s.listen(0, '127.0.0.1', () => { const p = (s.address() as { port: number }).port; s.close(() => resolve(p)) })
    s.on('error', reject)
  })
}

const REPO = process.cwd()
const pkg = JSON.parse(readFileSync('package.json', 'utf8')) as { engines: { node: string }; dependencies: Record<string, string>; devDependencies: Record<string, string> }
const stages = parseDockerfile(readFileSync('Dockerfile', 'utf8'))
const ignore = readFileSync('.dockerignore', 'utf8').split('\n')
const build = stages[0]!
const runtime = stages.at(-1)!
const steps = (s: Stage, cmd: string) => s.steps.filter((i) => i.cmd === cmd)
const last = (s: Stage, cmd: string) => steps(s, cmd).at(-1)?.args

describe('the Dockerfile', () => {
  it('is multi-stage: a build stage, then a runtime stage on the official Node 24 (LTS) slim image', () => {
    expect(stages.length).toBeGreaterThanOrEqual(2)
    expect(build.name).toBe('build')
    expect(runtime.image).toMatch(/^node:24\.\d+-bookworm-slim$/)
    expect(build.image).toBe(runtime.image)
    // Node 24 satisfies package.json engines (">=22.12.0" branch)
    expect(pkg.engines.node).toMatch(/>=22\.12\.0/)
    expect(steps(build, 'RUN').map((r) => r.args)).toEqual(expect.arrayContaining([expect.stringMatching(/^npm ci\b/), 'npm run build']))
  })

  it('keeps runtime blocks in a volume its user can write, not next to the read-only policy', () => {
    const env = steps(runtime, 'ENV').map((e) => e.args).join(' ')
    expect(env).toMatch(/(^|\s)FLAGGATE_STATE_FILE=\/var\/lib\/flaggate\/blocks\.json(\s|$)/)
    expect(steps(runtime, 'RUN').some((r) => /mkdir -p \/var\/lib\/flaggate && chown node:node \/var\/lib\/flaggate/.test(r.args))).toBe(true)
    expect(last(runtime, 'VOLUME')).toBe('/var/lib/flaggate')
    // the shipped policy reads the variable, its default (for `npm start`) unchanged
    expect(readFileSync('config/gateway.yaml', 'utf8')).toMatch(/stateFile: \$\{FLAGGATE_STATE_FILE:-\.flaggate\/blocks\.json\}/)
  })

  it('runs as a non-root user, with a HEALTHCHECK on /healthz and an exec-form ENTRYPOINT so SIGTERM reaches node', () => {
    expect(last(runtime, 'USER')).toBeDefined()
    expect(last(runtime, 'USER')).not.toMatch(/^(root|0)(:|$)/)
    expect(steps(runtime, 'RUN').some((r) => /npm ci --omit=dev --ignore-scripts/.test(r.args))).toBe(true)
    expect(last(runtime, 'HEALTHCHECK')).toMatch(/CMD \[.*\/healthz/)
    expect(JSON.parse(last(runtime, 'ENTRYPOINT')!)).toEqual(['node', 'dist/cli.js'])
    expect(JSON.parse(last(runtime, 'CMD')!)).toEqual(['serve', '--config', '/etc/flaggate/gateway.yaml'])
    expect(copyArgs(steps(runtime, 'COPY').find((c) => c.args.startsWith('--from=build'))!.args)).toMatchObject({ from: 'build', sources: ['/app/dist'] })
  })

  it('copies only what the build context keeps, and the context leaves out node_modules, dist and tests', () => {
    for (const stage of stages) {
      for (const c of steps(stage, 'COPY')) {
        const { from, sources } = copyArgs(c.args)
        if (from !== undefined) continue
        for (const s of sources) {
          expect(existsSync(join(REPO, s)), `${s} exists`).toBe(true)
          expect(dockerIgnored(ignore, s), `${s} is in the build context`).toBe(false)
        }
      }
    }
    for (const p of ['src/gateway.ts', 'config/gateway.yaml', 'package-lock.json']) expect(dockerIgnored(ignore, p), p).toBe(false)
    for (const p of ['config/.flaggate/blocks.json', 'node_modules/fastify/package.json', 'dist/cli.js', '.git/HEAD', 'test/ops/dockerfile.test.ts', 'bench/run.ts', 'deploy/k8s/deployment.yaml', '.env']) {
      expect(dockerIgnored(ignore, p), p).toBe(true)
    }
  })
})

describe('the runtime stage, run by hand in a clean directory', () => {
  let root: string
  let core: FakeCore
  let workdir = '/'
  const env: Record<string, string> = {}
  let installedBy = ''
  /** an absolute path of the image, inside the stand-in root */
  const inImage = (p: string) => join(root, p.startsWith('/') ? p : join(workdir, p))
  const buildWorkdir = last(build, 'WORKDIR') ?? '/'

  beforeAll(async () => {
    core = await startFakeCore()
    root = mkdtempSync(join(tmpdir(), 'flaggate-image-'))
    chmodSync(root, 0o755) // reachable by the unprivileged user
    for (const step of runtime.steps) {
      if (step.cmd === 'ENV') {
        // an absolute path of the image points inside the stand-in root
        for (const m of step.args.matchAll(/(\w+)=(\S+)/g)) env[m[1]!] = m[2]!.startsWith('/') ? join(root, m[2]!) : m[2]!
      } else if (step.cmd === 'WORKDIR') {
        workdir = step.args
        mkdirSync(inImage('.'), { recursive: true })
      } else if (step.cmd === 'COPY') {
        const { from, sources, dest } = copyArgs(step.args)
        for (const s of sources) {
          // the build stage's output is what global-setup compiled from the same sources and tsconfig
          const src = from === undefined ? join(REPO, s) : join(REPO, relative(buildWorkdir, s))
          const target = inImage(dest)
          mkdirSync(dest.endsWith('/') || sources.length > 1 ? target : dirname(target), { recursive: true })
          cpSync(src, dest.endsWith('/') ? join(target, s.split('/').at(-1)!) : target, { recursive: true })
        }
      } else if (step.cmd === 'RUN') {
        for (const part of step.args.split('&&').map((s) => s.trim())) {
          if (part === 'npm cache clean --force') continue // the image's cache, not this machine's
          const mkdir = /^mkdir -p (\/\S+)$/.exec(part)
          if (mkdir !== null) { mkdirSync(inImage(mkdir[1]!), { recursive: true }); continue }
          // the image's `node` user (uid 1000) is played by NOBODY below: the one this machine has
          const chown = /^chown node:node (\/\S+)$/.exec(part)
          if (chown !== null) { if (process.getuid?.() === 0) chownSync(inImage(chown[1]!), NOBODY, NOBODY); continue }
          expect(part, 'a RUN step this test knows how to replay').toMatch(/^npm ci --omit=dev --ignore-scripts\b/)
          // offline from the npm cache; when the cache lacks a package, fall back to the production
          // subtree of the repository's node_modules as `npm ls --omit=dev` resolves it
          const r = spawnSync('npm', [...part.split(/\s+/).slice(1), '--offline'], { cwd: inImage('.'), encoding: 'utf8', timeout: 90_000 })
          if (r.status === 0) { installedBy = 'npm ci --offline'; continue }
          const ls = spawnSync('npm', ['ls', '--omit=dev', '--all', '--parseable'], { cwd: REPO, encoding: 'utf8' })
          expect(ls.status, ls.stderr).toBe(0)
          for (const dir of ls.stdout.split('\n').filter((d) => d.startsWith(join(REPO, 'node_modules') + '/'))) {
            const rel = relative(REPO, dir)
            if (rel.split('/node_modules/').length === 1) cpSync(dir, join(inImage('.'), rel), { recursive: true })
          }
          installedBy = 'npm ls --omit=dev fallback'
        }
      }
    }
  }, 120_000)
  afterAll(async () => { await core?.close(); rmSync(root, { recursive: true, force: true }) })

  it('installs the production dependencies only, and has the files the image needs', () => {
    expect(installedBy).not.toBe('')
    console.info(`production dependencies installed by ${installedBy}`)
    const modules = readdirSync(inImage('node_modules'))
    for (const dep of Object.keys(pkg.dependencies)) expect(existsSync(inImage(`node_modules/${dep}/package.json`)), dep).toBe(true)
    for (const dev of Object.keys(pkg.devDependencies)) expect(existsSync(inImage(`node_modules/${dev}`)), `devDependency ${dev}`).toBe(false)
    expect(modules).not.toContain('typescript')
    for (const f of ['package.json', 'dist/cli.js', 'dist/gateway.js', 'config/gateway.yaml', '/etc/flaggate/gateway.yaml']) expect(existsSync(inImage(f)), f).toBe(true)
  })

  it("starts with the image's ENTRYPOINT and CMD, passes its HEALTHCHECK, proxies, and exits 0 on SIGTERM", async () => {
    const [port, adminPort] = [await freePort(), await freePort()]
    const runEnv = {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      ...env,
      FLAGGATE_LISTEN: `127.0.0.1:${port}`,
      FLAGGATE_ADMIN_LISTEN: `127.0.0.1:${adminPort}`,
      FLAGSMITH_CORE_URL: core.url
    }
    const entry = JSON.parse(last(runtime, 'ENTRYPOINT')!) as string[]
    const cmd = JSON.parse(last(runtime, 'CMD')!) as string[]
    // the image's own policy file, at its path inside the stand-in root
    const argv = [...entry, ...cmd].map((a) => a.startsWith('/') ? inImage(a) : a)
    expect(argv[0]).toBe('node')
    const child = spawn(process.execPath, argv.slice(1), { cwd: inImage('.'), env: runEnv, stdio: ['ignore', 'pipe', 'pipe'] })
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
    try {
      let out = ''
      let err = ''
      child.stderr.on('data', (c: Buffer) => { err += c.toString() })
      await new Promise<void>((resolve, reject) => {
        child.stdout.on('data', (c: Buffer) => { out += c.toString(); if (out.includes('"msg":"flaggate serving"')) resolve() })
        void exited.then((code) => reject(new Error(`exited ${code}: ${err}`)))
        setTimeout(() => reject(new Error(`not serving within 20 s: ${err}`)), 20_000).unref()
      })
      const base = `http://127.0.0.1:${port}`
      expect((await raw(base, '/healthz')).status).toBe(200)

      const hc = /CMD (\[.*\])$/.exec(last(runtime, 'HEALTHCHECK')!)![1]!
      const [hcNode, ...hcArgs] = JSON.parse(hc) as string[]
      expect(hcNode).toBe('node')
      const check = spawnSync(process.execPath, hcArgs, { env: runEnv, encoding: 'utf8', timeout: 10_000 })
      expect(check.status, check.stderr).toBe(0)

      const flags = await raw(base, '/api/v1/flags/', { headers: { 'x-environment-key': 'dev_client_key' } })
      expect(flags.status).toBe(200)
      expect(flags.headers['x-flaggate-upstream']).toBe('core')

      child.kill('SIGTERM')
      expect(await exited).toBe(0)
      // and the HEALTHCHECK fails once nothing listens
      expect(spawnSync(process.execPath, hcArgs, { env: runEnv, timeout: 10_000 }).status).toBe(1)
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL')
    }
  }, 60_000)

  /** the image's command as its unprivileged user (NOBODY when this test runs as root), serving */
  async function startAsUser (extraEnv: Record<string, string>): Promise<{ admin: string; stop: () => Promise<void> }> {
    const [port, adminPort] = [await freePort(), await freePort()]
    const runEnv = { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env, FLAGGATE_LISTEN: `127.0.0.1:${port}`, FLAGGATE_ADMIN_LISTEN: `127.0.0.1:${adminPort}`, FLAGSMITH_CORE_URL: core.url, ...extraEnv }
    const argv = [...JSON.parse(last(runtime, 'ENTRYPOINT')!) as string[], ...JSON.parse(last(runtime, 'CMD')!) as string[]].map((a) => a.startsWith('/') ? inImage(a) : a)
    const asRoot = process.getuid?.() === 0
    const [bin, ...args] = asRoot
      ? ['setpriv', `--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', '--', process.execPath, ...argv.slice(1)]
      : [process.execPath, ...argv.slice(1)]
    const child = spawn(bin!, args, { cwd: inImage('.'), env: runEnv, stdio: ['ignore', 'pipe', 'pipe'] })
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
    let out = ''
    let err = ''
    child.stderr.on('data', (c: Buffer) => { err += c.toString() })
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (c: Buffer) => { out += c.toString(); if (out.includes('"msg":"flaggate serving"')) resolve() })
      void exited.then((code) => reject(new Error(`exited ${code}: ${err}${out}`)))
      setTimeout(() => reject(new Error(`not serving within 20 s: ${err}`)), 20_000).unref()
    })
    return { admin: `http://127.0.0.1:${adminPort}`, stop: async () => { child.kill('SIGTERM'); await exited } }
  }

  it('as the unprivileged user with a read-only policy directory: blocks persist in the volume, or are refused with 503', async () => {
    // the policy directory as a read-only mount presents it: not writable by the gateway's user
    chmodSync(inImage('/etc/flaggate'), 0o555)
    const block = async (admin: string) => await fetch(`${admin}/admin/blocks`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ip: '192.0.2.9', ttl: '1h', reason: 'readonly test' }) })

    // the image's FLAGGATE_STATE_FILE: a directory of its own, writable by its user
    const ok = await startAsUser({})
    try {
      const r = await block(ok.admin)
      expect(r.status).toBe(201)
      const stored = JSON.parse(readFileSync(env.FLAGGATE_STATE_FILE!, 'utf8')) as { blocks: Array<{ ip?: string }> }
      expect(stored.blocks.map((b) => b.ip)).toContain('192.0.2.9')
    } finally { await ok.stop() }

    // without it, the shipped default resolves next to the read-only policy: refused, not lost
    const ro = await startAsUser({ FLAGGATE_STATE_FILE: '' })
    try {
      const r = await block(ro.admin)
      expect(r.status).toBe(503)
      const body = await r.json() as { code: string; message: string }
      expect(body.code).toBe('FLAGGATE_STATE_UNAVAILABLE')
      expect(body.message).toMatch(/could not be saved \(.*etc\/flaggate\/\.flaggate\/blocks\.json: .*(EACCES|EROFS|permission denied)/i)
      expect(body.message).toMatch(/FLAGGATE_STATE_FILE/)
      const list = await (await fetch(`${ro.admin}/admin/blocks`)).json() as Array<{ ip?: string }>
      expect(list.map((b) => b.ip)).not.toContain('192.0.2.9')
      const status = await (await fetch(`${ro.admin}/admin/status`)).json() as { blocking: { store: { kind: string; lastError?: string } } }
      expect(status.blocking.store).toMatchObject({ kind: 'file', lastError: expect.stringMatching(/EACCES|EROFS|permission denied/i) })
    } finally { await ro.stop() }
  }, 90_000)
})
