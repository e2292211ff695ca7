/**
 * Once per test run: compile src/ to dist/ (tests that spawn gateway processes run dist/cli.js,
 * so it must match the sources) and start one private redis-server shared by the suite; each test
 * uses its own key prefix, and nobody flushes it.
 */
import { execFileSync } from 'node:child_process'
import type { TestProject } from 'vitest/node'
import type {} from 'vitest'
import { redisServerAvailable, startPrivateRedis, type PrivateRedis } from './redis-server.js'

let redis: PrivateRedis | undefined

declare module 'vitest' {
  export interface ProvidedContext { redisUrl: string }
}

export async function setup (project: TestProject): Promise<void> {
  execFileSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.json'], { stdio: 'inherit' })
  if (!redisServerAvailable()) throw new Error('redis-server is not installed: run `apt-get install -y redis-server` (the suite starts its own private instance)')
  redis = await startPrivateRedis()
  project.provide('redisUrl', redis.url)
}

export async function teardown (): Promise<void> {
  await redis?.stop()
}
