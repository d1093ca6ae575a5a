-- disconnect.lua: a connection (member or buyer) goes away, or a dead node's connections are reaped.
-- KEYS[1] conns zset  KEYS[2] the node's conns set
-- ARGV[1] node  ARGV[2..] "member\0conn" entries to remove ("*" alone: every entry of that node)
-- Returns the members (of those touched) with no connection left anywhere.
local node = ARGV[1]
local entries = {}
if ARGV[2] == '*' then entries = redis.call('SMEMBERS', KEYS[2]) else
  for i = 2, #ARGV do table.insert(entries, ARGV[i]) end
end
local touched, seen = {}, {}
for _, e in ipairs(entries) do
  local m, conn = string.match(e, '^(.-)%z(.*)$')
  if m then
    redis.call('ZREM', KEYS[1], m .. '\0' .. node .. '\0' .. conn)
    redis.call('SREM', KEYS[2], e)
    if not seen[m] then seen[m] = true; table.insert(touched, m) end
  end
end
local gone = {}
for _, m in ipairs(touched) do
  if #redis.call('ZRANGEBYLEX', KEYS[1], '[' .. m .. '\0', '[' .. m .. '\0\255', 'LIMIT', 0, 1) == 0 then
    table.insert(gone, m)
  end
end
return gone
