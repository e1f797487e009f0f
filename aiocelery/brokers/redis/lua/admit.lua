-- admit: may this task start now? A cluster-wide rate limit and a per-key concurrency cap.
--
-- Rate: GCRA books one start every `interval`. A start that comes too early gets a
-- *reservation* (the next free slot, booked for this task) and is told to come back then, so a
-- backlog spreads itself over future slots instead of retrying in a herd. A second GCRA on the
-- actual starts keeps the hard promise when reserved tasks come back late and together: starts
-- stay one interval apart (bursts up to `burst`), so no window of W ms sees more than
-- W / interval + burst of them.
-- Cap: a zset of running task ids scored by lease deadlines, so a dead worker's slot frees itself.
--
-- KEYS: 1 booking GCRA key, 2 slot zset, 3 reservations hash, 4 start GCRA key
--       (placeholders when unused)
-- ARGV: 1 interval ms ('' = no rate limit), 2 burst, 3 slot limit ('' = no cap), 4 slot ttl ms,
--       5 task id
-- Returns 0 to start now, a positive number of ms to wait, or -1 when the cap is full.
local now = time_ms()
local id = ARGV[5]

if ARGV[3] ~= '' then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  if not redis.call('ZSCORE', KEYS[2], id) and redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[3]) then
    return -1
  end
end

if ARGV[1] ~= '' then
  local interval, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
  local reserved = tonumber(redis.call('HGET', KEYS[3], id) or '')
  if not reserved then
    local tat = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), now)
    local allowed_at = tat - (burst - 1) * interval
    local nxt = tat + interval
    redis.call('SET', KEYS[1], nxt, 'PX', math.ceil(nxt - now) + 1000)
    reserved = allowed_at
    if now < allowed_at then
      redis.call('HSET', KEYS[3], id, allowed_at)
      redis.call('PEXPIRE', KEYS[3], math.ceil(allowed_at - now) + 60000)
    end
  end
  if now < reserved then
    return math.ceil(reserved - now)
  end
  local started = math.max(tonumber(redis.call('GET', KEYS[4]) or '0'), now)
  local start_at = started - (burst - 1) * interval
  if now < start_at then
    return math.ceil(start_at - now)
  end
  redis.call('SET', KEYS[4], started + interval, 'PX', math.ceil(started + interval - now) + 1000)
  redis.call('HDEL', KEYS[3], id)
end

if ARGV[3] ~= '' then
  redis.call('ZADD', KEYS[2], now + tonumber(ARGV[4]), id)
  redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[4]) * 2)
end
return 0
