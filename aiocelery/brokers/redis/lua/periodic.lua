-- periodic: remember the latest fire time a scheduler handled for an entry (kept as a maximum,
-- so schedulers racing or with skewed clocks never move it back). Returns the previous value.
-- KEYS: 1 the entry's key
-- ARGV: 1 fire time (ms)
local last = redis.call('GET', KEYS[1])
if not last or tonumber(ARGV[1]) > tonumber(last) then
  redis.call('SET', KEYS[1], ARGV[1])
end
return last
