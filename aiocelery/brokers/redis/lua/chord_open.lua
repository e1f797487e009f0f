-- prepare: before a workflow's first tasks are sent, create its chords' counters and a
-- placeholder record (PENDING, not queued) for every later step, so handles on them can be
-- awaited at once. Idempotent: existing chords and records are left alone.
-- KEYS: 1..n chord hashes, then m placeholder task hashes
-- ARGV: 1 n, 2 ttl ms, 3 now-unused, then per chord: total, callback json, errbacks json,
--       cascade json; then per placeholder: name, queue
local n, ttl = tonumber(ARGV[1]), tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i = 1, n do
  local a = 4 + (i - 1) * 4
  if redis.call('HSETNX', KEYS[i], 'total', ARGV[a]) == 1 then
    redis.call('HSET', KEYS[i], 'done', 0, 'cb', ARGV[a + 1], 'errbacks', ARGV[a + 2], 'cascade', ARGV[a + 3])
  end
  redis.call('PEXPIRE', KEYS[i], ttl)
end
local a = 4 + n * 4
for i = n + 1, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 0 then
    redis.call('HSET', KEYS[i], 'name', ARGV[a], 'queue', ARGV[a + 1], 'state', 'PENDING', 'placeholder', 1,
      'attempt', 0, 'created_ms', now)
    redis.call('PEXPIRE', KEYS[i], ttl)
  end
  a = a + 2
end
return 1
