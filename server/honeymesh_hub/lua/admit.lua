-- limits' own sliding-window-counter acquire (limits/resources/redis/lua_scripts/
-- acquire_sliding_window.lua) over several windows at once, on limits' key layout:
-- every window is tested before any is charged. tests/integration/test_admit_contract.py
-- holds it to limits' SlidingWindowCounterRateLimiter on RedisStorage.
--
-- KEYS: (previous, current) window keys per limit.
-- ARGV: per limit: amount, expiry in seconds, cost. A cost of 0 only reads the window.
-- Returns {ok, the first refusing limit's index (0: none), then per limit: previous
-- count, previous pttl, current count, current pttl}.
local n = #KEYS / 2
local ok = 1
local refused = 0
local seen = {}
for i = 1, n do
  local prev, cur = KEYS[2 * i - 1], KEYS[2 * i]
  local amount = tonumber(ARGV[3 * i - 2])
  local expiry = tonumber(ARGV[3 * i - 1]) * 1000
  local cost = tonumber(ARGV[3 * i])
  local cur_ttl = tonumber(redis.call('pttl', cur))
  if cur_ttl > 0 and cur_ttl < expiry then
    redis.call('rename', cur, prev)
    redis.call('set', cur, 0, 'PX', cur_ttl + expiry)
  end
  local pc = tonumber(redis.call('get', prev)) or 0
  local pt = math.max(tonumber(redis.call('pttl', prev)), 0)
  local cc = tonumber(redis.call('get', cur)) or 0
  local ct = math.max(tonumber(redis.call('pttl', cur)), 0)
  if cost > 0 and (cost > amount or math.floor(pc * pt / expiry) + cc + cost > amount) then
    if ok == 1 then refused = i end
    ok = 0
  end
  seen[i] = {pc, pt, cc, ct}
end
if ok == 1 then
  for i = 1, n do
    local cur = KEYS[2 * i]
    local expiry = tonumber(ARGV[3 * i - 1]) * 1000
    local cost = tonumber(ARGV[3 * i])
    if cost > 0 then
      if redis.call('exists', cur) == 1 then
        redis.call('incrby', cur, cost)
      else
        redis.call('set', cur, cost, 'PX', expiry * 2)
        seen[i][4] = expiry * 2
      end
      seen[i][3] = seen[i][3] + cost
    end
  end
end
local out = {ok, refused}
for i = 1, n do
  for j = 1, 4 do out[#out + 1] = seen[i][j] end
end
return out
