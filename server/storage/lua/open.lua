-- open.lua: a buyer's open conversation at a store, or a new one (R16). The open key exists only
-- while its conversation is not closed (close.lua, leave.lua delete it; restart.lua sets it).
-- KEYS[1] the buyer's open-conversation key  KEYS[2] the new conversation's hash
-- KEYS[3] the buyer's conversations zset  KEYS[4] the seller's conversations index
-- ARGV[1] new conv id  ARGV[2] store  ARGV[3] buyer  ARGV[4] now (ms)  ARGV[5] queue
-- Returns {"existing", conv} | {"created", conv}.
local cur = redis.call('GET', KEYS[1])
if cur then return {'existing', cur} end
redis.call('HSET', KEYS[2], 'kind', 'buyer', 'store', ARGV[2], 'buyer', ARGV[3], 'state', 'queued',
           'created', ARGV[4], 'queue', ARGV[5], 'seq', 0)
redis.call('SET', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[1])
redis.call('ZADD', KEYS[4], ARGV[4], ARGV[1])
return {'created', ARGV[1]}
