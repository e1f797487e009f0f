-- prelude: what the scripts share. scripts.py's load_script() puts it before every script's text,
-- so each script sees these locals. It only defines values and functions and runs no Redis
-- command: a script calls TIME when it calls time_ms(), never because of this prelude.
-- It runs on every call, like the script after it. A function a script defines is built on every
-- call too, with one upvalue for each of these names it uses: enqueue, begin and settle do their
-- per-item work in the main chunk, where these names are plain locals.

-- The Redis server's clock in ms (TIME says seconds and microseconds).
local function time_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- The final states (aiocelery/states.py READY_STATES): a record in one never changes again.
local READY_STATES = {SUCCESS = true, FAILURE = true, DEAD = true, REVOKED = true}

-- A task record's hash fields (<prefix>:task:<id>).
local F_STATE = 'state'
local F_ATTEMPT = 'attempt'          -- the fencing token: begin.lua bumps it at each new start
local F_CRASHES = 'crashes'
local F_RETRIES = 'retries'
local F_DEFERRALS = 'deferrals'
local F_NAME = 'name'
local F_QUEUE = 'queue'
local F_PAYLOAD = 'payload'
local F_WF = 'wf'                    -- workflow json
local F_CREATED_MS = 'created_ms'
local F_STARTED_MS = 'started_ms'
local F_DONE_MS = 'done_ms'
local F_DUE_MS = 'due_ms'
local F_EXPIRES_MS = 'expires_ms'
local F_REVOKED = 'revoked'          -- the revoke reason, set while the task is not final yet
local F_REASON = 'reason'
local F_RESULT = 'result'
local F_ERROR = 'error'
local F_WORKER = 'worker'
local F_ENTRY = 'entry'              -- the stream entry the current attempt runs from
local F_CONSUMER = 'consumer'
local F_SETTLED = 'settled'          -- '<attempt>:<state>' of the last settle
local F_PLACEHOLDER = 'placeholder'  -- '1' on a workflow step's record made before the step is sent
local F_PUB = 'pub'                  -- RabbitMQ only: the publication a delivery must carry to start
local F_LEASE = 'lease_ms'           -- RabbitMQ only: until when the running attempt's worker holds it

-- Stream entries' fields: a queue's entry holds the task id alone; a dead letter also the reason,
-- the time and the worker, and where known the task's name and the error.
local E_ID = 'id'
local E_NAME = 'name'
local E_REASON = 'reason'
local E_TIME_MS = 'time_ms'
local E_WORKER = 'worker'
local E_ERROR = 'error'

-- A chord's hash fields (<prefix>:chord:<id>).
local C_TOTAL = 'total'
local C_DONE = 'done'
local C_CB = 'cb'                    -- the callback's template json
local C_ERRBACKS = 'errbacks'
local C_CASCADE = 'cascade'          -- stored by chord_open.lua; settle.lua reads a chord's cascade from its ops
local C_FAILED = 'failed'            -- the id of the first member that failed
local C_RESULT = 'r:'                -- then the member's index: its result

-- On RabbitMQ the queue is not in Redis: a queue's "stream" key is '' (brokers/redis/keys.py,
-- Keys(streams=False)), and a task made ready goes to the delayed set due now, for a relay to
-- publish (docs/delivery.md, "RabbitMQ"). A sender publishes its own tasks at once: it holds them
-- in the delayed set until RELAY_CLAIM_MS later (half a ms past the integer due times of retries,
-- so a claim's score is never a due time), and a relay publishes them only if the sender did not.
local RELAY_CLAIM_MS = 30000.5

local function push_ready(stream, delayed, wake, id, now)
  if stream == '' then
    redis.call('ZADD', delayed, now, id)
    redis.call('PUBLISH', wake, now)
  else
    redis.call('XADD', stream, '*', E_ID, id)
  end
end
