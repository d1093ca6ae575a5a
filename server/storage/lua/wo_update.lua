-- wo_update.lua: apply one checked change to a work order — status, handler, comment — atomically (R24).
-- work_orders.py decides (permissions, legal transitions) on a snapshot; this script applies the change
-- only if status and handler are still those of the snapshot, so lists, counts and routing never drift.
-- KEYS[1] work-order hash  KEYS[2] its history list  KEYS[3] old handler's list  KEYS[4] old handler's to-do
-- KEYS[5] new handler's list  KEYS[6] new handler's to-do  KEYS[7] the buyer's open work orders (hash
-- wo -> "member|ms")  KEYS[8] work-order routing hash (buyer -> member; dispatch.lua reads it, R12)
-- ARGV[1] wo id  ARGV[2] expected status  ARGV[3] expected handler ("m:<member>" | "g:<group>")
-- ARGV[4] new status  ARGV[5] new handler  ARGV[6] buyer ("" none)  ARGV[7] list score (the wo number)
-- ARGV[8] now (ms)  ARGV[9] fields to set, json object of strings  ARGV[10..] history entries (json)
-- Returns {"ok"} | {"changed"} (status or handler moved since the snapshot: read again and retry)
--       | {"err", "not_found"}.
local id, s0, h0, s1, h1, buyer, score, now = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local cur = redis.call('HMGET', KEYS[1], 'status', 'handler')
if not cur[1] then return {'err', 'not_found'} end
if cur[1] ~= s0 or cur[2] ~= h0 then return {'changed'} end

local live = s1 == 'open' or s1 == 'in_progress'
if h1 ~= h0 then
  redis.call('ZREM', KEYS[3], id)
  redis.call('ZREM', KEYS[4], id)
  redis.call('ZADD', KEYS[5], score, id)
end
if live then redis.call('ZADD', KEYS[6], score, id) else redis.call('ZREM', KEYS[6], id) end

local f = cjson.decode(ARGV[9])
for k, v in pairs(f) do redis.call('HSET', KEYS[1], k, v) end
redis.call('HSET', KEYS[1], 'status', s1, 'handler', h1, 'updated', now)
for i = 10, #ARGV do redis.call('RPUSH', KEYS[2], ARGV[i]) end

-- routing: the buyer's next conversation goes to the handler of its most recently changed open work
-- order that a member handles; none left -> no work-order routing for that buyer
if buyer ~= '' and (s1 ~= s0 or h1 ~= h0) then
  if live and string.sub(h1, 1, 2) == 'm:' then
    redis.call('HSET', KEYS[7], id, string.sub(h1, 3) .. '|' .. now)
  else
    redis.call('HDEL', KEYS[7], id)
  end
  local best, bts
  local all = redis.call('HGETALL', KEYS[7])
  for i = 1, #all, 2 do
    local m, ts = string.match(all[i + 1], '^(.*)|(%d+)$')
    if m and (bts == nil or tonumber(ts) > bts) then best, bts = m, tonumber(ts) end
  end
  if best then redis.call('HSET', KEYS[8], buyer, best) else redis.call('HDEL', KEYS[8], buyer) end
end
return {'ok'}
