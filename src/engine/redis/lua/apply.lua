-- APPLY a decided effect (the board module's `Decision`), the same script for every op kind: it
-- checks that the versions the decision relied on still stand, assigns the next seq, writes the
-- elements, logs and publishes the record, and keeps the idempotency record and the caller's
-- undo/redo lists. It builds no client frame and decodes no JSON.
-- ARGV 5 op field ('' = none), 6 ACK id, 7 log cap, 8 undo cap, 9 redo cap,
-- 10 stacks ('push' | 'undo' | 'redo'), 11 the seq leaving the undo/redo list ('' = none),
-- 12 record head, 13 record tail (non-empty: the written elements go between head and tail),
-- 14 the edge index version the decision read ('' = it read none), then counted groups:
-- checks {id, v ('0' = must not exist)}, puts {id, z, body, edge index value ('' = not an
-- edge)}, deletes {id, '1' if an edge}. A put's z is '' (place on top), '=<z>' (the element's
-- own, unchanged) or '<z>' (placed there by this op).
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
-- Checks that an id is free are left to HSETNX when that id is also written (an add): one call,
-- not two. The others are read now.
local i, fresh = 15, {}
for _ = 1, tonumber(ARGV[15]) do
  local id, want = ARGV[i + 1], ARGV[i + 2]
  if want == '0' then
    fresh[id] = true
  else
    local cur = redis.call('HGET', KEYS[2], id)
    if not cur or string.match(cur, '^{"v":(%d+)') ~= want then return {'conflict'} end
  end
  i = i + 2
end
local puts_at = i + 1
-- Free ids that are not written by this op are checked here.
local put_ids = {}
for k = 1, tonumber(ARGV[puts_at]) do put_ids[ARGV[puts_at + (k - 1) * 4 + 1]] = true end
for id in pairs(fresh) do
  if not put_ids[id] and redis.call('HEXISTS', KEYS[2], id) == 1 then return {'conflict'} end
end
local stacks, leaving = ARGV[10], ARGV[11]
-- An undo or redo of a list entry takes it off the list; if it is gone, another tab of the
-- same user got there first.
if leaving ~= '' then
  local list = KEYS[7]
  if stacks == 'redo' then list = KEYS[8] end
  if redis.call('LREM', list, -1, leaving) == 0 then return {'conflict'} end
end

local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
local written, done_ids, edges_moved, ztop_was = {}, {}, false, nil
-- Undoes the writes so far when an id meant to be free turns out taken (an add needs no read,
-- so this is where a taken id is found): the op must leave nothing behind.
local function revert()
  for _, id in ipairs(done_ids) do
    redis.call('HDEL', KEYS[2], id)
    redis.call('HDEL', KEYS[6], id)
  end
  redis.call('HINCRBY', KEYS[1], 'seq', -1)
  if ztop_was then redis.call('HSET', KEYS[1], 'ztop', ztop_was) end
  if leaving ~= '' then
    local list = KEYS[7]
    if stacks == 'redo' then list = KEYS[8] end
    redis.call('RPUSH', list, leaving)
  end
  return {'conflict'}
end
i = puts_at
for _ = 1, tonumber(ARGV[i]) do
  local id, z, body, edge = ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  if z == '' then
    -- On top: above every z this room has placed (`ztop` never goes down).
    local top = redis.call('HINCRBY', KEYS[1], 'ztop', 1)
    ztop_was = ztop_was or string.format('%d', top - 1)
    z = string.format('%d', top)
  elseif string.sub(z, 1, 1) == '=' then
    z = string.sub(z, 2)
  else
    local top = redis.call('HGET', KEYS[1], 'ztop') or '0'
    local floor = math.floor(tonumber(z))
    if floor > tonumber(top) then
      ztop_was = ztop_was or top
      redis.call('HSET', KEYS[1], 'ztop', string.format('%d', floor))
    end
  end
  local stored = '{"v":' .. seq .. ',"z":' .. z .. ',' .. string.sub(body, 2)
  if fresh[id] then
    if redis.call('HSETNX', KEYS[2], id, stored) == 0 then return revert() end
  else
    redis.call('HSET', KEYS[2], id, stored)
  end
  done_ids[#done_ids + 1] = id
  if edge ~= '' then
    redis.call('HSET', KEYS[6], id, edge)
    expire_new(KEYS[6])
    edges_moved = true
  end
  written[#written + 1] = stored
  i = i + 4
end
i = i + 1
for _ = 1, tonumber(ARGV[i]) do
  redis.call('HDEL', KEYS[2], ARGV[i + 1])
  if ARGV[i + 2] == '1' then
    redis.call('HDEL', KEYS[6], ARGV[i + 1])
    edges_moved = true
  end
  i = i + 2
end
if edges_moved then redis.call('HINCRBY', KEYS[1], 'edges', 1) end

local record = '{"seq":' .. seq .. ',' .. ARGV[12]
if ARGV[13] ~= '' then record = record .. table.concat(written, ',') .. ARGV[13] end
local log_len = redis.call('RPUSH', KEYS[3], record)
if log_len == 1 then expire_new(KEYS[3]) end
local log_max = tonumber(ARGV[7])
-- Trimmed in batches of a 64th of the cap: the log keeps at least log_max entries.
if log_len > log_max + math.floor(log_max / 64) then redis.call('LTRIM', KEYS[3], -log_max, -1) end
-- The board and idempotency hashes exist from the room's creation (a placeholder field keeps
-- them), with the room's TTL: writing into them needs no expiry of its own.
if op_field ~= '' then redis.call('HSET', KEYS[5], op_field, seq .. '|' .. ARGV[6]) end

-- Trimmed back to `cap` once an eighth over it, like the log: not a call on every op.
local function push(key, cap)
  local len = redis.call('RPUSH', key, seq)
  if len == 1 then expire_new(key) end
  if len > cap + math.floor(cap / 8) then redis.call('LTRIM', key, -cap, -1) end
end
if stacks == 'push' then
  push(KEYS[7], tonumber(ARGV[8]))
  -- A new op ends the user's redo chain, as in any editor.
  redis.call('DEL', KEYS[8])
elseif stacks == 'undo' then
  push(KEYS[8], tonumber(ARGV[9]))
else
  push(KEYS[7], tonumber(ARGV[8]))
end
redis.call('PUBLISH', channel, record)
touch_if_due(pttl)
return {'ok', seq}
