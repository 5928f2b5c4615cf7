-- KEYS[1]: a sorted set of waiters scored by deadline (ms on Redis' clock).
-- ARGV: cap, member (unique per waiter), how long it may wait in ms, then pairs of
-- (member, ms left) of this process's live waiters, which an outage may have kept
-- from Redis: they count again as soon as Redis is back. 1 admitted, 0 full.
local t = redis.call('time')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i = 4, #ARGV, 2 do
  redis.call('zadd', KEYS[1], now + tonumber(ARGV[i + 1]), ARGV[i])
end
redis.call('zremrangebyscore', KEYS[1], '-inf', now)
if redis.call('zcard', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
local deadline = now + tonumber(ARGV[3])
redis.call('zadd', KEYS[1], deadline, ARGV[2])
local last = redis.call('zrange', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('pexpireat', KEYS[1], math.max(deadline, tonumber(last[2])))
return 1
