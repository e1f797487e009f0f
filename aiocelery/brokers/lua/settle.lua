-- settle: store an attempt's terminal outcome and acknowledge its delivery, atomically.
-- Fenced: only the attempt that is currently STARTED may settle. Running it twice is harmless:
-- the second call finds the state already final for this attempt and returns 2.
-- KEYS: 1 task hash, 2 stream, 3 dead stream
-- ARGV: 1 group, 2 entry id, 3 attempt, 4 state, 5 result, 6 error json, 7 reason,
--       8 ttl ms, 9 done channel, 10 task id, 11 worker
local cur = redis.call('HMGET', KEYS[1], 'state', 'attempt')
if cur[2] ~= ARGV[3] then
  return 0
end
if cur[1] ~= 'STARTED' then
  if cur[1] == ARGV[4] then
    redis.call('XACK', KEYS[2], ARGV[1], ARGV[2])
    redis.call('XDEL', KEYS[2], ARGV[2])
    return 2
  end
  return 0
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], 'state', ARGV[4], 'done_ms', now, 'result', ARGV[5],
  'error', ARGV[6], 'reason', ARGV[7])
if ARGV[4] == 'SUCCESS' then
  redis.call('HDEL', KEYS[1], 'payload')
end
redis.call('PEXPIRE', KEYS[1], ARGV[8])
redis.call('XACK', KEYS[2], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[2], ARGV[2])
if ARGV[4] == 'DEAD' then
  local name = redis.call('HGET', KEYS[1], 'name') or ''
  redis.call('XADD', KEYS[3], '*', 'id', ARGV[10], 'name', name, 'reason', ARGV[7],
    'time_ms', now, 'worker', ARGV[11], 'error', ARGV[6])
end
redis.call('PUBLISH', ARGV[9], ARGV[4])
return 1
