-- settle: store an attempt's outcome and acknowledge its delivery, atomically.
-- Terminal states (SUCCESS, FAILURE, DEAD, REVOKED): store result/error (SUCCESS also empties the
-- payload, which nothing needs again), set the TTL, XACK + XDEL,
-- dead-letter when DEAD, PUBLISH the final record (see backends/redis.py, record_from_notice; just
-- the state when result and error exceed 8 KiB). RETRY: count the retry, keep the last error, and
-- schedule the task into the delayed set (XACK + XDEL + ZADD), waking promoters if it is the
-- earliest. DEFER (rate limit, concurrency cap): back to the delayed set as PENDING; counted as
-- a deferral, not a retry or a crash (the attempt number, a fencing token, never goes back).
-- Fenced: only the attempt that is currently STARTED may settle. Running it twice is harmless:
-- the second call finds the outcome already stored for this attempt and returns 2.
-- Workflows (ARGV[15] not empty): in the same step, create the next tasks (links on success,
-- errbacks on failure), fail the later steps that can no longer run, and count a chord member:
-- the member that completes the count enqueues the callback with every result, in order; the
-- first failing member fails the chord (once) and runs the chord's errbacks.
-- Any number of plain settles in one call (4 KEYS and 16 ARGV each, in order); a settle with
-- workflow ops (which takes more KEYS) comes alone. Returns per settle: 0 not ours (fenced out),
-- 1 stored, 2 already stored by this attempt.
-- KEYS: 1 task hash, 2 stream, 3 dead stream, 4 delayed zset, then for workflows: 3 per child
--       (hash, stream, delayed), 1 per cascaded task (hash), and for a chord: the chord hash, the
--       callback's hash, stream and delayed, 1 per chord-cascaded task (hash), 3 per chord errback
-- ARGV: 1 group, 2 entry id, 3 attempt, 4 state, 5 result, 6 error json, 7 reason,
--       8 ttl ms, 9 done channel, 10 task id, 11 worker, 12 countdown ms, 13 wake channel,
--       14 '1' to dead-letter a FAILURE (retries exhausted), 15 workflow ops json or '',
--       16 key prefix
-- Acknowledged entries, per stream: one XACK and one XDEL per stream and call, after every settle
-- (an XDEL of the stream's first entry rescans its node for the new first entry: once per call,
-- not once per task).
local K_TASK, K_STREAM, K_DEAD, K_DELAYED = 1, 2, 3, 4
local UNIT_KEYS = 4                -- KEYS per settle in a merged call
local K_WORKFLOW = UNIT_KEYS + 1   -- a lone settle's first workflow key
local A_GROUP, A_ENTRY, A_ATTEMPT, A_STATE, A_RESULT, A_ERROR, A_REASON, A_TTL = 1, 2, 3, 4, 5, 6, 7, 8
local A_DONE_CHANNEL, A_TASK_ID, A_WORKER, A_COUNTDOWN, A_WAKE, A_DEAD_LETTER, A_WF_OPS, A_PREFIX =
  9, 10, 11, 12, 13, 14, 15, 16
local UNIT_ARGS = 16               -- ARGV per settle

local now = time_ms()

local acks = {}
local function ack(stream, entry)
  if stream == '' then  -- RabbitMQ: the caller acknowledges on its channel after this script
    return
  end
  local ids = acks[stream]
  if not ids then
    ids = {}
    acks[stream] = ids
  end
  ids[#ids + 1] = entry
end

local function flush_acks(group)
  for stream, ids in pairs(acks) do
    redis.call('XACK', stream, group, unpack(ids))
    redis.call('XDEL', stream, unpack(ids))
  end
end

local units = #ARGV / UNIT_ARGS
if units > 1 then
  for u = 0, units - 1 do  -- checked before any write: Lua does not roll back
    if ARGV[u * UNIT_ARGS + A_WF_OPS] ~= '' then
      return redis.error_reply('settle.lua: a settle with workflow ops must come alone')
    end
  end
end

local out = {}
local step_ops = nil  -- the ops of a workflow step that stored its final state (it came alone): run below
-- settle u's key K_X is KEYS[k + K_X] and its argument A_X is ARGV[a + A_X] (offsets: no table per
-- settle; in the main chunk: see prelude.lua)
for u = 0, units - 1 do
  local k, a = u * UNIT_KEYS, u * UNIT_ARGS
  local key, stream, dead, delayed = KEYS[k + K_TASK], KEYS[k + K_STREAM], KEYS[k + K_DEAD], KEYS[k + K_DELAYED]
  local entry, attempt, state = ARGV[a + A_ENTRY], ARGV[a + A_ATTEMPT], ARGV[a + A_STATE]
  local result, err, reason = ARGV[a + A_RESULT], ARGV[a + A_ERROR], ARGV[a + A_REASON]
  local ttl, done_channel, id = ARGV[a + A_TTL], ARGV[a + A_DONE_CHANNEL], ARGV[a + A_TASK_ID]
  local by_worker, countdown, wake = ARGV[a + A_WORKER], ARGV[a + A_COUNTDOWN], ARGV[a + A_WAKE]
  local dead_letter, wf_ops = ARGV[a + A_DEAD_LETTER], ARGV[a + A_WF_OPS]
  -- decode everything before the first write: Lua does not roll back
  local ops = nil
  if wf_ops ~= '' then
    ops = cjson.decode(wf_ops)
    if ops.chord == cjson.null then
      ops.chord = nil
    end
  end
  local cur = redis.call('HMGET', key, F_STATE, F_ATTEMPT, F_SETTLED, F_NAME, F_QUEUE, F_WORKER, F_CREATED_MS,
    F_STARTED_MS)
  if cur[1] ~= 'STARTED' or cur[2] ~= attempt then
    if cur[3] == attempt .. ':' .. state then
      ack(stream, entry)
      out[#out + 1] = 2
    else
      out[#out + 1] = 0
    end
  elseif state == 'RETRY' or state == 'DEFER' then
    ack(stream, entry)
    local due = now + tonumber(countdown)
    if state == 'RETRY' then
      redis.call('HINCRBY', key, F_RETRIES, 1)
      redis.call('HSET', key, F_STATE, 'RETRY', F_ERROR, err, F_DUE_MS, due, F_SETTLED, attempt .. ':RETRY')
    else
      redis.call('HINCRBY', key, F_DEFERRALS, 1)
      redis.call('HSET', key, F_STATE, 'PENDING', F_DUE_MS, due, F_SETTLED, attempt .. ':DEFER')
    end
    if stream == '' then  -- RabbitMQ: this attempt's message goes stale (a redelivery must not start it)
      redis.call('HINCRBY', key, F_PUB, 1)
    end
    local first = redis.call('ZRANGE', delayed, 0, 0, 'WITHSCORES')
    redis.call('ZADD', delayed, due, id)
    if first[2] == nil or due < tonumber(first[2]) then
      redis.call('PUBLISH', wake, due)
    end
    out[#out + 1] = 1
  else
    ack(stream, entry)
    if state == 'SUCCESS' then  -- the payload is not needed again: emptied in the same HSET (no HDEL)
      redis.call('HSET', key, F_STATE, state, F_DONE_MS, now, F_RESULT, result,
        F_ERROR, err, F_REASON, reason, F_SETTLED, attempt .. ':' .. state, F_PAYLOAD, '')
    else
      redis.call('HSET', key, F_STATE, state, F_DONE_MS, now, F_RESULT, result,
        F_ERROR, err, F_REASON, reason, F_SETTLED, attempt .. ':' .. state)
    end
    redis.call('PEXPIRE', key, ttl)
    if state == 'DEAD' or dead_letter == '1' then
      redis.call('XADD', dead, '*', E_ID, id, E_NAME, cur[4] or '', E_REASON, reason,
        E_TIME_MS, now, E_WORKER, by_worker, E_ERROR, err)
    end
    if #result + #err <= 8192 then
      -- the whole final record rides on the notification: a waiting get() needs no read
      local name, queue, worker = cur[4] or '', cur[5] or '', cur[6] or ''
      redis.call('PUBLISH', done_channel, '\1' .. state .. ' ' .. attempt .. ' ' .. (cur[7] or '0') .. ' '
        .. (cur[8] or '0') .. ' ' .. now .. ' ' .. #name .. ' ' .. #queue .. ' ' .. #worker .. ' ' .. #reason .. ' '
        .. #err .. '\n' .. name .. queue .. worker .. reason .. err .. result)
    else
      redis.call('PUBLISH', done_channel, state)
    end
    step_ops = ops
    out[#out + 1] = 1
  end
end

if step_ops then
  -- the workflow step came alone: its arguments are ARGV[A_X], its workflow keys KEYS[K_WORKFLOW]
  -- onwards, in the order the header gives
  local state, result, id = ARGV[A_STATE], ARGV[A_RESULT], ARGV[A_TASK_ID]
  local ttl, prefix = ARGV[A_TTL], ARGV[A_PREFIX]
  local k = K_WORKFLOW  -- the next workflow key

  local function create(c)
    local hk, sk, dk = KEYS[k], KEYS[k + 1], KEYS[k + 2]
    k = k + 3
    local cur = redis.call('HMGET', hk, F_STATE, F_PLACEHOLDER)
    if cur[1] and (cur[2] ~= '1' or cur[1] ~= 'PENDING') then
      return
    end
    redis.call('HDEL', hk, F_PLACEHOLDER)
    redis.call('PERSIST', hk)
    redis.call('HSET', hk, F_NAME, c.name, F_QUEUE, c.queue, F_PAYLOAD, c.payload, F_STATE, 'PENDING',
      F_ATTEMPT, 0, F_CRASHES, 0, F_CREATED_MS, now)
    if c.wf ~= '' then
      redis.call('HSET', hk, F_WF, c.wf)
    end
    local wake = prefix .. ':{' .. c.queue .. '}:wake'
    if c.delay_ms > 0 then
      redis.call('HSET', hk, F_DUE_MS, now + c.delay_ms)
      redis.call('ZADD', dk, now + c.delay_ms, c.id)
      redis.call('PUBLISH', wake, now + c.delay_ms)
    else
      push_ready(sk, dk, wake, c.id, now)
    end
  end

  local function fail(fid, name, err)
    local hk = KEYS[k]
    k = k + 1
    local cur = redis.call('HGET', hk, F_STATE)
    if READY_STATES[cur] then
      return
    end
    redis.call('HSET', hk, F_STATE, 'FAILURE', F_ERROR, err, F_DONE_MS, now, F_REASON, 'an earlier step failed')
    if not cur then
      redis.call('HSET', hk, F_NAME, name, F_QUEUE, '', F_ATTEMPT, 0, F_CREATED_MS, now)
    end
    redis.call('PEXPIRE', hk, ttl)
    redis.call('PUBLISH', prefix .. ':done:' .. fid, 'FAILURE')
  end

  for _, c in ipairs(step_ops.children) do
    create(c)
  end
  for _, item in ipairs(step_ops.cascade) do
    fail(item[1], item[2], step_ops.error)
  end
  if step_ops.chord then
    local ch = KEYS[k]
    local cb_keys = k + 1
    k = k + 4
    if state == 'SUCCESS' then
      if redis.call('HSETNX', ch, C_RESULT .. step_ops.chord.index, result) == 1 then
        local done = redis.call('HINCRBY', ch, C_DONE, 1)
        local total = tonumber(redis.call('HGET', ch, C_TOTAL) or '-1')
        if done == total and not redis.call('HGET', ch, C_FAILED) then
          local parts = {}
          for i = 0, total - 1 do
            parts[#parts + 1] = redis.call('HGET', ch, C_RESULT .. i)
          end
          local cb = cjson.decode(redis.call('HGET', ch, C_CB))
          local body = cb.head
          if not cb.immutable then
            body = cb.head .. '[' .. table.concat(parts, ',') .. ']' .. cb.tail
          end
          local saved = k
          k = cb_keys
          create({id = cb.id, name = cb.name, queue = cb.queue, payload = body, delay_ms = cb.delay_ms, wf = cb.wf})
          k = saved
        end
      end
    elseif redis.call('HSETNX', ch, C_FAILED, id) == 1 then
      local saved = k
      k = cb_keys
      fail(step_ops.chord.cb_id, step_ops.chord.cb_name, step_ops.error)
      k = saved
      for _, item in ipairs(step_ops.chord.cascade) do
        fail(item[1], item[2], step_ops.error)
      end
      for _, eb in ipairs(cjson.decode(redis.call('HGET', ch, C_ERRBACKS) or '[]')) do
        local body = eb.head
        if not eb.immutable then
          body = eb.head .. cjson.encode(id) .. ',' .. step_ops.error .. eb.tail
        end
        create({id = eb.id, name = eb.name, queue = eb.queue, payload = body, delay_ms = eb.delay_ms, wf = eb.wf})
      end
    end
  end
end
flush_acks(ARGV[A_GROUP])
return out
