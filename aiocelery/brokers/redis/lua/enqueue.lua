-- enqueue: create the task record and make it ready (XADD) or delayed (ZADD). Idempotent:
-- a second call with the same task id changes nothing and returns the existing state. With a
-- dedup key, a live key returns the task that holds it instead of creating a new one.
-- Any number of messages in one call: 4 KEYS and 11 ARGV each, in order.
-- KEYS: 1 task hash, 2 stream, 3 delayed zset, 4 dedup key (unused when ARGV[9] is '')
-- ARGV: 1 task id, 2 name, 3 queue, 4 payload, 5 delay ms, 6 eta ms or '', 7 wake channel,
--       8 expires ms or '', 9 dedup ttl ms or '', 10 expires-in ms or '', 11 workflow json or ''
-- Returns per message 1 (created), or {0 this id exists | 2 deduplicated, state, task id}.
-- The record gets no attempt or crash count: absent reads as 0 (begin.lua writes both).
local function enqueue(k, a, now)
  local existing = redis.call('HGET', KEYS[k + 1], 'state')
  if existing then
    return {0, existing, ARGV[a + 1]}
  end
  if ARGV[a + 9] ~= '' then
    local holder = redis.call('GET', KEYS[k + 4])
    if holder then
      return {2, 'PENDING', holder}
    end
    redis.call('SET', KEYS[k + 4], ARGV[a + 1], 'PX', tonumber(ARGV[a + 9]))
  end
  local due = now + tonumber(ARGV[a + 5])
  if ARGV[a + 6] ~= '' then
    due = tonumber(ARGV[a + 6])
  end
  redis.call('HSET', KEYS[k + 1], 'name', ARGV[a + 2], 'queue', ARGV[a + 3], 'payload', ARGV[a + 4],
    'state', 'PENDING', 'created_ms', now)
  if ARGV[a + 11] ~= '' then
    redis.call('HSET', KEYS[k + 1], 'wf', ARGV[a + 11])
  end
  if ARGV[a + 8] ~= '' then
    redis.call('HSET', KEYS[k + 1], 'expires_ms', ARGV[a + 8])
  elseif ARGV[a + 10] ~= '' then
    redis.call('HSET', KEYS[k + 1], 'expires_ms', now + tonumber(ARGV[a + 10]))
  end
  if due > now then
    redis.call('HSET', KEYS[k + 1], 'due_ms', due)
    local first = redis.call('ZRANGE', KEYS[k + 3], 0, 0, 'WITHSCORES')
    redis.call('ZADD', KEYS[k + 3], due, ARGV[a + 1])
    if first[2] == nil or due < tonumber(first[2]) then
      redis.call('PUBLISH', ARGV[a + 7], due)
    end
  else
    redis.call('XADD', KEYS[k + 2], '*', 'id', ARGV[a + 1])
  end
  return 1
end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
for i = 0, #KEYS / 4 - 1 do
  out[#out + 1] = enqueue(i * 4, i * 11, now)
end
return out
