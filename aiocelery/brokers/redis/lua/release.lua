-- release: hand an owned delivery back to its queue without counting a crash or a retry
-- (graceful shutdown). The task goes to the stream's tail at once, for any worker to take.
-- KEYS: 1 task hash, 2 stream
-- ARGV: 1 group, 2 consumer, 3 entry id, 4 task id
local owned = redis.call('XPENDING', KEYS[2], ARGV[1], ARGV[3], ARGV[3], 1, ARGV[2])
if #owned == 0 then
  return 0
end
redis.call('XACK', KEYS[2], ARGV[1], ARGV[3])
redis.call('XDEL', KEYS[2], ARGV[3])
local state = redis.call('HGET', KEYS[1], F_STATE)
if state == 'PENDING' or state == 'STARTED' or state == 'RETRY' then
  redis.call('HSET', KEYS[1], F_STATE, 'PENDING')
  redis.call('XADD', KEYS[2], '*', E_ID, ARGV[4])
  return 1
end
return 2
