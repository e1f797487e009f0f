-- enqueue: create the task record and make it ready (XADD) or delayed (ZADD). Idempotent:
-- a second call with the same task id changes nothing and returns the existing state. With a
-- dedup key, a live key returns the task that holds it instead of creating a new one.
-- Any number of messages in one call: 4 KEYS and 11 ARGV each, in order.
-- KEYS: 1 task hash, 2 stream, 3 delayed zset, 4 dedup key (unused when ARGV[9] is '')
-- ARGV: 1 task id, 2 name, 3 queue, 4 payload, 5 delay ms, 6 eta ms or '', 7 wake channel,
--       8 expires ms or '', 9 dedup ttl ms or '', 10 expires-in ms or '', 11 workflow json or ''
-- Returns per message 1 (created), or {0 this id exists | 2 deduplicated, state, task id}; with the
-- stream key '' (RabbitMQ), 3 for a task created ready: the caller publishes it as publication 1,
-- held for it in the delayed set (see RELAY_CLAIM_MS in prelude.lua); and {3, state, task id,
-- publication} for a task sent again while its hold is still there (its earlier send was never
-- confirmed): held again for this caller, to publish as that new publication (an earlier message,
-- if RabbitMQ had it after all, is stale).
-- The record gets no attempt or crash count: absent reads as 0 (begin.lua writes both).
local K_TASK, K_STREAM, K_DELAYED, K_DEDUP = 1, 2, 3, 4
local UNIT_KEYS = 4
local A_ID, A_NAME, A_QUEUE, A_PAYLOAD, A_DELAY, A_ETA, A_WAKE, A_EXPIRES, A_DEDUP_TTL, A_EXPIRES_IN, A_WF =
  1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11
local UNIT_ARGS = 11

local now = time_ms()
local out = {}
-- message i's key K_X is KEYS[k + K_X] and its argument A_X is ARGV[a + A_X] (in the main chunk:
-- see prelude.lua)
for i = 0, #KEYS / UNIT_KEYS - 1 do
  local k, a = i * UNIT_KEYS, i * UNIT_ARGS
  local key, id = KEYS[k + K_TASK], ARGV[a + A_ID]
  local existing = redis.call('HGET', key, F_STATE)
  local holder = nil
  if not existing and ARGV[a + A_DEDUP_TTL] ~= '' then
    holder = redis.call('GET', KEYS[k + K_DEDUP])
    if not holder then
      redis.call('SET', KEYS[k + K_DEDUP], id, 'PX', tonumber(ARGV[a + A_DEDUP_TTL]))
    end
  end
  local held = nil  -- RabbitMQ: a task still held for a sender that never had it confirmed
  if existing == 'PENDING' and KEYS[k + K_STREAM] == '' then
    local score = tonumber(redis.call('ZSCORE', KEYS[k + K_DELAYED], id) or '0')
    if score ~= math.floor(score) then
      held = redis.call('HINCRBY', key, F_PUB, 1)
      redis.call('ZADD', KEYS[k + K_DELAYED], now + RELAY_CLAIM_MS, id)
    end
  end
  if held then
    out[#out + 1] = {3, existing, id, held}
  elseif existing then
    out[#out + 1] = {0, existing, id}
  elseif holder then
    out[#out + 1] = {2, 'PENDING', holder}
  else
    local due = now + tonumber(ARGV[a + A_DELAY])
    if ARGV[a + A_ETA] ~= '' then
      due = tonumber(ARGV[a + A_ETA])
    end
    redis.call('HSET', key, F_NAME, ARGV[a + A_NAME], F_QUEUE, ARGV[a + A_QUEUE], F_PAYLOAD, ARGV[a + A_PAYLOAD],
      F_STATE, 'PENDING', F_CREATED_MS, now)
    if ARGV[a + A_WF] ~= '' then
      redis.call('HSET', key, F_WF, ARGV[a + A_WF])
    end
    if ARGV[a + A_EXPIRES] ~= '' then
      redis.call('HSET', key, F_EXPIRES_MS, ARGV[a + A_EXPIRES])
    elseif ARGV[a + A_EXPIRES_IN] ~= '' then
      redis.call('HSET', key, F_EXPIRES_MS, now + tonumber(ARGV[a + A_EXPIRES_IN]))
    end
    if due > now then
      local delayed = KEYS[k + K_DELAYED]
      redis.call('HSET', key, F_DUE_MS, due)
      local first = redis.call('ZRANGE', delayed, 0, 0, 'WITHSCORES')
      redis.call('ZADD', delayed, due, id)
      if first[2] == nil or due < tonumber(first[2]) then
        redis.call('PUBLISH', ARGV[a + A_WAKE], due)
      end
      out[#out + 1] = 1
    elseif KEYS[k + K_STREAM] == '' then
      redis.call('HSET', key, F_PUB, 1)
      redis.call('ZADD', KEYS[k + K_DELAYED], now + RELAY_CLAIM_MS, id)
      out[#out + 1] = 3
    else
      redis.call('XADD', KEYS[k + K_STREAM], '*', E_ID, id)
      out[#out + 1] = 1
    end
  end
end
return out
