-- renew (RabbitMQ): extend the leases of a worker's running attempts (the heartbeat), each only
-- while its task is STARTED on that attempt; RabbitMQ itself keeps the message while the worker's
-- connection lives, the lease tells other workers that a redelivered message's task still runs.
-- KEYS: task hashes, one per attempt
-- ARGV: 1 lease ms, then the attempts in KEYS order
-- Returns the 1-based positions whose lease is lost.
local now = time_ms()
local lease = tonumber(ARGV[1])
local lost = {}
for i = 1, #KEYS do
  local f = redis.call('HMGET', KEYS[i], F_STATE, F_ATTEMPT)
  if f[1] ~= 'STARTED' or f[2] ~= ARGV[i + 1] then
    lost[#lost + 1] = i
  else
    redis.call('HSET', KEYS[i], F_LEASE, now + lease)
  end
end
return lost
