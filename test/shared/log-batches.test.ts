/**
 * The logger batches lines into Buffers (shared/logger.ts LineBatcher). Whatever the lines hold,
 * every one reaches stdout whole, once, in order: multi-byte text that straddles a batch's end, a
 * line longer than a batch, access lines and pino's own lines mixed, and what is still batched
 * when the process exits.
 */
import { spawn } from 'node:child_process'
import { describe, expect, it } from 'vitest'

const SCRIPT = `
import { createLogger, lineSinkOf } from './src/shared/logger.ts'
const logger = createLogger({ LOG_LEVEL: 'info' })
const sink = lineSinkOf(logger)
for (let i = 0; i < 5000; i++) {
  if (i % 7 === 0) logger.info({ i, text: 'héllo – ✓ 𝄞'.repeat(i % 50) }, 'pino')
  else sink(JSON.stringify({ i, text: '€'.repeat(i % 300) }) + '\\n')
  if (i === 2500) logger.info({ i, big: 'x'.repeat(200 * 1024) + '✓' }, 'big')
}
process.exit(0)
`

describe('log batches', () => {
  it('every line arrives whole, once and in order, including at exit', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', SCRIPT], { stdio: ['ignore', 'pipe', 'inherit'] })
    const chunks: Buffer[] = []
    child.stdout.on('data', (c: Buffer) => chunks.push(c))
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve))
    await new Promise<void>((resolve) => { if (child.stdout.readableEnded) resolve(); else child.stdout.once('end', () => resolve()) })
    expect(code).toBe(0)
    const lines = Buffer.concat(chunks).toString('utf8').split('\n').filter((l) => l !== '')
    const seen = lines.map((l) => JSON.parse(l) as { i: number; text?: string; big?: string; msg?: string })
    const order = seen.map((o) => o.i)
    expect(order).toEqual([...Array(5000).keys()].flatMap((i) => i === 2500 ? [i, i] : [i]))
    for (const o of seen) {
      if (o.big !== undefined) { expect(o.big.length).toBe(200 * 1024 + 1); continue }
      expect(o.text).toBe(o.msg === 'pino' ? 'héllo – ✓ 𝄞'.repeat(o.i % 50) : '€'.repeat(o.i % 300))
    }
  })
})
