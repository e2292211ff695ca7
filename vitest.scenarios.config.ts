import { defineConfig } from 'vitest/config'

// Long scenarios kept out of `npm test` (each takes minutes): `npm run scenario:redis-topologies`
export default defineConfig({
  test: {
    include: ['test/**/*.scenario.ts'],
    testTimeout: 180_000,
    hookTimeout: 60_000,
    pool: 'forks',
    globalSetup: ['test/support/global-setup.ts']
  }
})
