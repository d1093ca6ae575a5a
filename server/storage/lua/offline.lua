-- offline.lua: the grace period passed; if the member still has no connection it goes offline (R10, R15).
-- KEYS[1] conns zset  KEYS[2] status hash  KEYS[3] held zset  KEYS[4] display names
-- ARGV[1] member  ARGV[2] channel prefix
-- Returns {"offline", conv...} (the conversations it still holds) | {"connected"} | {"already"}.
local m = ARGV[1]
if #redis.call('ZRANGEBYLEX', KEYS[1], '[' .. m .. '\0', '[' .. m .. '\0\255', 'LIMIT', 0, 1) > 0 then return {'connected'} end
local st = redis.call('HGET', KEYS[2], m)
if st == 'offline' or not st then return {'already'} end
redis.call('HSET', KEYS[2], m, 'offline')
pub(ARGV[2] .. 'presence', 'presence', {member = m, status = 'offline', name = redis.call('HGET', KEYS[4], m) or m})
local out = {'offline'}
for _, e in ipairs(redis.call('ZRANGEBYLEX', KEYS[3], '[' .. m .. '\0', '[' .. m .. '\0\255')) do
  table.insert(out, string.sub(e, #m + 2))
end
return out
