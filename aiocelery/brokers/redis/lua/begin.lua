-- begin: start a batch of deliveries of one queue, fetched here or by the caller.
-- For each: check the delivery is still ours, skip finished (or revoked) tasks, expire tasks past
-- their expiry, count a crash when the last attempt started and never finished (dead-letter past
-- max crashes), bump the attempt (the fencing token), mark STARTED and reset the lease. Safe to
-- run twice: the same consumer starting the same entry again gets the same attempt, no crash.
-- With ARGV[8] (a count), the script reads up to that many new entries itself (XREADGROUP without
-- BLOCK, so a busy worker fetches and begins in one round trip); they are this consumer's by
-- construction and just delivered, so the ownership check and the lease reset are skipped. Their
-- task hashes are then not in KEYS: they are ARGV[7] .. id (keys a script does not declare work
-- on a standalone Redis, not on a Redis Cluster).
-- KEYS: 1 stream, 2 dead stream, then (pairs given) one task hash per delivery, in ARGV order
-- ARGV: 1 group, 2 consumer, 3 max crashes, 4 worker name, 5 ttl ms, 6 done channel prefix,
--       7 task key prefix, 8 count to read here or '', then (when '') pairs: entry id, task id
-- Returns {entries read or given, rows}, one row per delivery:
--   {kind, task id, entry id, attempt, name, payload, delivered, retries, deferrals, workflow, created,
--    crashes}
local K_STREAM, K_DEAD, K_TASKS = 1, 2, 3  -- K_TASKS: the first given delivery's task hash
local A_GROUP, A_CONSUMER, A_MAX_CRASHES, A_WORKER, A_TTL, A_DONE_PREFIX, A_TASK_PREFIX, A_COUNT, A_PAIRS =
  1, 2, 3, 4, 5, 6, 7, 8, 9
local stream, dead = KEYS[K_STREAM], KEYS[K_DEAD]
local group, consumer, worker = ARGV[A_GROUP], ARGV[A_CONSUMER], ARGV[A_WORKER]
local max_crashes, ttl, done_prefix = tonumber(ARGV[A_MAX_CRASHES]), tonumber(ARGV[A_TTL]), ARGV[A_DONE_PREFIX]
local now = time_ms()
local out = {}

local function finish(entry)
  redis.call('XACK', stream, group, entry)
  redis.call('XDEL', stream, entry)
end

local function terminal(key, id, state, reason)
  redis.call('HSET', key, F_STATE, state, F_REASON, reason, F_DONE_MS, now)
  redis.call('PEXPIRE', key, ttl)
  redis.call('PUBLISH', done_prefix .. id, state)
end

local just_read = {{'', '', 0, 1}}  -- what XPENDING says of an entry this call read: delivered once

-- the deliveries: read here (then this consumer's and just delivered), or given as pairs in ARGV
local read = nil
local count
if ARGV[A_COUNT] ~= '' then
  local reply = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', ARGV[A_COUNT], 'STREAMS', stream, '>')
  read = reply and reply[1][2] or {}
  count = #read
else
  count = (#ARGV - A_PAIRS + 1) / 2
end

-- start each one (in the main chunk: see prelude.lua)
for i = 1, count do
  local entry, id, key, owned
  if read then
    local fields = read[i][2] or {}
    entry, id = read[i][1], ''
    for j = 1, #fields - 1, 2 do
      if fields[j] == E_ID then
        id = fields[j + 1]
      end
    end
    key, owned = ARGV[A_TASK_PREFIX] .. id, just_read
  else
    local a = A_PAIRS + (i - 1) * 2
    entry, id, key = ARGV[a], ARGV[a + 1], KEYS[K_TASKS + i - 1]
    owned = redis.call('XPENDING', stream, group, entry, entry, 1, consumer)
  end
  if #owned == 0 then
    out[#out + 1] = {'lost', id, entry}
  else
    -- one read of everything this needs (every record has a state: none means no record)
    local state, stored_crashes, name, expires_ms, retries, deferrals, revoked, created, on_entry, on_consumer,
      payload, wf, stored_attempt = unpack(redis.call('HMGET', key, F_STATE, F_CRASHES, F_NAME, F_EXPIRES_MS,
        F_RETRIES, F_DEFERRALS, F_REVOKED, F_CREATED_MS, F_ENTRY, F_CONSUMER, F_PAYLOAD, F_WF, F_ATTEMPT))
    -- the same start again (a re-sent call, or this consumer reclaiming its own delivery): same attempt
    local again = state == 'STARTED' and on_entry == entry and on_consumer == consumer
    local expires = tonumber(expires_ms or '')
    if not state then
      finish(entry)
      redis.call('XADD', dead, '*', E_ID, id, E_REASON, 'task record missing', E_TIME_MS, now, E_WORKER, worker)
      out[#out + 1] = {'missing', id, entry}
    elseif READY_STATES[state] then
      finish(entry)
      out[#out + 1] = {'done', id, entry}
    elseif revoked then
      finish(entry)
      terminal(key, id, 'REVOKED', revoked)
      out[#out + 1] = {'revoked', id, entry}
    elseif expires and now >= expires then
      finish(entry)
      terminal(key, id, 'REVOKED', 'expired')
      out[#out + 1] = {'expired', id, entry}
    elseif again then
      redis.call('XCLAIM', stream, group, consumer, 0, entry, 'JUSTID')
      out[#out + 1] = {'run', id, entry, tonumber(stored_attempt), name or '', payload or '', owned[1][4],
        tonumber(retries or '0'), tonumber(deferrals or '0'), wf or '', tonumber(created or '0'),
        tonumber(stored_crashes or '0')}
    else
      local crashes = tonumber(stored_crashes or '0')
      if state == 'STARTED' then
        crashes = crashes + 1
      end
      if crashes > max_crashes then
        redis.call('HSET', key, F_CRASHES, crashes)
        local reason = 'crashed its worker ' .. crashes .. ' times (max_crashes ' .. max_crashes .. ')'
        finish(entry)
        terminal(key, id, 'DEAD', reason)
        redis.call('XADD', dead, '*', E_ID, id, E_NAME, name or '', E_REASON, reason, E_TIME_MS, now,
          E_WORKER, worker)
        out[#out + 1] = {'dead', id, entry}
      else
        local attempt = tonumber(stored_attempt or '0') + 1  -- read above: no HINCRBY needed
        redis.call('HSET', key, F_ATTEMPT, attempt, F_CRASHES, crashes, F_STATE, 'STARTED', F_STARTED_MS, now,
          F_WORKER, worker, F_ENTRY, entry, F_CONSUMER, consumer)
        if not read then
          redis.call('XCLAIM', stream, group, consumer, 0, entry, 'JUSTID')  -- reset the lease
        end
        out[#out + 1] = {'run', id, entry, attempt, name or '', payload or '', owned[1][4],
          tonumber(retries or '0'), tonumber(deferrals or '0'), wf or '', tonumber(created or '0'), crashes}
      end
    end
  end
end
return {count, out}
