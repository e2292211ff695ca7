import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // guards against a wedged test, not measures: starting gateway processes on a machine whose
    // cores are busy elsewhere can take tens of seconds, and that is not what any test asserts
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // vitest's default on a 2-core machine is one worker; most tests wait on sockets and timers,
    // so two halve the wall time (290 s → 170 s here) and stay well inside the 5-minute budget
    maxWorkers: 2,
    globalSetup: ['test/support/global-setup.ts']
  }
})
