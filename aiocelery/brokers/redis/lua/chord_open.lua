-- prepare: before a workflow's first tasks are sent, create its chords' counters and a
-- placeholder record (PENDING, not queued) for every later step, so handles on them can be
-- awaited at once. Idempotent: existing chords and records are left alone.
-- KEYS: 1..n chord hashes, then m placeholder task hashes
-- ARGV: 1 n, 2 ttl ms, 3 now-unused, then per chord: total, callback json, errbacks json,
--       cascade json; then per placeholder: name, queue
local A_CHORDS, A_TTL, A_FIRST = 1, 2, 4  -- A_FIRST: where the per-chord arguments start
local CHORD_ARGS, PLACEHOLDER_ARGS = 4, 2
local n, ttl = tonumber(ARGV[A_CHORDS]), tonumber(ARGV[A_TTL])
local now = time_ms()
for i = 1, n do
  local a = A_FIRST + (i - 1) * CHORD_ARGS
  if redis.call('HSETNX', KEYS[i], C_TOTAL, ARGV[a]) == 1 then
    redis.call('HSET', KEYS[i], C_DONE, 0, C_CB, ARGV[a + 1], C_ERRBACKS, ARGV[a + 2], C_CASCADE, ARGV[a + 3])
  end
  redis.call('PEXPIRE', KEYS[i], ttl)
end
local a = A_FIRST + n * CHORD_ARGS
for i = n + 1, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 0 then
    redis.call('HSET', KEYS[i], F_NAME, ARGV[a], F_QUEUE, ARGV[a + 1], F_STATE, 'PENDING', F_PLACEHOLDER, 1,
      F_ATTEMPT, 0, F_CREATED_MS, now)
    redis.call('PEXPIRE', KEYS[i], ttl)
  end
  a = a + PLACEHOLDER_ARGS
end
return 1
