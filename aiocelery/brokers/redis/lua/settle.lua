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
--       callback's hash, stream and delayed, 3 per chord errback
-- ARGV: 1 group, 2 entry id, 3 attempt, 4 state, 5 result, 6 error json, 7 reason,
--       8 ttl ms, 9 done channel, 10 task id, 11 worker, 12 countdown ms, 13 wake channel,
--       14 '1' to dead-letter a FAILURE (retries exhausted), 15 workflow ops json or '',
--       16 key prefix
-- Acknowledged entries, per stream: one XACK and one XDEL per stream and call, after every settle
-- (an XDEL of the stream's first entry rescans its node for the new first entry: once per call,
-- not once per task).
local acks = {}
local function ack(stream, entry)
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

local function settle(ko, ao, now)
  local key, stream, dead, delayed = KEYS[ko + 1], KEYS[ko + 2], KEYS[ko + 3], KEYS[ko + 4]
  local entry, attempt, state, result, err, reason = ARGV[ao + 2], ARGV[ao + 3], ARGV[ao + 4], ARGV[ao + 5],
    ARGV[ao + 6], ARGV[ao + 7]
  local ttl, done_channel, id, by_worker, countdown = ARGV[ao + 8], ARGV[ao + 9], ARGV[ao + 10], ARGV[ao + 11],
    ARGV[ao + 12]
  local wake, dead_letter, wf_ops, prefix = ARGV[ao + 13], ARGV[ao + 14], ARGV[ao + 15], ARGV[ao + 16]
  -- decode everything before the first write: Lua does not roll back
  local ops = nil
  if wf_ops ~= '' then
    ops = cjson.decode(wf_ops)
    if ops.chord == cjson.null then
      ops.chord = nil
    end
  end
  local cur = redis.call('HMGET', key, 'state', 'attempt', 'settled', 'name', 'queue', 'worker', 'created_ms',
    'started_ms')
  if cur[1] ~= 'STARTED' or cur[2] ~= attempt then
    if cur[3] == attempt .. ':' .. state then
      ack(stream, entry)
      return 2
    end
    return 0
  end
  ack(stream, entry)

  if state == 'RETRY' or state == 'DEFER' then
    local due = now + tonumber(countdown)
    if state == 'RETRY' then
      redis.call('HINCRBY', key, 'retries', 1)
      redis.call('HSET', key, 'state', 'RETRY', 'error', err, 'due_ms', due, 'settled', attempt .. ':RETRY')
    else
      redis.call('HINCRBY', key, 'deferrals', 1)
      redis.call('HSET', key, 'state', 'PENDING', 'due_ms', due, 'settled', attempt .. ':DEFER')
    end
    local first = redis.call('ZRANGE', delayed, 0, 0, 'WITHSCORES')
    redis.call('ZADD', delayed, due, id)
    if first[2] == nil or due < tonumber(first[2]) then
      redis.call('PUBLISH', wake, due)
    end
    return 1
  end

  if state == 'SUCCESS' then  -- the payload is not needed again: emptied in the same HSET (no HDEL)
    redis.call('HSET', key, 'state', state, 'done_ms', now, 'result', result,
      'error', err, 'reason', reason, 'settled', attempt .. ':' .. state, 'payload', '')
  else
    redis.call('HSET', key, 'state', state, 'done_ms', now, 'result', result,
      'error', err, 'reason', reason, 'settled', attempt .. ':' .. state)
  end
  redis.call('PEXPIRE', key, ttl)
  if state == 'DEAD' or dead_letter == '1' then
    redis.call('XADD', dead, '*', 'id', id, 'name', cur[4] or '', 'reason', reason,
      'time_ms', now, 'worker', by_worker, 'error', err)
  end
  if #result + #err <= 8192 then
    -- the whole final record rides on the notification: a waiting get() needs no read
    local name, queue, worker = cur[4] or '', cur[5] or '', cur[6] or ''
    redis.call('PUBLISH', done_channel, '\1' .. state .. ' ' .. attempt .. ' ' .. (cur[7] or '0') .. ' ' .. (cur[8] or '0')
      .. ' ' .. now .. ' ' .. #name .. ' ' .. #queue .. ' ' .. #worker .. ' ' .. #reason .. ' ' .. #err .. '\n'
      .. name .. queue .. worker .. reason .. err .. result)
  else
    redis.call('PUBLISH', done_channel, state)
  end
  if ops then
    local k = 5

    local function create(c)
      local hk, sk, dk = KEYS[k], KEYS[k + 1], KEYS[k + 2]
      k = k + 3
      local cur = redis.call('HMGET', hk, 'state', 'placeholder')
      if cur[1] and (cur[2] ~= '1' or cur[1] ~= 'PENDING') then
        return
      end
      redis.call('HDEL', hk, 'placeholder')
      redis.call('PERSIST', hk)
      redis.call('HSET', hk, 'name', c.name, 'queue', c.queue, 'payload', c.payload, 'state', 'PENDING',
        'attempt', 0, 'crashes', 0, 'created_ms', now)
      if c.wf ~= '' then
        redis.call('HSET', hk, 'wf', c.wf)
      end
      if c.delay_ms > 0 then
        redis.call('HSET', hk, 'due_ms', now + c.delay_ms)
        redis.call('ZADD', dk, now + c.delay_ms, c.id)
        redis.call('PUBLISH', prefix .. ':{' .. c.queue .. '}:wake', now + c.delay_ms)
      else
        redis.call('XADD', sk, '*', 'id', c.id)
      end
    end

    local function fail(id, name, err)
      local hk = KEYS[k]
      k = k + 1
      local cur = redis.call('HGET', hk, 'state')
      if cur == 'SUCCESS' or cur == 'FAILURE' or cur == 'DEAD' or cur == 'REVOKED' then
        return
      end
      redis.call('HSET', hk, 'state', 'FAILURE', 'error', err, 'done_ms', now, 'reason', 'an earlier step failed')
      if not cur then
        redis.call('HSET', hk, 'name', name, 'queue', '', 'attempt', 0, 'created_ms', now)
      end
      redis.call('PEXPIRE', hk, ttl)
      redis.call('PUBLISH', prefix .. ':done:' .. id, 'FAILURE')
    end

    for _, c in ipairs(ops.children) do
      create(c)
    end
    for _, item in ipairs(ops.cascade) do
      fail(item[1], item[2], ops.error)
    end
    if ops.chord then
      local ch = KEYS[k]
      local cb_keys = k + 1
      k = k + 4
      if state == 'SUCCESS' then
        if redis.call('HSETNX', ch, 'r:' .. ops.chord.index, result) == 1 then
          local done = redis.call('HINCRBY', ch, 'done', 1)
          local total = tonumber(redis.call('HGET', ch, 'total') or '-1')
          if done == total and not redis.call('HGET', ch, 'failed') then
            local parts = {}
            for i = 0, total - 1 do
              parts[#parts + 1] = redis.call('HGET', ch, 'r:' .. i)
            end
            local cb = cjson.decode(redis.call('HGET', ch, 'cb'))
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
      elseif redis.call('HSETNX', ch, 'failed', id) == 1 then
        local saved = k
        k = cb_keys
        fail(ops.chord.cb_id, ops.chord.cb_name, ops.error)
        k = saved
        for _, item in ipairs(ops.chord.cascade) do
          fail(item[1], item[2], ops.error)
        end
        for _, eb in ipairs(cjson.decode(redis.call('HGET', ch, 'errbacks') or '[]')) do
          local body = eb.head
          if not eb.immutable then
            body = eb.head .. cjson.encode(id) .. ',' .. ops.error .. eb.tail
          end
          create({id = eb.id, name = eb.name, queue = eb.queue, payload = body, delay_ms = eb.delay_ms, wf = eb.wf})
        end
      end
    end
  end
  return 1
end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local units = #ARGV / 16
if units == 1 then
  local done = settle(0, 0, now)
  flush_acks(ARGV[1])
  return {done}
end
for u = 0, units - 1 do  -- checked before any write: Lua does not roll back
  if ARGV[u * 16 + 15] ~= '' then
    return redis.error_reply('settle.lua: a settle with workflow ops must come alone')
  end
end
local out = {}
for u = 0, units - 1 do  -- by offset into KEYS and ARGV: no tables per settle
  out[#out + 1] = settle(u * 4, u * 16, now)
end
flush_acks(ARGV[1])
return out
