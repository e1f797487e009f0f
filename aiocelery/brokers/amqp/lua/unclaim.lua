-- unclaim (RabbitMQ): after RabbitMQ confirmed publications, drop the claims that held them in the
-- delayed set: each only while its publication is still the task's current one and its score is
-- still a claim's (fractional: see RELAY_CLAIM_MS). A task that meanwhile ran and went back to the
-- delayed set to retry (a newer publication number, an integer due time) keeps its place.
-- KEYS: 1 delayed zset
-- ARGV: 1 task key prefix (the task hashes are not in KEYS), then pairs: task id, publication
local removed = 0
for i = 2, #ARGV, 2 do
  local id = ARGV[i]
  local score = tonumber(redis.call('ZSCORE', KEYS[1], id) or '0')
  if score ~= math.floor(score) and redis.call('HGET', ARGV[1] .. id, F_PUB) == ARGV[i + 1] then
    removed = removed + redis.call('ZREM', KEYS[1], id)
  end
end
return removed
