-- transfer.lua: move an active conversation and its capacity to another member, atomically (R18, R20).
-- KEYS[1] conversation hash  KEYS[2] its message stream  KEYS[3] status hash  KEYS[4] route hash
-- KEYS[5] capacity hash  KEYS[6] load hash  KEYS[7] held zset  KEYS[8] display names
-- KEYS[9] the conversation's transfer list  KEYS[10] assignment log  KEYS[11] sticky hash
-- KEYS[12] last-assignment hash
-- ARGV[1] conv id  ARGV[2] from  ARGV[3] to  ARGV[4] reason  ARGV[5] now (ms)  ARGV[6] channel prefix
-- ARGV[7] text of the system note
-- Returns {"ok", note_seq} | {"err", code}.
local conv, from, to, reason, now, chp = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local c = redis.call('HMGET', KEYS[1], 'state', 'member', 'buyer', 'store', 'assigned_at', 'queue')
if not c[1] then return {'err', 'not_found'} end
if c[2] ~= from or c[1] ~= 'active' then
  if c[1] == 'closed' and c[2] == from then return {'err', 'conv_closed'} end
  return {'err', 'not_holder'}
end
if to == from then return {'err', 'self_transfer'} end
if not redis.call('HGET', KEYS[8], to) then return {'err', 'not_found'} end
local st = redis.call('HGET', KEYS[3], to) or 'offline'
if st == 'idle' then return {'err', 'target_idle'} end
if st ~= 'online' then return {'err', 'target_offline'} end
if not inroute(redis.call('HGET', KEYS[4], to), 's:' .. c[4]) then return {'err', 'target_cannot_serve'} end
local cap = num(redis.call('HGET', KEYS[5], to))
if num(redis.call('HGET', KEYS[6], to)) >= cap then return {'err', 'target_full'} end
-- move the conversation and its capacity in one step
local lf = redis.call('HINCRBY', KEYS[6], from, -1)
local lt = redis.call('HINCRBY', KEYS[6], to, 1)
redis.call('ZREM', KEYS[7], from .. '\0' .. conv)
redis.call('ZADD', KEYS[7], 0, to .. '\0' .. conv)
redis.call('HINCRBY', KEYS[1], 'service_ms', tonumber(now) - num(c[5]))
redis.call('HINCRBY', KEYS[1], 'transfers', 1)
redis.call('HSET', KEYS[1], 'member', to, 'assigned_at', now, 'reason', 'transfer')
sticky_push(KEYS[11], c[3], to, now)
redis.call('HSET', KEYS[12], to, now)
redis.call('RPUSH', KEYS[9], cjson.encode({from = from, to = to, reason = reason, ts = tonumber(now), kind = 'member'}))
redis.call('XADD', KEYS[10], 'MAXLEN', '~', 100000, '*', 'conv', conv, 'member', to, 'reason', 'transfer',
           'load', lt, 'cap', cap, 'ts', now, 'from', from)
local fname = redis.call('HGET', KEYS[8], from) or from
local tname = redis.call('HGET', KEYS[8], to)
-- the system note is kind "note": members see it, buyers never do
local seq = append_msg(KEYS[1], KEYS[2], 'note', 'system', 'system', ARGV[7], now, 'xfer:' .. now)
local note = cmsgpack.pack({type = 'msg', data = msg_event(conv, seq, 'note', 'system', 'system', ARGV[7], now, 'xfer:' .. now, c[4])})
redis.call('PUBLISH', chp .. 'm:' .. to, note)
redis.call('PUBLISH', chp .. 'b:' .. c[3], note)
pub(chp .. 'm:' .. from, 'conv.removed', {conv = conv, reason = 'transferred', to = to})
pub(chp .. 'm:' .. to, 'conv.assigned', {conv = conv, store = c[4], buyer = c[3], reason = 'transfer',
    candidates = {}, seq = seq, queue = c[6] or '', from = from, transfer = {from = from, from_name = fname, reason = reason}})
pub(chp .. 'b:' .. c[3], 'conv.state', {conv = conv, state = 'active', agent = tname})
pub(chp .. 'dash', 'load', {member = from, load = lf, cap = num(redis.call('HGET', KEYS[5], from))})
pub(chp .. 'dash', 'load', {member = to, load = lt, cap = cap})
return {'ok', seq}
