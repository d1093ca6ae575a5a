-- _lib.lua: helpers prepended to every script by scripts.py (never run alone).
-- Events are published as msgpack {type=..., data=...}; the hub decodes them once per node.
local function pub(ch, typ, data)
  redis.call('PUBLISH', ch, cmsgpack.pack({type = typ, data = data}))
end

-- route is ",q1,q2," : the queues a member may take conversations from.
local function inroute(route, q)
  return route ~= false and route ~= nil and string.find(route, ',' .. q .. ',', 1, true) ~= nil
end

local function num(v) return tonumber(v or '0') or 0 end

-- HMGET of any number of fields (unpack is bounded by Lua's C stack: chunks of 1000).
local function hmget_all(key, fields)
  local out = {}
  for i = 1, #fields, 1000 do
    local part = redis.call('HMGET', key, unpack(fields, i, math.min(i + 999, #fields)))
    for j = 1, #part do out[i + j - 1] = part[j] end
  end
  return out
end

-- The first n bytes of s, cut on a UTF-8 character boundary (never half a character).
local function utf8_prefix(s, n)
  if #s <= n then return s end
  local i = n
  while i > 0 do
    local b = string.byte(s, i + 1)
    if b < 128 or b >= 192 then break end
    i = i - 1
  end
  return string.sub(s, 1, i)
end

-- Append one message to a conversation's stream (R17: stored before it is published).
-- Returns the new seq. Stream ids are "<seq>-0" so seq order is stream order.
local function append_msg(convkey, logkey, kind, from, name, text, now, cid)
  local seq = redis.call('HINCRBY', convkey, 'seq', 1)
  redis.call('XADD', logkey, seq .. '-0', 'k', kind, 'f', from, 'n', name, 't', text, 'ts', now, 'c', cid)
  redis.call('HSET', convkey, 'last_ts', now, 'last_text', utf8_prefix(text, 120), 'last_kind', kind)
  return seq
end

local function msg_event(conv, seq, kind, from, name, text, now, cid, store)
  return {conv = conv, seq = seq, kind = kind, from = from, name = name, text = text,
          ts = tonumber(now), cid = cid, store = store}
end

local function queue_moved(chp, qverkey, q, rank)
  local v = redis.call('HINCRBY', qverkey, q, 1)
  pub(chp .. 'q:' .. q, 'queue.moved', {queue = q, ver = v, rank = rank})
  return v
end

local function queue_info(chp, qkey, q)
  local head = redis.call('ZRANGE', qkey, 0, 0, 'WITHSCORES')
  pub(chp .. 'dash', 'queue', {queue = q, length = redis.call('ZCARD', qkey),
                                oldest = tonumber(head[2] or '0')})
end

-- sticky hash: buyer -> "member|ms,member|ms,..." most recent first (R12.2, R19 "chat history").
local function sticky_list(v)
  local out = {}
  for m, ts in string.gmatch(v or '', '([^,|]+)|(%d+)') do table.insert(out, {m, tonumber(ts)}) end
  return out
end

local function sticky_push(key, buyer, m, now)
  local cur = sticky_list(redis.call('HGET', key, buyer))
  local parts = {m .. '|' .. now}
  for _, e in ipairs(cur) do
    if e[1] ~= m and #parts < 5 then table.insert(parts, e[1] .. '|' .. e[2]) end
  end
  redis.call('HSET', key, buyer, table.concat(parts, ','))
end
