-- append.lua: store one message in a conversation, then publish it (R17). Idempotent by client id.
-- KEYS[1] conversation hash  KEYS[2] its message stream  KEYS[3] its client-id hash
-- ARGV[1] conv id  ARGV[2] sender kind (buyer|member)  ARGV[3] sender id  ARGV[4] sender display name
-- ARGV[5] text  ARGV[6] now (ms)  ARGV[7] client id  ARGV[8] channel prefix "kefu:{s}:ch:"
-- Returns {"ok", seq} | {"dup", seq} | {"err", code}.
local conv, kind, from = ARGV[1], ARGV[2], ARGV[3]
local dup = redis.call('HGET', KEYS[3], from .. ':' .. ARGV[7])
if dup then return {'dup', tonumber(dup)} end
local c = redis.call('HMGET', KEYS[1], 'state', 'buyer', 'member', 'store', 'kind', 'a', 'b', 'first_buyer', 'first_resp')
local state, buyer, holder, store, ckind = c[1], c[2], c[3], c[4], c[5]
if not state then return {'err', 'not_found'} end
local chp = ARGV[8]
local targets = {}
if ckind == 'internal' then
  if from ~= c[6] and from ~= c[7] then return {'err', 'not_found'} end
  targets = {chp .. 'm:' .. c[6], chp .. 'm:' .. c[7]}
  store = ''
elseif kind == 'buyer' then
  if from ~= buyer then return {'err', 'not_found'} end
  if state == 'closed' then return {'err', 'conv_closed'} end
  targets = {chp .. 'b:' .. buyer}
  if holder and holder ~= '' then table.insert(targets, chp .. 'm:' .. holder) end
else
  if state ~= 'active' or holder ~= from then
    if state == 'closed' and holder == from then return {'err', 'conv_closed'} end
    return {'err', 'not_holder'}
  end
  targets = {chp .. 'b:' .. buyer, chp .. 'm:' .. holder}
end
local now = ARGV[6]
local seq = append_msg(KEYS[1], KEYS[2], kind, from, ARGV[4], ARGV[5], now, ARGV[7])
redis.call('HSET', KEYS[3], from .. ':' .. ARGV[7], seq)
-- the sender has read everything up to its own message (each member has its own mark)
redis.call('HSET', KEYS[1], kind == 'buyer' and 'bread' or ('mread:' .. from), seq)
-- first response time (R16): first member reply after the buyer's first message; never reset.
if ckind ~= 'internal' then
  if kind == 'buyer' and not c[8] then
    redis.call('HSET', KEYS[1], 'first_buyer', now)
  elseif kind == 'member' and c[8] and not c[9] then
    redis.call('HSET', KEYS[1], 'first_resp', now, 'first_resp_by', from)
  end
end
local ev = cmsgpack.pack({type = 'msg', data = msg_event(conv, seq, kind, from, ARGV[4], ARGV[5], now, ARGV[7], store or '')})
for _, ch in ipairs(targets) do redis.call('PUBLISH', ch, ev) end
return {'ok', seq}
