/**
 * The fleet channels on the shared Redis: a test publishes (a purge, a block) only once every
 * replica listens, or the message is lost and the test measures nothing.
 */
import type { Redis } from 'ioredis'
import { setTimeout as sleep } from 'node:timers/promises'

/** true once each of `channels` has `n` subscribers; false after `timeoutMs` without. */
export async function subscribed (redis: Redis, channels: string[], n: number, timeoutMs = 10_000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const counts = await redis.pubsub('NUMSUB', ...channels) as Array<string | number>
    if (channels.every((_c, i) => Number(counts[2 * i + 1]) === n)) return true
    if (Date.now() > deadline) return false
    await sleep(50)
  }
}
