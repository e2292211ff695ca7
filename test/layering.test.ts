/**
 * The layers of src/ (described in .dependency-cruiser.cjs): no import cycle, no import from a
 * lower layer up to a higher one, no two capabilities importing each other. Runs dependency-cruiser
 * as `npm run lint:deps` does, so `npm test` (and CI, which reads vitest's report) keeps them.
 */
import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'

const root = fileURLToPath(new URL('..', import.meta.url))

describe('layering of src/', () => {
  it('dependency-cruiser finds no violation', async () => {
    const out = await new Promise<{ code: number; text: string }>((resolve) => {
      execFile(process.execPath, ['node_modules/dependency-cruiser/bin/dependency-cruise.mjs', 'src', '--config', '.dependency-cruiser.cjs', '--output-type', 'err'],
        { cwd: root, timeout: 120_000 },
        (err, stdout, stderr) => { resolve({ code: err === null ? 0 : (typeof err.code === 'number' ? err.code : 1), text: stdout + stderr }) })
    })
    expect(out.text).toMatch(/no dependency violations found/)
    expect(out.code).toBe(0)
  }, 150_000)
})
