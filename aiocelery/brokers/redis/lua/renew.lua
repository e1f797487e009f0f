-- renew: extend the leases of a worker's running deliveries of one queue (the heartbeat).
-- A lease is the delivery's idle time in the consumer group's pending list; XCLAIM ... JUSTID
-- with min-idle 0 resets it without counting a delivery. Fenced: only where the delivery is
-- still pending for this consumer AND the task is still STARTED on this attempt. Never renew
-- without that check: a zombie would steal work back.
-- KEYS: 1 stream, 2.. task hashes (one per delivery, in ARGV order)
-- ARGV: 1 group, 2 consumer, then pairs: entry id, attempt
-- Returns the entry ids whose lease is lost.
local lost = {}
for i = 3, #ARGV, 2 do
  local entry, attempt = ARGV[i], ARGV[i + 1]
  local key = KEYS[2 + (i - 3) / 2]
  local owned = redis.call('XPENDING', KEYS[1], ARGV[1], entry, entry, 1, ARGV[2])
  local f = redis.call('HMGET', key, 'state', 'attempt')
  if #owned == 0 or f[1] ~= 'STARTED' or f[2] ~= attempt then
    lost[#lost + 1] = entry
  else
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, entry, 'JUSTID')
  end
end
return lost
