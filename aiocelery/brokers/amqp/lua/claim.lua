-- claim (RabbitMQ): take the tasks of one queue's delayed set that are due (delayed tasks whose
-- time came, retries, new workflow steps, requeued dead letters, and sends whose sender did not
-- confirm within RELAY_CLAIM_MS) for the caller to publish. Each is held for the caller until
-- RELAY_CLAIM_MS later and gets a new publication number, so a message published earlier for it
-- is stale. A task that is final, running or gone is dropped from the set instead.
-- KEYS: 1 delayed zset
-- ARGV: 1 batch limit, 2 task key prefix (the task hashes are not in KEYS: see begin.lua of the
--       Redis broker)
-- Returns {next, ms until the next due task or -1, then pairs: task id, publication}
local now = time_ms()
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
local out = {#ids, -1}
for _, id in ipairs(ids) do
  local key = ARGV[2] .. id
  local state = redis.call('HGET', key, F_STATE)
  if state == 'PENDING' or state == 'RETRY' then
    out[#out + 1] = id
    out[#out + 1] = redis.call('HINCRBY', key, F_PUB, 1)
    redis.call('ZADD', KEYS[1], now + RELAY_CLAIM_MS, id)
  else
    redis.call('ZREM', KEYS[1], id)
  end
end
local nxt = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if nxt[2] ~= nil then
  out[2] = math.max(0, math.floor(tonumber(nxt[2])) - now)
end
return out
