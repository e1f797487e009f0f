-- begin: start a batch of deliveries of one queue, fetched here or by the caller.
-- For each: check the delivery is still ours, skip finished (or revoked) tasks, expire tasks past
-- their expiry, count a crash when the last attempt started and never finished (dead-letter past
-- max crashes), bump the attempt (the fencing token), mark STARTED and reset the lease. Safe to
-- run twice: the same consumer starting the same entry again gets the same attempt, no crash.
-- With ARGV[8] (a count), the script reads up to that many new entries itself (XREADGROUP without
-- BLOCK, so a busy worker fetches and begins in one round trip); they are this consumer's by
-- construction and just delivered, so the ownership check and the lease reset are skipped. Their
-- task hashes are then not in KEYS: they are ARGV[7] .. id (standalone Redis; see RELIABILITY.md).
-- KEYS: 1 stream, 2 dead stream, then (pairs given) one task hash per delivery, in ARGV order
-- ARGV: 1 group, 2 consumer, 3 max crashes, 4 worker name, 5 ttl ms, 6 done channel prefix,
--       7 task key prefix, 8 count to read here or '', then (when '') pairs: entry id, task id
-- Returns {entries read or given, rows}, one row per delivery:
--   {kind, task id, entry id, attempt, name, payload, delivered, retries, deferrals, workflow, created,
--    crashes}
local group, consumer = ARGV[1], ARGV[2]
local max_crashes, ttl = tonumber(ARGV[3]), tonumber(ARGV[5])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ready = {SUCCESS = true, FAILURE = true, DEAD = true, REVOKED = true}
local out = {}

local function finish(entry)
  redis.call('XACK', KEYS[1], group, entry)
  redis.call('XDEL', KEYS[1], entry)
end

local function terminal(key, id, state, reason)
  redis.call('HSET', key, 'state', state, 'reason', reason, 'done_ms', now)
  redis.call('PEXPIRE', key, ttl)
  redis.call('PUBLISH', ARGV[6] .. id, state)
end

local just_read = {{'', '', 0, 1}}  -- what XPENDING says of an entry this call read: delivered once

-- start one delivery (fresh: read by this call, so ours and just delivered)
local function start(entry, id, key, fresh)
  local owned = fresh and just_read or redis.call('XPENDING', KEYS[1], group, entry, entry, 1, consumer)
  -- one read of everything this needs (every record has a state: none means no record)
  local f = #owned > 0 and redis.call('HMGET', key, 'state', 'crashes', 'name', 'expires_ms', 'retries',
    'deferrals', 'revoked', 'created_ms', 'entry', 'consumer', 'payload', 'wf', 'attempt') or {}
  if #owned == 0 then
    out[#out + 1] = {'lost', id, entry}
  elseif not f[1] then
    finish(entry)
    redis.call('XADD', KEYS[2], '*', 'id', id, 'reason', 'task record missing', 'time_ms', now,
      'worker', ARGV[4])
    out[#out + 1] = {'missing', id, entry}
  else
    -- the same start again (a re-sent call, or this consumer reclaiming its own delivery): same attempt
    local again = f[1] == 'STARTED' and f[9] == entry and f[10] == consumer
    local expires = tonumber(f[4] or '')
    if ready[f[1]] then
      finish(entry)
      out[#out + 1] = {'done', id, entry}
    elseif f[7] then
      finish(entry)
      terminal(key, id, 'REVOKED', f[7])
      out[#out + 1] = {'revoked', id, entry}
    elseif expires and now >= expires then
      finish(entry)
      terminal(key, id, 'REVOKED', 'expired')
      out[#out + 1] = {'expired', id, entry}
    elseif again then
      redis.call('XCLAIM', KEYS[1], group, consumer, 0, entry, 'JUSTID')
      out[#out + 1] = {'run', id, entry, tonumber(f[13]), f[3] or '', f[11] or '', owned[1][4],
        tonumber(f[5] or '0'), tonumber(f[6] or '0'), f[12] or '', tonumber(f[8] or '0'), tonumber(f[2] or '0')}
    else
      local crashes = tonumber(f[2] or '0')
      if f[1] == 'STARTED' then
        crashes = crashes + 1
      end
      if crashes > max_crashes then
        redis.call('HSET', key, 'crashes', crashes)
        local reason = 'crashed its worker ' .. crashes .. ' times (max_crashes ' .. max_crashes .. ')'
        finish(entry)
        terminal(key, id, 'DEAD', reason)
        redis.call('XADD', KEYS[2], '*', 'id', id, 'name', f[3] or '', 'reason', reason,
          'time_ms', now, 'worker', ARGV[4])
        out[#out + 1] = {'dead', id, entry}
      else
        local attempt = tonumber(f[13] or '0') + 1  -- read above: no HINCRBY needed
        redis.call('HSET', key, 'attempt', attempt, 'crashes', crashes, 'state', 'STARTED', 'started_ms', now,
          'worker', ARGV[4], 'entry', entry, 'consumer', consumer)
        if not fresh then
          redis.call('XCLAIM', KEYS[1], group, consumer, 0, entry, 'JUSTID')  -- reset the lease
        end
        out[#out + 1] = {'run', id, entry, attempt, f[3] or '', f[11] or '', owned[1][4],
          tonumber(f[5] or '0'), tonumber(f[6] or '0'), f[12] or '', tonumber(f[8] or '0'), crashes}
      end
    end
  end
end

local count = 0
if ARGV[8] ~= '' then
  local read = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', ARGV[8], 'STREAMS', KEYS[1], '>')
  for _, e in ipairs(read and read[1][2] or {}) do
    local id, fields = '', e[2] or {}
    for j = 1, #fields - 1, 2 do
      if fields[j] == 'id' then
        id = fields[j + 1]
      end
    end
    start(e[1], id, ARGV[7] .. id, true)
    count = count + 1
  end
else
  for i = 9, #ARGV, 2 do
    start(ARGV[i], ARGV[i + 1], KEYS[3 + (i - 9) / 2], false)
    count = count + 1
  end
end
return {count, out}
