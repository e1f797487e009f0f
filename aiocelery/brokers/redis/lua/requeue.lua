-- requeue: move a dead-lettered task back to its queue, keeping its id; crash count reset.
-- KEYS: 1 task hash, 2 stream ('' on RabbitMQ), 3 dead stream, 4 delayed zset
-- ARGV: 1 dead entry id, 2 task id, 3 wake channel
local state = redis.call('HGET', KEYS[1], F_STATE)
if not state then
  return {0, 'the task record is gone (expired or never stored); send the task again'}
end
if (redis.call('HGET', KEYS[1], F_PAYLOAD) or '') == '' then  -- settle.lua empties it on SUCCESS
  return {0, 'the task record has no payload left; send the task again'}
end
if state ~= 'DEAD' and state ~= 'FAILURE' then
  return {0, 'the task is ' .. state .. ', not dead'}
end
redis.call('PERSIST', KEYS[1])
redis.call('HSET', KEYS[1], F_STATE, 'PENDING', F_CRASHES, 0, F_REASON, '', F_ERROR, '', F_RESULT, '')
push_ready(KEYS[2], KEYS[4], ARGV[3], ARGV[2], time_ms())
redis.call('XDEL', KEYS[3], ARGV[1])
return {1, 'PENDING'}
