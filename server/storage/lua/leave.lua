-- leave.lua: a queued buyer leaves (closed the page, or gave up) before being served (R26 "left while queued").
-- KEYS[1] conversation hash  KEYS[2] its queue zset  KEYS[3] queue-version hash  KEYS[4] buyer's open key
-- ARGV[1] conv id  ARGV[2] buyer  ARGV[3] now (ms)  ARGV[4] channel prefix
-- Returns {"ok", queue} | {"err", code}.
local conv, chp = ARGV[1], ARGV[4]
local c = redis.call('HMGET', KEYS[1], 'state', 'buyer', 'queue')
if not c[1] or c[2] ~= ARGV[2] then return {'err', 'not_found'} end
if c[1] ~= 'queued' then return {'err', 'conflict'} end
local r = redis.call('ZRANK', KEYS[2], conv)
if r then
  redis.call('ZREM', KEYS[2], conv)
  queue_moved(chp, KEYS[3], c[3], r)
  queue_info(chp, KEYS[2], c[3])
end
redis.call('HSET', KEYS[1], 'state', 'closed', 'closed_at', ARGV[3], 'abandoned', '1')
if redis.call('GET', KEYS[4]) == conv then redis.call('DEL', KEYS[4]) end
pub(chp .. 'b:' .. c[2], 'conv.state', {conv = conv, state = 'closed'})
return {'ok', c[3]}
