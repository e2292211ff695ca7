/**
 * The CLI as an operator meets it (the compiled dist/cli.js): every command with bad arguments
 * prints its usage on stderr and exits 2, never a stack trace; help and --version exit 0;
 * `validate` checks every file it is given; the admin commands' refusals say what to do.
 */
import { execFile, spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { promisify } from 'node:util'
import { parse as parseYaml } from 'yaml'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startFakeCore, type FakeCore } from '../support/fake-flagsmith.js'
import { policyYaml, startTestGateway, tempPolicyFile, type TestGateway } from '../support/gateway.js'

const ENV = { ...process.env, FLAGGATE_ADMIN_TOKEN: '', FLAGGATE_ADMIN_URL: 'http://127.0.0.1:9' }
const cli = (...args: string[]) => spawnSync(process.execPath, ['dist/cli.js', ...args], { encoding: 'utf8', env: ENV, timeout: 20_000 })

/** what a Node stack trace or an uncaught Node error looks like */
const STACK = /\n\s+at \S|node:internal|ERR_[A-Z_]+|Error: .*\n.*at /

const GOOD = tempPolicyFile(`upstreams:
  core: { url: "http://127.0.0.1:9" }
routes:
  - name: all
    match: { pathPrefix: / }
    upstream: core
    cache: { ttl: 30s, maxEntrySize: 10mb }
`)
const BAD = tempPolicyFile(`upstreams:
  core: { url: "http://127.0.0.1:9", timeout: 10 }
rotes: []
routes:
  - name: all
    match: { pathPrefix: / }
    upstream: core
    limit: { rate: fast, burst: "10" }
    cache: { ttl: 30s, staleWhileRevalidat: 10s }
`)

describe('bad arguments: usage on stderr, exit 2, no stack trace', () => {
  it.each([
    ['serve', 'config/gateway.yaml'],
    ['serve', '--bogus'],
    ['serve', '--config'],
    ['validate'],
    ['validate', '--bogus', GOOD],
    ['explain'],
    ['explain', '--path', '/x', '--ip', 'notanip'],
    ['explain', '--path', '/x', '--method', 'FETCH'],
    ['explain', '--path'],
    ['explain', '--path', '/x', 'extra'],
    ['status', '--bogus'],
    ['status', 'extra'],
    ['status', '--admin'],
    ['purge', '--bogus'],
    ['purge', '--key'],
    ['block', '--key', 'ser.x'],
    ['block', '--reason', 'why'],
    ['block', '--key', 'ser.x', '--ip', '192.0.2.1', '--reason', 'why'],
    // top's CLIENT column is KEY@ADDRESS or an address: anything else would block a key nobody meant
    ['block', '--client', '@@', '--reason', 'why'],
    ['block', '--client', 'key@', '--reason', 'why'],
    ['block', '--client', 'k@999.1.1.1', '--reason', 'why'],
    ['block', '--client', 'not a client', '--reason', 'why'],
    ['block', '--bogus'],
    // checked before the admin API is called: a usage error even with no gateway running
    ['block', '--ip', 'notanip', '--reason', 'why'],
    ['block', '--ip', '192.0.2.0/33', '--reason', 'why'],
    ['block', '--ip', '192.0.2.1', '--ttl', 'forever', '--reason', 'why'],
    ['unblock'],
    ['unblock', 'a', 'b'],
    ['unblock', '--bogus', 'a'],
    ['blocks', 'extra'],
    ['blocks', '--bogus'],
    ['top', '--by', 'bytes'],
    ['top', '--limit', '0'],
    ['top', '--limit', 'ten'],
    ['top', 'extra'],
    ['bogus'],
    ['--bogus']
  ])('flaggate %s', (...args: string[]) => {
    const r = cli(...args)
    expect(r.status, r.stderr).toBe(2)
    expect(r.stderr).not.toMatch(STACK)
    expect(r.stderr).toMatch(/^(error: |flaggate: )/)
    expect(r.stdout).toBe('')
    // the usage of the command (or of the program), or a pointer to it
    expect(r.stderr).toMatch(/Usage: flaggate|--help/)
  })

  it('no command at all: the usage on stderr, exit 2', () => {
    const r = cli()
    expect(r.status).toBe(2)
    expect(r.stderr).toMatch(/^Usage: flaggate \[options\] \[command\]/)
  })

  it('a mistyped command gets a suggestion', () => {
    expect(cli('stauts').stderr).toMatch(/Did you mean status\?/)
  })
})

describe('help and version: stdout, exit 0', () => {
  it.each([
    [['--help'], 'Usage: flaggate [options] [command]'],
    [['-h'], 'Usage: flaggate [options] [command]'],
    [['help'], 'Usage: flaggate [options] [command]'],
    [['help', 'block'], 'Usage: flaggate block [options]'],
    [['serve', '--help'], 'Usage: flaggate serve [options]'],
    [['validate', '--help'], 'Usage: flaggate validate [options] <file...>'],
    [['explain', '--help'], 'Usage: flaggate explain [options]'],
    [['status', '--help'], 'Usage: flaggate status [options]'],
    [['purge', '--help'], 'Usage: flaggate purge [options]'],
    [['block', '--help'], 'Usage: flaggate block [options]'],
    [['unblock', '--help'], 'Usage: flaggate unblock [options] <id>'],
    [['blocks', '--help'], 'Usage: flaggate blocks [options]'],
    [['top', '--help'], 'Usage: flaggate top [options]']
  ])('flaggate %j', (args, usage) => {
    const r = cli(...args)
    expect(r.status).toBe(0)
    expect(r.stdout.split('\n')[0]).toBe(usage)
    expect(r.stderr).toBe('')
  })

  it('--version prints the package version', () => {
    const r = cli('--version')
    expect(r.status).toBe(0)
    expect(r.stdout).toBe(`${(JSON.parse(readFileSync('package.json', 'utf8')) as { version: string }).version}\n`)
  })
})

describe('flaggate validate FILE...', () => {
  it('checks every file: exit 1 when any is invalid, each error prefixed by its file', () => {
    const r = cli('validate', GOOD, BAD, GOOD)
    expect(r.status).toBe(1)
    expect(r.stdout.split('\n')).toEqual([`${GOOD}: valid (policy version ${/version (\w+)/.exec(r.stdout)![1]!}, 1 routes)`, r.stdout.split('\n')[0], ''])
    const lines = r.stderr.trimEnd().split('\n')
    expect(lines.slice(0, -2).every((l) => l.startsWith(`${BAD}:`))).toBe(true)
    expect(lines.slice(-2)).toEqual([`${BAD}: 5 errors`, '1 of 3 files invalid'])
  })

  it('says "did you mean" for a misspelt key, the closest of the same section', () => {
    const err = cli('validate', BAD).stderr
    expect(err).toContain(`${BAD}:3:1: rotes: unknown key 'rotes' (did you mean 'routes'?)`)
    expect(err).toContain(`${BAD}:9:24: routes[0].cache.staleWhileRevalidat: unknown key 'staleWhileRevalidat' (did you mean 'staleWhileRevalidate'?)`)
  })

  it('words type errors in the policy\'s own terms', () => {
    const err = cli('validate', BAD).stderr
    expect(err).toContain(`${BAD}:8:20: routes[0].limit.rate: \`rate\` must look like \`100/s\` (a rate), not "fast"`)
    expect(err).toContain(`${BAD}:8:33: routes[0].limit.burst: \`burst\` must be a number, not the string "10"`)
    expect(err).toContain(`${BAD}:2:47: upstreams.core.timeout: \`timeout\` must look like \`30s\` (a duration), not the number 10: write the unit too`)
    expect(err).not.toContain('Invalid input')
  })

  it('a file that does not exist is an invalid file, not a crash', () => {
    const r = cli('validate', '/nonexistent/gateway.yaml')
    expect(r.status).toBe(1)
    expect(r.stderr).toMatch(/^\/nonexistent\/gateway\.yaml:1:1: /)
    expect(r.stderr).not.toMatch(STACK)
  })
})

describe('flaggate explain', () => {
  it('prints durations and sizes in the policy\'s units', () => {
    const r = cli('explain', '--config', GOOD, '--path', '/x', '--ip', '192.0.2.1')
    expect(r.status).toBe(0)
    expect(r.stdout).toMatch(/\(timeout 10s\)/)
    expect(r.stdout).toMatch(/^cache: {4}ttl 30s, stale-while-revalidate 0ms, stale-if-error 0ms, max entry 10mb;/m)
  })
})

describe('admin commands: refusals that say what to do', () => {
  const TOKEN = 'cli-test-admin-token-0123456789'
  let core: FakeCore
  let gw: TestGateway
  beforeAll(async () => {
    core = await startFakeCore()
    gw = await startTestGateway(policyYaml({ coreUrl: core.url, adminToken: TOKEN }))
  })
  afterAll(async () => { await gw?.close(); await core?.close() })

  const run = async (env: NodeJS.ProcessEnv, ...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> => {
    try {
      const r = await promisify(execFile)(process.execPath, ['dist/cli.js', ...args, '--admin', gw.adminUrl], { encoding: 'utf8', env: { ...process.env, ...env } })
      return { code: 0, stdout: r.stdout, stderr: r.stderr }
    } catch (err) {
      const e = err as { code: number; stdout: string; stderr: string }
      return { code: e.code, stdout: e.stdout, stderr: e.stderr }
    }
  }

  it('a 401 names FLAGGATE_ADMIN_TOKEN, whether it is unset or wrong', async () => {
    const unset = await run({ FLAGGATE_ADMIN_TOKEN: '' }, 'blocks')
    expect(unset).toMatchObject({ code: 1, stderr: 'flaggate: admin API answered 401: this gateway requires a token: set FLAGGATE_ADMIN_TOKEN to its admin.token\n' })
    const wrong = await run({ FLAGGATE_ADMIN_TOKEN: 'not-the-token-at-all' }, 'status')
    expect(wrong.code).toBe(1)
    expect(wrong.stderr).toContain('FLAGGATE_ADMIN_TOKEN does not match')
  })

  it('--admin at the public listener says so, rather than relaying the upstream\'s 404', async () => {
    for (const args of [['status'], ['blocks'], ['purge']]) {
      // asynchronously: the gateway answers from this process
      const r = await promisify(execFile)(process.execPath, ['dist/cli.js', ...args, '--admin', gw.url], { encoding: 'utf8', env: { ...process.env, FLAGGATE_ADMIN_TOKEN: TOKEN } })
        .then(() => ({ code: 0, stderr: '' }), (err: { code: number; stderr: string }) => err)
      expect(r.code, args[0]).toBe(1)
      expect(r.stderr).toBe(`flaggate: ${gw.url} is a gateway's public listener, not its admin API (the request went to upstream "core"): point --admin or FLAGGATE_ADMIN_URL at admin.listen (default http://127.0.0.1:8081)\n`)
    }
  })

  it('unblock of an unknown ID points at `flaggate blocks`', async () => {
    const r = await run({ FLAGGATE_ADMIN_TOKEN: TOKEN }, 'unblock', 'r-nosuchblock')
    expect(r).toMatchObject({ code: 1, stderr: 'flaggate: no block r-nosuchblock (it may have expired); `flaggate blocks` lists the blocks in force\n' })
  })

  it('purge and block without a shared store say they reached this gateway only', async () => {
    const purge = await run({ FLAGGATE_ADMIN_TOKEN: TOKEN }, 'purge')
    expect(purge.code).toBe(0)
    expect(purge.stdout).toBe('purged 0 cached document(s) on this gateway only (no shared store: purge each replica)\n')
    const block = await run({ FLAGGATE_ADMIN_TOKEN: TOKEN }, 'block', '--ip', '192.0.2.77', '--ttl', '1m', '--reason', 'cli test')
    expect(block.code).toBe(0)
    expect(block.stdout).toContain('on this gateway only')
    expect(block.stdout).not.toContain('every replica')
  })
})

describe('a placeholder admin token', () => {
  // the Kubernetes ConfigMap's policy with the Secret as shipped: `validate` and `serve` both refuse it
  const configMap = parseYaml(readFileSync('deploy/k8s/configmap.yaml', 'utf8')) as { data: Record<string, string> }
  const shipped = /admin-token: (\S+)/.exec(readFileSync('deploy/k8s/secret.yaml', 'utf8'))![1]!
  const file = tempPolicyFile(configMap.data['gateway.yaml']!)
  const env = { ...ENV, FLAGGATE_ADMIN_TOKEN: shipped, REDIS_URL: 'redis://127.0.0.1:9', FLAGGATE_PROBE_CLIENT_KEY: 'k', FLAGGATE_PROBE_SERVER_KEY: 'ser.k' }
  const message = /gateway\.yaml:\d+:\d+: admin\.token: `token` is the placeholder shipped in deploy\/k8s\/secret\.yaml: set a random token, e\.g\. `openssl rand -hex 24`\n/

  it('`flaggate validate` names it and exits 1', () => {
    const r = spawnSync(process.execPath, ['dist/cli.js', 'validate', file], { encoding: 'utf8', env, timeout: 20_000 })
    expect(r.status, r.stderr).toBe(1)
    expect(r.stderr).toMatch(message)
    expect(r.stderr).not.toMatch(STACK)
  })

  it('`flaggate serve` does not start with it', () => {
    const r = spawnSync(process.execPath, ['dist/cli.js', 'serve', '--config', file], { encoding: 'utf8', env, timeout: 20_000 })
    expect(r.status, r.stderr).toBe(1)
    expect(r.stderr).toMatch(/^flaggate: the policy file is invalid, not starting:\n/)
    expect(r.stderr).toMatch(message)
    expect(r.stderr).not.toMatch(STACK)
  })
})
