-- close.lua: the holder closes a conversation; capacity frees at once (R16, R14).
-- KEYS[1] conversation hash  KEYS[2] load hash  KEYS[3] held zset  KEYS[4] the member's closed zset
-- KEYS[5] the buyer's open-conversation key  KEYS[6] capacity hash
-- ARGV[1] conv id  ARGV[2] member  ARGV[3] now (ms)  ARGV[4] channel prefix
-- Returns {"ok", queue} | {"err", code}.
local conv, m, now, chp = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local c = redis.call('HMGET', KEYS[1], 'state', 'member', 'buyer', 'assigned_at', 'queue')
if not c[1] then return {'err', 'not_found'} end
if c[2] ~= m then return {'err', 'not_holder'} end
if c[1] == 'closed' then return {'err', 'conv_closed'} end
if c[1] ~= 'active' then return {'err', 'not_holder'} end
redis.call('HSET', KEYS[1], 'state', 'closed', 'closed_at', now, 'closed_by', m)
redis.call('HINCRBY', KEYS[1], 'service_ms', tonumber(now) - num(c[4]))
local load = redis.call('HINCRBY', KEYS[2], m, -1)
redis.call('ZREM', KEYS[3], m .. '\0' .. conv)
redis.call('ZADD', KEYS[4], now, conv)
if redis.call('GET', KEYS[5]) == conv then redis.call('DEL', KEYS[5]) end
pub(chp .. 'b:' .. c[3], 'conv.state', {conv = conv, state = 'closed'})
pub(chp .. 'm:' .. m, 'conv.state', {conv = conv, state = 'closed'})
pub(chp .. 'dash', 'load', {member = m, load = load, cap = num(redis.call('HGET', KEYS[6], m))})
return {'ok', c[5] or ''}
