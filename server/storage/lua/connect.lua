-- connect.lua: a member's connection arrives; the member is online/idle while any connection lives (R10).
-- KEYS[1] conns zset  KEYS[2] this node's conns set  KEYS[3] status hash  KEYS[4] want hash
-- KEYS[5] display names
-- ARGV[1] member  ARGV[2] node  ARGV[3] conn id  ARGV[4] requested status ("" = last chosen)
-- ARGV[5] channel prefix  ARGV[6] "1" if main account (never idle, R8)
-- Returns {old_status, new_status}.
local m = ARGV[1]
redis.call('ZADD', KEYS[1], 0, m .. '\0' .. ARGV[2] .. '\0' .. ARGV[3])
redis.call('SADD', KEYS[2], m .. '\0' .. ARGV[3])
local w = ARGV[4]
if w == '' then w = redis.call('HGET', KEYS[4], m) or 'online' end
if ARGV[6] == '1' then w = 'online' end
redis.call('HSET', KEYS[4], m, w)
local old = redis.call('HGET', KEYS[3], m) or 'offline'
if old ~= w then
  redis.call('HSET', KEYS[3], m, w)
  pub(ARGV[5] .. 'presence', 'presence', {member = m, status = w, name = redis.call('HGET', KEYS[5], m) or m})
end
return {old, w}
