-- Ends waiters: KEYS[i] is a sorted set of waiters (waiters.lua), ARGV[i] the member
-- that ends in it. One call for a whole loop turn's ends, so the hub parses one reply
-- instead of one per end. Answers how many were still there.
local ended = 0
for i, key in ipairs(KEYS) do
  ended = ended + redis.call('zrem', key, ARGV[i])
end
return ended
