-- begin (RabbitMQ): start a batch of one queue's messages, received by the caller. The rules of
-- the Redis broker's begin.lua, on the task record alone (the queue is RabbitMQ's):
-- a message carries the publication it was sent as (F_PUB); a message of an older publication
-- (its task was published again, or went back to the delayed set to retry) is acknowledged unrun.
-- A task whose attempt is STARTED on another delivery whose lease is live is "held": another
-- worker runs it (RabbitMQ redelivered the message when that worker's connection dropped); the
-- caller keeps the message and looks again when the lease ends. A STARTED task whose lease ended
-- had its worker die: a crash is counted, and past max crashes it is dead-lettered.
-- KEYS: 1 dead stream, then one task hash per message, in ARGV order
-- ARGV: 1 consumer, 2 max crashes, 3 worker name, 4 ttl ms, 5 done channel prefix, 6 lease ms,
--       then triples: delivery token, task id, publication
-- Returns one row per message:
--   {kind, task id, token, attempt, name, payload, retries, deferrals, workflow, created, crashes}
--   for 'run'; {kind, task id, token} for 'missing', 'done', 'stale', 'revoked', 'expired', 'dead';
--   {'held', task id, token, ms until the lease ends}
local K_DEAD, K_TASKS = 1, 2
local A_CONSUMER, A_MAX_CRASHES, A_WORKER, A_TTL, A_DONE_PREFIX, A_LEASE, A_TRIPLES = 1, 2, 3, 4, 5, 6, 7
local dead, consumer, worker = KEYS[K_DEAD], ARGV[A_CONSUMER], ARGV[A_WORKER]
local max_crashes, ttl, done_prefix = tonumber(ARGV[A_MAX_CRASHES]), tonumber(ARGV[A_TTL]), ARGV[A_DONE_PREFIX]
local lease = tonumber(ARGV[A_LEASE])
local now = time_ms()
local out = {}

local function terminal(key, id, state, reason)
  redis.call('HSET', key, F_STATE, state, F_REASON, reason, F_DONE_MS, now)
  redis.call('PEXPIRE', key, ttl)
  redis.call('PUBLISH', done_prefix .. id, state)
end

for i = 0, (#ARGV - A_TRIPLES + 1) / 3 - 1 do
  local a = A_TRIPLES + i * 3
  local token, id, pub, key = ARGV[a], ARGV[a + 1], ARGV[a + 2], KEYS[K_TASKS + i]
  local state, stored_crashes, name, expires_ms, retries, deferrals, revoked, created, on_entry, on_consumer,
    payload, wf, stored_attempt, stored_pub, lease_ms = unpack(redis.call('HMGET', key, F_STATE, F_CRASHES, F_NAME,
      F_EXPIRES_MS, F_RETRIES, F_DEFERRALS, F_REVOKED, F_CREATED_MS, F_ENTRY, F_CONSUMER, F_PAYLOAD, F_WF,
      F_ATTEMPT, F_PUB, F_LEASE))
  local expires = tonumber(expires_ms or '')
  if not state then
    redis.call('XADD', dead, '*', E_ID, id, E_REASON, 'task record missing', E_TIME_MS, now, E_WORKER, worker)
    out[#out + 1] = {'missing', id, token}
  elseif READY_STATES[state] then
    out[#out + 1] = {'done', id, token}
  elseif stored_pub ~= pub then
    out[#out + 1] = {'stale', id, token}
  elseif state == 'STARTED' and on_entry == token and on_consumer == consumer then
    -- the same start again (a call re-sent after a lost reply): the same attempt
    out[#out + 1] = {'run', id, token, tonumber(stored_attempt), name or '', payload or '',
      tonumber(retries or '0'), tonumber(deferrals or '0'), wf or '', tonumber(created or '0'),
      tonumber(stored_crashes or '0')}
  elseif revoked then
    terminal(key, id, 'REVOKED', revoked)
    out[#out + 1] = {'revoked', id, token}
  elseif expires and now >= expires then
    terminal(key, id, 'REVOKED', 'expired')
    out[#out + 1] = {'expired', id, token}
  elseif state == 'STARTED' and tonumber(lease_ms or '0') > now then
    out[#out + 1] = {'held', id, token, tonumber(lease_ms) - now}
  else
    local crashes = tonumber(stored_crashes or '0')
    if state == 'STARTED' then
      crashes = crashes + 1
    end
    if crashes > max_crashes then
      redis.call('HSET', key, F_CRASHES, crashes)
      local reason = 'crashed its worker ' .. crashes .. ' times (max_crashes ' .. max_crashes .. ')'
      terminal(key, id, 'DEAD', reason)
      redis.call('XADD', dead, '*', E_ID, id, E_NAME, name or '', E_REASON, reason, E_TIME_MS, now,
        E_WORKER, worker)
      out[#out + 1] = {'dead', id, token}
    else
      local attempt = tonumber(stored_attempt or '0') + 1
      redis.call('HSET', key, F_ATTEMPT, attempt, F_CRASHES, crashes, F_STATE, 'STARTED', F_STARTED_MS, now,
        F_WORKER, worker, F_ENTRY, token, F_CONSUMER, consumer, F_LEASE, now + lease)
      out[#out + 1] = {'run', id, token, attempt, name or '', payload or '', tonumber(retries or '0'),
        tonumber(deferrals or '0'), wf or '', tonumber(created or '0'), crashes}
    end
  end
end
return out
