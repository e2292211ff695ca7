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
 * KEYS: the buckets. ARGV: now-or-empty, count, then per bucket: intervalMs, toleranceMs, shadow
 * (0/1). Reply: per request [allowed, then per bucket: allowed, remaining, retryAfterMs, resetMs].
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
local tat, T, tau, shadow, dirty = {}, {}, {}, {}, {}
for i = 1, n do
  T[i] = tonumber(ARGV[3 * i])
  tau[i] = tonumber(ARGV[3 * i + 1])
  shadow[i] = ARGV[3 * i + 2] == '1'
  tat[i] = tonumber(redis.call('GET', KEYS[i]))
end
local out = {}
local nxt, conf = {}, {}
for r = 1, count do
  local allowed = true
  for i = 1, n do
    if tat[i] == nil or tat[i] < now then tat[i] = now end
    nxt[i] = tat[i] + T[i]
    conf[i] = nxt[i] - tau[i] - now <= eps
    if not conf[i] and not shadow[i] then allowed = false end
  end
  out[#out + 1] = allowed and 1 or 0
  for i = 1, n do
    local spend = allowed and conf[i]
    if spend then tat[i] = nxt[i]; dirty[i] = true end
    local remaining = math.max(0, math.floor((now + tau[i] - tat[i] + eps) / T[i]))
    local retry = 0
    if not conf[i] then retry = math.ceil(nxt[i] - tau[i] - now) end
    out[#out + 1] = conf[i] and 1 or 0
    out[#out + 1] = remaining
    out[#out + 1] = retry
    out[#out + 1] = math.ceil(tat[i] - now)
  end
end
for i = 1, n do
  if dirty[i] then redis.call('SET', KEYS[i], string.format('%.17g', tat[i]), 'PX', math.ceil(tat[i] - now) + linger) end
end
return out
`
