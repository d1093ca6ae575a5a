-- status.lua: suspend/resume toggle (R5, R6, R8, R9). The choice is kept for the next connection.
-- KEYS[1] status hash  KEYS[2] want hash  KEYS[3] conns zset  KEYS[4] display names
-- ARGV[1] member  ARGV[2] "online"|"idle"|"toggle"  ARGV[3] channel prefix  ARGV[4] "1" if main account
-- Returns {"ok", old, new} | {"err", code}.
local m = ARGV[1]
local cur = redis.call('HGET', KEYS[2], m) or 'online'
local new = ARGV[2]
if new == 'toggle' then new = (cur == 'idle') and 'online' or 'idle' end
if new == 'idle' and ARGV[4] == '1' then return {'err', 'cannot_suspend_main'} end
redis.call('HSET', KEYS[2], m, new)
local old = redis.call('HGET', KEYS[1], m) or 'offline'
if #redis.call('ZRANGEBYLEX', KEYS[3], '[' .. m .. '\0', '[' .. m .. '\0\255', 'LIMIT', 0, 1) > 0 and old ~= new then
  redis.call('HSET', KEYS[1], m, new)
  pub(ARGV[3] .. 'presence', 'presence', {member = m, status = new, name = redis.call('HGET', KEYS[4], m) or m})
  return {'ok', old, new}
end
return {'ok', old, old}
