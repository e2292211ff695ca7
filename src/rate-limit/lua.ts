import { EPS_MS } from './algorithm.js'

/**
 * The Redis side of {@link decideBuckets}: one EVALSHA for all the buckets of a request.
 *
 * Time comes from Redis `TIME`, not from the caller: every replica then measures every bucket
 * on the same clock, so a replica whose clock is 2 s ahead cannot refill buckets 2 s early (with
 * caller time, skew between replicas turns directly into extra tokens or false refusals). In a
 * cluster a bucket always lives on one node, so it still sees one clock. Redis ≥ 5 replicates
 * scripts by effects, which is what makes writing after TIME legal. `ARGV[1]` may carry an
 * explicit time: only the tests use it, to run the memory store's exact table against Lua.
 *
 * TATs are stored with `%.17g`, which round-trips a double exactly, so Lua and JavaScript compute
 * on bit-identical numbers. Each key expires (PX) when its bucket is full again.
 *
 * One call may decide `count` requests for the same buckets (fallback.ts coalesces the requests
 * of one client that arrive while its previous call is in flight): they are decided one after
 * the other at the same `now`, exactly as `count` calls in a row would be, and each bucket is
 * written once with its final TAT.
 *
 * The script spends; it does not describe. It returns the instant and each bucket's TAT as they
 * were before the call, and the caller replays the same decisions with decideBuckets
 * (redis-store.ts) to learn each request's answer and headers: the same arithmetic on the same
 * doubles, so the same answers, while Redis builds and ioredis parses three strings instead of
 * nine numbers per request (a coalesced call carries a dozen requests or more).
 *
 * KEYS: the buckets. ARGV: now-or-empty, count, then per bucket: intervalMs, toleranceMs, shadow
 * (0/1). Reply: [now as %.17g, then per bucket its TAT before the call, or nil].
 */
export const TOKEN_BUCKET_LUA = `
if redis.replicate_commands then pcall(redis.replicate_commands) end
local now = tonumber(ARGV[1])
-- A caller's clock (tests) runs apart from Redis' real-time expiry; a key kept longer decides
-- exactly as an expired one (a past TAT reads as a full bucket), so keep it a minute more.
local linger = 0
if now then linger = 60000 end
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
end
local eps = ${EPS_MS}
local n = #KEYS
local count = tonumber(ARGV[2])
local out = { string.format('%.17g', now) }
local tat, T, tau, shadow, dirty = {}, {}, {}, {}, {}
for i = 1, n do
  T[i] = tonumber(ARGV[3 * i])
  tau[i] = tonumber(ARGV[3 * i + 1])
  shadow[i] = ARGV[3 * i + 2] == '1'
  local stored = redis.call('GET', KEYS[i])
  out[i + 1] = stored
  tat[i] = tonumber(stored)
end
local nxt, conf = {}, {}
for r = 1, count do
  local allowed = true
  for i = 1, n do
    if tat[i] == nil or tat[i] < now then tat[i] = now end
    nxt[i] = tat[i] + T[i]
    conf[i] = nxt[i] - tau[i] - now <= eps
    if not conf[i] and not shadow[i] then allowed = false end
  end
  if allowed then
    for i = 1, n do
      if conf[i] then tat[i] = nxt[i]; dirty[i] = true end
    end
  end
end
for i = 1, n do
  if dirty[i] then redis.call('SET', KEYS[i], string.format('%.17g', tat[i]), 'PX', math.ceil(tat[i] - now) + linger) end
end
return out
`
