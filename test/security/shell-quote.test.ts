/**
 * Attack 4: `flaggate top` prints a ready-to-paste `flaggate block` command for its busiest
 * client, whose key (and, behind a trusted proxy, address) the client chose. Pasted, a key
 * `x';touch …;echo '` ran a command in the on-call engineer's shell. The printed command is
 * run here through `bash -c` in a temp dir, with a stub `flaggate` on PATH that records its
 * arguments: no file may appear, and the stub must receive the client string as one word.
 */
import { execFile, execFileSync } from 'node:child_process'
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { shellQuote } from '../../src/shared/shell-quote.js'
import { startRecordingUpstream, type RecordingUpstream } from '../support/recording-upstream.js'
import { policyYaml, startTestGateway, type TestGateway } from '../support/gateway.js'
import { from, TRUST_LOOPBACK } from './support.js'

const run = promisify(execFile)

const HOSTILE = [
  "x';touch pwned-1;echo '",
  'x$(touch pwned-2)',
  'x`touch pwned-3`',
  "x'\\''; touch pwned-4; echo '",
  'x" ; touch pwned-5 ; echo "',
  "x';touch pwned-6 #",
  'x\\\';touch pwned-7;#'
]

/** Runs `command` with bash in a fresh directory whose PATH starts with a recording `flaggate`. */
function pasteInShell (command: string): { dir: string; args: string[] } {
  const dir = mkdtempSync(join(tmpdir(), 'flaggate-paste-'))
  const bin = mkdtempSync(join(tmpdir(), 'flaggate-bin-'))
  writeFileSync(join(bin, 'flaggate'), '#!/bin/bash\nfor a in "$@"; do printf "%s\\0" "$a"; done > "$ARGS_FILE"\n')
  chmodSync(join(bin, 'flaggate'), 0o755)
  const argsFile = join(bin, 'args')
  try {
    execFileSync('bash', ['-c', command], { cwd: dir, env: { PATH: `${bin}:/usr/bin:/bin`, ARGS_FILE: argsFile }, stdio: 'pipe' })
  } catch {}
  const args = existsSync(argsFile) ? readFileSync(argsFile, 'utf8').split('\0').slice(0, -1) : []
  return { dir, args }
}

describe('shellQuote', () => {
  it.each(HOSTILE)('%s is one word to bash, runs nothing', (text) => {
    const { dir, args } = pasteInShell(`flaggate block --client ${shellQuote(text)}`)
    expect(readdirSync(dir)).toEqual([])
    expect(args).toEqual(['block', '--client', text])
  })
})

describe('attack 4: flaggate top prints a command safe to paste', () => {
  let up: RecordingUpstream
  let gw: TestGateway
  beforeAll(async () => {
    up = await startRecordingUpstream()
    gw = await startTestGateway(policyYaml({ coreUrl: up.url, server: TRUST_LOOPBACK }))
  })
  afterAll(async () => { await gw?.close(); await up?.close() })

  it.each(HOSTILE.slice(0, 3))('a client with the key %s', async (key) => {
    // the hostile client is the busiest one
    for (let i = 0; i < 30; i++) await from(gw.url, '/api/v1/flags/', '198.51.100.4', { key })
    const { stdout } = await run(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'top', '--admin', gw.adminUrl], { env: { ...process.env, FLAGGATE_ADMIN_TOKEN: '' } })
    const line = stdout.split('\n').find((l) => l.trim().startsWith('flaggate block'))
    expect(line, stdout).toBeDefined()
    const { dir, args } = pasteInShell(line!.trim())
    expect(readdirSync(dir)).toEqual([])
    expect(args.slice(0, 3)).toEqual(['block', '--client', `${key}@198.51.100.4`])
    up.reset()
    await gw.close()
    gw = await startTestGateway(policyYaml({ coreUrl: up.url, server: TRUST_LOOPBACK }))
  })
})
