-- revoke: a queued, delayed or retry-waiting task becomes REVOKED at once (it will be skipped
-- when its delivery comes up); a running one is marked so no later redelivery runs it, and with
-- terminate its worker is told over pub/sub to cancel it now. Final tasks are left alone.
-- KEYS: 1 task hash
-- ARGV: 1 ttl ms, 2 done channel, 3 revoke channel, 4 '1' to terminate, 5 task id, 6 reason
-- Returns the state after the call ('' when the task is unknown).
local state = redis.call('HGET', KEYS[1], F_STATE)
if not state then
  return ''
end
if READY_STATES[state] then
  return state
end
local now = time_ms()
redis.call('HSET', KEYS[1], F_REVOKED, ARGV[6])
if state == 'STARTED' then
  if ARGV[4] == '1' then
    redis.call('PUBLISH', ARGV[3], ARGV[5])
  end
  return state
end
redis.call('HSET', KEYS[1], F_STATE, 'REVOKED', F_REASON, ARGV[6], F_DONE_MS, now)
redis.call('PEXPIRE', KEYS[1], ARGV[1])
redis.call('PUBLISH', ARGV[2], 'REVOKED')
return 'REVOKED'
