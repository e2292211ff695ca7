/**
 * Token buckets (GCRA), decided in one step for all the limits of a request: the rate-limit step's
 * pure core, one mechanism per file (algorithm.ts, lua.ts, memory-store.ts, redis-store.ts,
 * limiter.ts, fallback.ts, describe.ts), re-exported here as one surface.
 *
 * Pure: no fastify. The clock, the Redis store and the limits are arguments, so the same
 * arithmetic runs under a test clock (memory) and inside Redis (Lua), and one test table proves
 * both give the same answers.
 *
 * Why GCRA and our own Lua instead of rate-limiter-flexible: RLF has no
 * token bucket (its limiters are fixed windows), RateLimiterRedis floors durations to whole
 * seconds (so `3/s` with burst 10 cannot be expressed, and a sub-second duration becomes a key
 * that never expires), and one RLF limiter is one key and one round trip: a route with two limits
 * would cost two round trips and could spend a token of the first limit for a request the second
 * one refuses. What no library does here is "several buckets, all-or-nothing, one round trip",
 * so that is the only part written by hand (about 40 lines of Lua mirrored by the same lines of
 * TypeScript); ioredis `defineCommand` gives EVALSHA with a transparent NOSCRIPT fallback and
 * lru-cache bounds the in-memory state.
 *
 * GCRA in one paragraph: a bucket is one number, its theoretical arrival time (TAT). With
 * interval `T = 1000 / rate` ms per token and tolerance `tau = burst * T`, the bucket holds
 * `(now + tau - TAT) / T` tokens (TAT ≤ now means full). Taking one token moves TAT to
 * `max(TAT, now) + T`; it is allowed when the new TAT is at most `now + tau`. A full bucket and a
 * missing bucket are the same thing, so a bucket's state can be dropped (Redis PEXPIRE, LRU TTL)
 * exactly when it is full again.
 */
export type { Clock } from '../shared/clock.js'
export * from './algorithm.js'
export * from './lua.js'
export * from './memory-store.js'
export * from './redis-store.js'
export * from './limiter.js'
export * from './redis-limiter.js'
export * from './describe.js'
