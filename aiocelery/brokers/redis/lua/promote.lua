-- promote: move due task ids from the delayed set to the stream (XADD first, then ZREM), in
-- one atomic step, so many workers promote each task exactly once.
-- KEYS: 1 delayed zset, 2 stream
-- ARGV: 1 batch limit
-- Returns {moved, ms until the next due task or -1}
local now = time_ms()
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
for _, id in ipairs(ids) do
  redis.call('XADD', KEYS[2], '*', E_ID, id)
  redis.call('ZREM', KEYS[1], id)
end
local nxt = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if nxt[2] == nil then
  return {#ids, -1}
end
return {#ids, math.max(0, tonumber(nxt[2]) - now)}
