-- APPLY a decided effect (the board module's `Decision`), the same script for every op kind: it
-- checks that the versions the decision relied on still stand, assigns the next seq, writes the
-- elements, logs and publishes the record, and keeps the idempotency record and the caller's
-- undo/redo lists. It builds no client frame and decodes no JSON.
-- ARGV 5 op field ('' = none), 6 ACK id, 7 log cap, 8 undo cap, 9 redo cap,
-- 10 stacks ('push' | 'undo' | 'redo'), 11 the seq leaving the undo/redo list ('' = none),
-- 12 record head, 13 record tail (non-empty: the written elements go between head and tail),
-- 14 the edge index version the decision read ('' = it read none), then counted groups: checks {id, v ('0' = must not exist)}, puts {id, z ('' = on top), body,
-- edge index value ('' = not an edge)}, deletes {id, '1' if an edge}.
-- Returns {'ok', seq} | {'duplicate', 'seq|ackId'} | {'conflict'} | {'missing'}.
local pttl = redis.call('PTTL', KEYS[1])
if pttl == -2 then return {'missing'} end
local op_field = ARGV[5]
if op_field ~= '' then
  local prev = redis.call('HGET', KEYS[5], op_field)
  if prev then return {'duplicate', prev} end
end

-- A node's delete found its edges in the index: an edge added or moved since must not be missed.
if ARGV[14] ~= '' and (redis.call('HGET', KEYS[1], 'edges') or '0') ~= ARGV[14] then
  return {'conflict'}
end
local i = 15
for _ = 1, tonumber(ARGV[15]) do
  local cur = redis.call('HGET', KEYS[2], ARGV[i + 1])
  local want = ARGV[i + 2]
  if want == '0' then
    if cur then return {'conflict'} end
  elseif not cur or string.match(cur, '^{"v":(%d+)') ~= want then
    return {'conflict'}
  end
  i = i + 2
end
local stacks, leaving = ARGV[10], ARGV[11]
-- An undo or redo of a list entry takes it off the list; if it is gone, another tab of the
-- same user got there first.
if leaving ~= '' then
  local list = KEYS[8]
  if stacks == 'redo' then list = KEYS[9] end
  if redis.call('LREM', list, -1, leaving) == 0 then return {'conflict'} end
end

local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
local written, created, edges_moved = {}, false, false
i = i + 1
for _ = 1, tonumber(ARGV[i]) do
  local id, z, body, edge = ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  if z == '' then
    local top = redis.call('ZREVRANGE', KEYS[6], 0, 0, 'WITHSCORES')
    if top[2] then z = string.format('%d', math.floor(tonumber(top[2])) + 1) else z = '1' created = true end
  end
  local stored = '{"v":' .. seq .. ',"z":' .. z .. ',' .. string.sub(body, 2)
  redis.call('HSET', KEYS[2], id, stored)
  redis.call('ZADD', KEYS[6], z, id)
  if edge ~= '' then
    redis.call('HSET', KEYS[7], id, edge)
    expire_new(KEYS[7])
    edges_moved = true
  end
  written[#written + 1] = stored
  i = i + 4
end
i = i + 1
for _ = 1, tonumber(ARGV[i]) do
  redis.call('HDEL', KEYS[2], ARGV[i + 1])
  redis.call('ZREM', KEYS[6], ARGV[i + 1])
  if ARGV[i + 2] == '1' then
    redis.call('HDEL', KEYS[7], ARGV[i + 1])
    edges_moved = true
  end
  i = i + 2
end
if edges_moved then redis.call('HINCRBY', KEYS[1], 'edges', 1) end
-- Elements placed by a client's z may have created the board's keys.
if #written > 0 and not created and pttl > 0 and redis.call('PTTL', KEYS[2]) == -1 then created = true end
if created then expire_new(KEYS[2]) expire_new(KEYS[6]) end

local record = '{"seq":' .. seq .. ',' .. ARGV[12]
if ARGV[13] ~= '' then record = record .. table.concat(written, ',') .. ARGV[13] end
local log_len = redis.call('RPUSH', KEYS[3], record)
if log_len == 1 then expire_new(KEYS[3]) end
local log_max = tonumber(ARGV[7])
-- Trimmed in batches of a 64th of the cap: the log keeps at least log_max entries.
if log_len > log_max + math.floor(log_max / 64) then redis.call('LTRIM', KEYS[3], -log_max, -1) end
if op_field ~= '' then
  redis.call('HSET', KEYS[5], op_field, seq .. '|' .. ARGV[6])
  expire_new(KEYS[5])
end

-- Trimmed back to `cap` once an eighth over it, like the log: not a call on every op.
local function push(key, cap)
  local len = redis.call('RPUSH', key, seq)
  if len == 1 then expire_new(key) end
  if len > cap + math.floor(cap / 8) then redis.call('LTRIM', key, -cap, -1) end
end
if stacks == 'push' then
  push(KEYS[8], tonumber(ARGV[8]))
  -- A new op ends the user's redo chain, as in any editor.
  redis.call('DEL', KEYS[9])
elseif stacks == 'undo' then
  push(KEYS[9], tonumber(ARGV[9]))
else
  push(KEYS[8], tonumber(ARGV[8]))
end
redis.call('PUBLISH', channel, record)
touch_if_due(pttl)
return {'ok', seq}
