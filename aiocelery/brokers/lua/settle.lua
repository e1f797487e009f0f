-- settle: store an attempt's outcome and acknowledge its delivery, atomically.
-- Terminal states (SUCCESS, FAILURE, DEAD, REVOKED): store result/error, set the TTL, XACK + XDEL,
-- dead-letter when DEAD, PUBLISH the state. RETRY: count the retry, keep the last error, and
-- schedule the task into the delayed set (XACK + XDEL + ZADD), waking promoters if it is the
-- earliest. DEFER (rate limit, concurrency cap): back to the delayed set as PENDING; counted as
-- a deferral, not a retry or a crash (the attempt number, a fencing token, never goes back).
-- Fenced: only the attempt that is currently STARTED may settle. Running it twice is harmless:
-- the second call finds the outcome already stored for this attempt and returns 2.
-- KEYS: 1 task hash, 2 stream, 3 dead stream, 4 delayed zset
-- ARGV: 1 group, 2 entry id, 3 attempt, 4 state, 5 result, 6 error json, 7 reason,
--       8 ttl ms, 9 done channel, 10 task id, 11 worker, 12 countdown ms, 13 wake channel,
--       14 '1' to dead-letter a FAILURE (retries exhausted)
local cur = redis.call('HMGET', KEYS[1], 'state', 'attempt', 'settled')
local state = ARGV[4]
if cur[1] ~= 'STARTED' or cur[2] ~= ARGV[3] then
  if cur[3] == ARGV[3] .. ':' .. state then
    redis.call('XACK', KEYS[2], ARGV[1], ARGV[2])
    redis.call('XDEL', KEYS[2], ARGV[2])
    return 2
  end
  return 0
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('XACK', KEYS[2], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[2], ARGV[2])

if state == 'RETRY' or state == 'DEFER' then
  local due = now + tonumber(ARGV[12])
  if state == 'RETRY' then
    redis.call('HINCRBY', KEYS[1], 'retries', 1)
    redis.call('HSET', KEYS[1], 'state', 'RETRY', 'error', ARGV[6], 'due_ms', due, 'settled', ARGV[3] .. ':RETRY')
  else
    redis.call('HINCRBY', KEYS[1], 'deferrals', 1)
    redis.call('HSET', KEYS[1], 'state', 'PENDING', 'due_ms', due, 'settled', ARGV[3] .. ':DEFER')
  end
  local first = redis.call('ZRANGE', KEYS[4], 0, 0, 'WITHSCORES')
  redis.call('ZADD', KEYS[4], due, ARGV[10])
  if first[2] == nil or due < tonumber(first[2]) then
    redis.call('PUBLISH', ARGV[13], due)
  end
  return 1
end

redis.call('HSET', KEYS[1], 'state', state, 'done_ms', now, 'result', ARGV[5],
  'error', ARGV[6], 'reason', ARGV[7], 'settled', ARGV[3] .. ':' .. state)
if state == 'SUCCESS' then
  redis.call('HDEL', KEYS[1], 'payload')
end
redis.call('PEXPIRE', KEYS[1], ARGV[8])
if state == 'DEAD' or ARGV[14] == '1' then
  local name = redis.call('HGET', KEYS[1], 'name') or ''
  redis.call('XADD', KEYS[3], '*', 'id', ARGV[10], 'name', name, 'reason', ARGV[7],
    'time_ms', now, 'worker', ARGV[11], 'error', ARGV[6])
end
redis.call('PUBLISH', ARGV[9], state)
return 1
