-- release (RabbitMQ): before a stopping worker hands its running messages back to RabbitMQ
-- (basic.nack with requeue), put each task back to PENDING, unrun and uncounted (no crash, no
-- retry), so the redelivered message starts it at once wherever it lands.
-- KEYS: task hashes
-- ARGV: 1 consumer, then the delivery tokens in KEYS order
-- Returns how many were this consumer's.
local released = 0
for i = 1, #KEYS do
  local f = redis.call('HMGET', KEYS[i], F_STATE, F_ENTRY, F_CONSUMER)
  if f[1] == 'STARTED' and f[2] == ARGV[i + 1] and f[3] == ARGV[1] then
    redis.call('HSET', KEYS[i], F_STATE, 'PENDING', F_LEASE, 0)
    released = released + 1
  end
end
return released
