-- dispatch.lua: assign one queued conversation to a member, atomically (R12, R14, R15, R19).
-- KEYS[1] conversation hash  KEYS[2] status hash  KEYS[3] route hash  KEYS[4] capacity hash
-- KEYS[5] load hash  KEYS[6] last-assignment hash  KEYS[7] sticky hash  KEYS[8] held zset
-- KEYS[9] the queue zset (ARGV[8])  KEYS[10] queue-version hash  KEYS[11] display-name hash
-- KEYS[12] assignment log stream  KEYS[13] work-order handler hash (buyer -> member)
-- KEYS[14] the conversation's message stream  KEYS[15] its transfer list  KEYS[16] seller hash
-- ARGV[1] conv id  ARGV[2] now (ms)  ARGV[3] default sticky window (ms)  ARGV[4] addressed member or ""
-- ARGV[5] channel prefix  ARGV[6] release from this member first ("" = conv must be queued)
-- ARGV[7] reason to record when released ("redispatch"|"transfer")  ARGV[8] queue name
-- ARGV[9] member to exclude ("" none)  ARGV[10] system note to append ("" none, group transfers)
-- ARGV[11] transfer record json ("" none)
-- Returns {"assigned", member, reason, candidates_json, display name} | {"queued", position, queue_version}
--       | {"already", state, member} | {"err", code}.
local conv, now, window, addr, chp = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4], ARGV[5]
local sw = redis.call('HGET', KEYS[16], 'sticky_window')  -- the seller's own window (s), if set
if sw then window = tonumber(sw) * 1000 end
local q, exclude = ARGV[8], ARGV[9]
local c = redis.call('HMGET', KEYS[1], 'state', 'buyer', 'member', 'store', 'seq', 'assigned_at')
local state, buyer, holder, store, seq = c[1], c[2], c[3], c[4], num(c[5])
if not state then return {'err', 'not_found'} end
local released = ''
if ARGV[6] ~= '' then
  if state ~= 'active' or holder ~= ARGV[6] then return {'err', 'not_holder'} end
  local l = redis.call('HINCRBY', KEYS[5], holder, -1)
  redis.call('HINCRBY', KEYS[1], 'service_ms', now - num(c[6]))
  redis.call('ZREM', KEYS[8], holder .. '\0' .. conv)
  redis.call('HSET', KEYS[1], 'state', 'queued', 'member', '', 'queue', q)
  pub(chp .. 'm:' .. holder, 'conv.removed', {conv = conv, reason = ARGV[7]})
  redis.call('XADD', KEYS[12], 'MAXLEN', '~', 100000, '*', 'conv', conv, 'member', holder,
             'reason', 'release:' .. ARGV[7], 'load', l, 'cap', num(redis.call('HGET', KEYS[4], holder)), 'ts', now)
  pub(chp .. 'dash', 'load', {member = holder, load = l, cap = num(redis.call('HGET', KEYS[4], holder))})
  released, state = holder, 'queued'
elseif state ~= 'queued' then
  return {'already', state, holder or ''}
end

local function info(m)
  return redis.call('HGET', KEYS[2], m) or 'offline', redis.call('HGET', KEYS[3], m),
         num(redis.call('HGET', KEYS[5], m)), num(redis.call('HGET', KEYS[4], m))
end
local considered = {}
local function note(m, st, load, cap, verdict)
  if #considered < 20 then table.insert(considered, {member = m, status = st, load = load, cap = cap, verdict = verdict}) end
end
-- a named member (addressed, work-order handler, sticky) may be online or idle (R6) but below capacity (R14)
local function named_ok(m, step)
  if m == exclude then return false end
  local st, rt, load, cap = info(m)
  local ok = (st == 'online' or st == 'idle') and inroute(rt, q) and load < cap
  local why = ok and 'chosen' or ((st ~= 'online' and st ~= 'idle') and st or (not inroute(rt, q) and 'cannot_serve' or 'full'))
  note(m, st, load, cap, step .. ':' .. why)
  return ok
end

local chosen, reason
if addr ~= '' and named_ok(addr, 'addressed') then chosen, reason = addr, 'addressed' end
if not chosen and buyer then
  local h = redis.call('HGET', KEYS[13], buyer)
  if h and named_ok(h, 'work_order') then chosen, reason = h, 'work_order' end
end
if not chosen and buyer then
  -- a new conversation: only the last member (R12.2); one coming back through the dispatcher
  -- (transfer to a group, re-dispatch): the most recent earlier member who can take it (R19)
  for i, e in ipairs(sticky_list(redis.call('HGET', KEYS[7], buyer))) do
    if now - e[2] > window then break end
    if e[1] ~= exclude and named_ok(e[1], 'sticky') then chosen, reason = e[1], 'sticky'; break end
    if released == '' then break end
  end
end
if not chosen then
  -- least loaded online member with free capacity; ties: longest since last assignment, then name
  local best, bl, bt, bc
  local all = redis.call('HGETALL', KEYS[3])
  local ms = {}
  for i = 1, #all, 2 do
    if all[i] ~= exclude and inroute(all[i + 1], q) then table.insert(ms, all[i]) end
  end
  if #ms > 0 then
    -- one read per hash for every candidate (not one per member and field)
    local sts, loads = hmget_all(KEYS[2], ms), hmget_all(KEYS[5], ms)
    local caps, las = hmget_all(KEYS[4], ms), hmget_all(KEYS[6], ms)
    for i, m in ipairs(ms) do
      local st, load, cap = sts[i] or 'offline', num(loads[i]), num(caps[i])
      if st ~= 'online' then note(m, st, load, cap, st)
      elseif load >= cap then note(m, st, load, cap, 'full')
      else
        local la = num(las[i])
        note(m, st, load, cap, 'eligible')
        if best == nil or load < bl or (load == bl and (la < bt or (la == bt and m < best))) then
          best, bl, bt, bc = m, load, la, cap
        end
      end
    end
  end
  if best then
    chosen, reason = best, 'least_loaded'
    local listed = false
    for _, e in ipairs(considered) do
      if e.member == best and e.verdict == 'eligible' then e.verdict = 'chosen'; listed = true end
    end
    -- the explanation lists at most 20 candidates, but always the chosen one
    if not listed then table.insert(considered, {member = best, status = 'online', load = bl, cap = bc, verdict = 'chosen'}) end
  end
end
if chosen and released ~= '' then reason = ARGV[7] .. ':' .. reason end
if ARGV[11] ~= '' then
  local t = cjson.decode(ARGV[11]); t.to = chosen or ''; t.ts = now
  redis.call('RPUSH', KEYS[15], cjson.encode(t))
  redis.call('HINCRBY', KEYS[1], 'transfers', 1)
end
if ARGV[10] ~= '' then
  local nseq = append_msg(KEYS[1], KEYS[14], 'note', 'system', 'system', ARGV[10], now, 'xfer:' .. now)
  seq = nseq
  local ev = cmsgpack.pack({type = 'msg', data = msg_event(conv, nseq, 'note', 'system', 'system', ARGV[10], now, 'xfer:' .. now, store)})
  redis.call('PUBLISH', chp .. 'b:' .. buyer, ev)
  if chosen then redis.call('PUBLISH', chp .. 'm:' .. chosen, ev) end
end

local cands = cjson.encode(considered)
if chosen then
  redis.call('HSET', KEYS[1], 'state', 'active', 'member', chosen, 'assigned_at', now, 'reason', reason,
             'candidates', cands, 'queue', q)
  redis.call('HSETNX', KEYS[1], 'first_assigned', now)
  local load = redis.call('HINCRBY', KEYS[5], chosen, 1)
  redis.call('HSET', KEYS[6], chosen, now)
  redis.call('ZADD', KEYS[8], 0, chosen .. '\0' .. conv)
  if buyer then sticky_push(KEYS[7], buyer, chosen, now) end
  local r = redis.call('ZRANK', KEYS[9], conv)
  if r then
    redis.call('ZREM', KEYS[9], conv)
    queue_moved(chp, KEYS[10], q, r)
    queue_info(chp, KEYS[9], q)
  end
  redis.call('XADD', KEYS[12], 'MAXLEN', '~', 100000, '*', 'conv', conv, 'member', chosen, 'reason', reason,
             'load', load, 'cap', num(redis.call('HGET', KEYS[4], chosen)), 'ts', now)
  local name = redis.call('HGET', KEYS[11], chosen) or chosen
  pub(chp .. 'm:' .. chosen, 'conv.assigned', {conv = conv, store = store, buyer = buyer, reason = reason,
      candidates = considered, seq = seq, queue = q, from = released})
  pub(chp .. 'b:' .. buyer, 'conv.state', {conv = conv, state = 'active', agent = name})
  pub(chp .. 'dash', 'load', {member = chosen, load = load, cap = num(redis.call('HGET', KEYS[4], chosen))})
  return {'assigned', chosen, reason, cands, name}
end
redis.call('HSET', KEYS[1], 'state', 'queued', 'queue', q, 'candidates', cands, 'reason', 'queued')
if redis.call('ZADD', KEYS[9], 'NX', now, conv) == 1 then
  redis.call('HSET', KEYS[1], 'queued_at', now)
  queue_moved(chp, KEYS[10], q, -1)
  queue_info(chp, KEYS[9], q)
end
local pos = redis.call('ZRANK', KEYS[9], conv) + 1
local ver = num(redis.call('HGET', KEYS[10], q))
pub(chp .. 'b:' .. buyer, 'conv.state', {conv = conv, state = 'queued', position = pos, queue = q, ver = ver})
return {'queued', pos, ver}
