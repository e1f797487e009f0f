-- admit: may this task start now? A cluster-wide rate limit (GCRA: one token every interval,
-- bursts up to `burst`) and a per-key concurrency cap (a zset of running task ids whose scores
-- are lease deadlines, so a dead worker's slot frees itself). Both are checked before either
-- is taken, so a refused start consumes nothing.
-- KEYS: 1 rate key (or a placeholder), 2 slot zset (or a placeholder)
-- ARGV: 1 interval ms ('' = no rate limit), 2 burst, 3 slot limit ('' = no cap), 4 slot ttl ms,
--       5 task id
-- Returns 0 to start now, a positive number of ms to wait for the rate, or -1 when the cap is full.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local tat
if ARGV[1] ~= '' then
  local interval, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
  tat = tonumber(redis.call('GET', KEYS[1]) or '0')
  if tat < now then
    tat = now
  end
  local allowed_at = tat - (burst - 1) * interval
  if now < allowed_at then
    return math.ceil(allowed_at - now)
  end
end
if ARGV[3] ~= '' then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  if not redis.call('ZSCORE', KEYS[2], ARGV[5]) and redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[3]) then
    return -1
  end
  redis.call('ZADD', KEYS[2], now + tonumber(ARGV[4]), ARGV[5])
  redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[4]) * 2)
end
if ARGV[1] ~= '' then
  local nxt = tat + tonumber(ARGV[1])
  redis.call('SET', KEYS[1], nxt, 'PX', math.ceil(nxt - now) + 1000)
end
return 0
