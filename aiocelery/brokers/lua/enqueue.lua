-- enqueue: create the task record and make it ready (XADD) or delayed (ZADD). Idempotent:
-- a second call with the same task id changes nothing and returns the existing state. With a
-- dedup key, a live key returns the task that holds it instead of creating a new one.
-- KEYS: 1 task hash, 2 stream, 3 delayed zset, 4 dedup key (unused when ARGV[9] is '')
-- ARGV: 1 task id, 2 name, 3 queue, 4 payload, 5 delay ms, 6 eta ms or '', 7 wake channel,
--       8 expires ms or '', 9 dedup ttl ms or '', 10 expires-in ms or '', 11 workflow json or ''
-- Returns {1 new | 0 this id exists | 2 deduplicated, state, task id}
local existing = redis.call('HGET', KEYS[1], 'state')
if existing then
  return {0, existing, ARGV[1]}
end
if ARGV[9] ~= '' then
  local holder = redis.call('GET', KEYS[4])
  if holder then
    return {2, 'PENDING', holder}
  end
  redis.call('SET', KEYS[4], ARGV[1], 'PX', tonumber(ARGV[9]))
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = now + tonumber(ARGV[5])
if ARGV[6] ~= '' then
  due = tonumber(ARGV[6])
end
redis.call('HSET', KEYS[1], 'name', ARGV[2], 'queue', ARGV[3], 'payload', ARGV[4],
  'state', 'PENDING', 'attempt', 0, 'crashes', 0, 'created_ms', now)
if ARGV[11] ~= '' then
  redis.call('HSET', KEYS[1], 'wf', ARGV[11])
end
if ARGV[8] ~= '' then
  redis.call('HSET', KEYS[1], 'expires_ms', ARGV[8])
elseif ARGV[10] ~= '' then
  redis.call('HSET', KEYS[1], 'expires_ms', now + tonumber(ARGV[10]))
end
if due > now then
  redis.call('HSET', KEYS[1], 'due_ms', due)
  local first = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
  redis.call('ZADD', KEYS[3], due, ARGV[1])
  if first[2] == nil or due < tonumber(first[2]) then
    redis.call('PUBLISH', ARGV[7], due)
  end
else
  redis.call('XADD', KEYS[2], '*', 'id', ARGV[1])
end
return {1, 'PENDING', ARGV[1]}
