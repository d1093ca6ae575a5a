-- restart.lua: the member who closed a conversation reopens it, if capacity allows (R16, R14).
-- KEYS[1] conversation hash  KEYS[2] load hash  KEYS[3] capacity hash  KEYS[4] held zset
-- KEYS[5] the member's closed zset  KEYS[6] the buyer's open-conversation key  KEYS[7] display names
-- ARGV[1] conv id  ARGV[2] member  ARGV[3] now (ms)  ARGV[4] channel prefix
-- Returns {"ok"} | {"err", code}.
local conv, m, now, chp = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local c = redis.call('HMGET', KEYS[1], 'state', 'member', 'buyer', 'store', 'seq', 'queue')
if not c[1] then return {'err', 'not_found'} end
if c[2] ~= m then return {'err', 'not_holder'} end
if c[1] ~= 'closed' then return {'err', 'conv_not_closed'} end
local open = redis.call('GET', KEYS[6])
if open and open ~= conv then return {'err', 'conflict'} end
if num(redis.call('HGET', KEYS[2], m)) >= num(redis.call('HGET', KEYS[3], m)) then return {'err', 'at_capacity'} end
redis.call('HSET', KEYS[1], 'state', 'active', 'assigned_at', now, 'closed_at', '', 'reason', 'restart')
redis.call('HINCRBY', KEYS[1], 'restarts', 1)
local load = redis.call('HINCRBY', KEYS[2], m, 1)
redis.call('ZADD', KEYS[4], 0, m .. '\0' .. conv)
redis.call('ZREM', KEYS[5], conv)
redis.call('SET', KEYS[6], conv)
pub(chp .. 'm:' .. m, 'conv.assigned', {conv = conv, store = c[4], buyer = c[3], reason = 'restart',
    candidates = {}, seq = num(c[5]), queue = c[6] or '', from = ''})
pub(chp .. 'b:' .. c[3], 'conv.state', {conv = conv, state = 'active', agent = redis.call('HGET', KEYS[7], m) or m})
pub(chp .. 'dash', 'load', {member = m, load = load, cap = num(redis.call('HGET', KEYS[3], m))})
return {'ok'}
