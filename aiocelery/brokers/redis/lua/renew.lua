-- renew: extend the leases of a worker's running deliveries of one queue (the heartbeat).
-- A lease is the delivery's idle time in the consumer group's pending list; XCLAIM ... JUSTID
-- with min-idle 0 resets it without counting a delivery. Fenced: only where the delivery is
-- still pending for this consumer AND the task is still STARTED on this attempt. Never renew
-- without that check: a zombie would steal work back.
-- KEYS: 1 stream, 2.. task hashes (one per delivery, in ARGV order)
-- ARGV: 1 group, 2 consumer, then pairs: entry id, attempt
-- Returns the entry ids whose lease is lost.
local K_STREAM, K_TASKS = 1, 2          -- K_TASKS: the first delivery's task hash
local A_GROUP, A_CONSUMER, A_PAIRS = 1, 2, 3
local stream, group, consumer = KEYS[K_STREAM], ARGV[A_GROUP], ARGV[A_CONSUMER]
local lost = {}
local n = 0  -- deliveries done so far
for i = A_PAIRS, #ARGV, 2 do
  local entry, attempt = ARGV[i], ARGV[i + 1]
  local key = KEYS[K_TASKS + n]
  n = n + 1
  local owned = redis.call('XPENDING', stream, group, entry, entry, 1, consumer)
  local f = redis.call('HMGET', key, F_STATE, F_ATTEMPT)
  if #owned == 0 or f[1] ~= 'STARTED' or f[2] ~= attempt then
    lost[#lost + 1] = entry
  else
    redis.call('XCLAIM', stream, group, consumer, 0, entry, 'JUSTID')
  end
end
return lost
