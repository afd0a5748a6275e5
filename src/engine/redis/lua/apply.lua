-- APPLY a decided effect (the board module's `Decision`), the same script for every op kind: it
-- checks that the versions the decision relied on still stand, assigns the next seq, writes the
-- elements, logs and publishes the record, and keeps the idempotency record and the caller's
-- undo/redo lists. It builds no client frame and decodes no JSON.
-- ARGV 5 op field ('' = none), 6 ACK id, 7 limits and usage: 'maxElements maxBytes maxUserBytes
-- dElements dBytes nUsers replayWindow snapshotEvery historyMax' (`domain/quota.rs`; the last two
-- are `history.rs`'s), with the nUsers {userId, dBytes} pairs last in ARGV, 8 undo cap, 9 redo cap,
-- 10 stacks ('push' | 'undo' | 'redo'), 11 the seq leaving the undo/redo list ('' = none),
-- 12 record head, 13 record tail (non-empty: the written elements go between head and tail),
-- 14 the edge index version the decision read ('' = it read none), then counted groups:
-- checks {id, v ('0' = must not exist); an empty id checks the room's seq is v}, puts {id, z, body (the element's JSON without its
-- opening brace), edge index value ('' = not an
-- edge)}, deletes {id, '1' if an edge}. A put's z is '' (place on top), '=<z>' (the element's
-- own, unchanged) or '<z>' (placed there by this op), after a '!' when the id must be free
-- (an add: the HSETNX that writes it is the check).
-- Returns {'ok', seq} | {'duplicate', 'seq|ackId'} | {'conflict'} | {'missing'} | {'frozen'} |
-- {'quota', why}.
-- The board hash's TTL is the room's (they are refreshed together); gone, the room is missing
-- or compacted.
local pttl = redis.call('PTTL', KEYS[2])
if pttl == -2 then return not_live() end
local op_field = ARGV[5]

-- A node's delete found its edges in the index: an edge added or moved since must not be missed.
if ARGV[14] ~= '' and (redis.call('HGET', KEYS[1], 'edges') or '0') ~= ARGV[14] then
  return {'conflict'}
end
local i = 15
for _ = 1, num(ARGV[15]) do
  local id, want = ARGV[i + 1], ARGV[i + 2]
  if id == '' then
    -- The decision read the whole board (a restore): nothing may have happened since.
    if (redis.call('HGET', KEYS[1], 'seq') or '0') ~= want then return {'conflict'} end
  else
    local cur = redis.call('HGET', KEYS[2], id)
    if want == '0' then
      if cur then return {'conflict'} end
    elseif not cur or string.match(cur, '^{"v":(%d+)') ~= want then
      return {'conflict'}
    end
  end
  i = i + 2
end
local stacks, leaving = ARGV[10], ARGV[11]
-- An undo or redo of a list entry takes it off the list; if it is gone, another tab of the
-- same user got there first. Looked for now, removed once nothing can fail any more.
local leaving_list = nil
if leaving ~= '' then
  leaving_list = KEYS[9]
  if stacks == 'redo' then leaving_list = KEYS[10] end
  if not redis.call('LPOS', leaving_list, leaving) then return {'conflict'} end
end

-- Quotas, before anything is written: what the op adds to the room and to each creator's bytes
-- (the room hash's `bytes` and `b:<userId>`). Freeing is never refused. The messages are the
-- memory engine's (`Usage::check`), word for word.
-- (One match and num(): a third of what a gmatch loop into a table costs, on every op.)
-- Numbers handed back to Redis go as the text they came in: a Lua number is printed with
-- "%.17g" on every redis.call.
local max_elements, max_bytes, max_user, d_elements, d_bytes_text, n_users, window, every, keep =
  string.match(ARGV[7], '^(%S+) (%S+) (%S+) (%S+) (%S+) (%S+) (%S+) (%S+) (%S+)$')
max_elements, max_bytes, max_user = num(max_elements), num(max_bytes), num(max_user)
local d_bytes = num(d_bytes_text)
d_elements, n_users, window = num(d_elements), num(n_users), num(window)
if d_elements > 0 and redis.call('HLEN', KEYS[2]) - 1 + d_elements > max_elements then
  return {'quota', 'this room holds at most ' .. max_elements .. ' elements'}
end
local counted = {}
local function uncount()
  for _, c in ipairs(counted) do redis.call('HINCRBY', KEYS[1], c[1], -c[2]) end
end
if d_bytes ~= 0 then
  local total = redis.call('HINCRBY', KEYS[1], 'bytes', d_bytes_text)
  counted[1] = {'bytes', d_bytes}
  if d_bytes > 0 and total > max_bytes then
    uncount()
    return {'quota', 'this room holds at most ' .. max_bytes .. ' bytes'}
  end
end
local users_at = #ARGV - 2 * n_users
for k = 1, n_users do
  local user, delta_text = ARGV[users_at + 2 * k - 1], ARGV[users_at + 2 * k]
  local field, delta = 'b:' .. user, num(delta_text)
  local total = redis.call('HINCRBY', KEYS[1], field, delta_text)
  counted[#counted + 1] = {field, delta}
  if delta > 0 and total > max_user then
    uncount()
    return {'quota', user .. "'s elements take at most " .. max_user .. ' bytes of a room'}
  end
end

local seq = redis.call('HINCRBY', KEYS[1], 'seq', '1')
-- Spelled out once: Lua would print the number afresh (and with %.14g) at every use below.
local seq_text = string.format('%d', seq)
local written, done_ids, edges_moved, ztop_was = {}, {}, false, nil
-- Undoes what this call did so far: when the op id was sent before (the HSETNX below is the
-- check) or an id meant to be free turns out taken (an add reads nothing first, so this is
-- where that shows). The op must leave nothing behind.
local function revert()
  for _, id in ipairs(done_ids) do
    redis.call('HDEL', KEYS[2], id)
    redis.call('HDEL', KEYS[6], id)
  end
  redis.call('HINCRBY', KEYS[1], 'seq', -1)
  uncount()
  if ztop_was then redis.call('HSET', KEYS[1], 'ztop', string.format('%d', ztop_was)) end
end
-- The idempotency record, written first: one call checks and records it; the previous
-- generation (below) is looked at too.
if op_field ~= '' then
  if redis.call('HSETNX', KEYS[5], op_field, seq_text .. '|' .. ARGV[6]) == 0 then
    revert()
    return {'duplicate', redis.call('HGET', KEYS[5], op_field)}
  end
  local earlier = redis.call('HGET', KEYS[8], op_field)
  if earlier then
    redis.call('HDEL', KEYS[5], op_field)
    revert()
    return {'duplicate', earlier}
  end
end
i = i + 1
for _ = 1, num(ARGV[i]) do
  local id, z, body, edge = ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  local fresh = string.byte(z, 1) == 33 -- '!'
  if fresh then z = string.sub(z, 2) end
  if z == '' then
    -- On top: above every z this room has placed (`ztop` never goes down).
    z = redis.call('HINCRBY', KEYS[1], 'ztop', '1')
    ztop_was = ztop_was or z - 1
    z = string.format('%d', z)
  elseif string.sub(z, 1, 1) == '=' then
    z = string.sub(z, 2)
  else
    local top = redis.call('HGET', KEYS[1], 'ztop') or '0'
    local floor = math.floor(num(z))
    if floor > num(top) then
      ztop_was = ztop_was or top
      redis.call('HSET', KEYS[1], 'ztop', string.format('%d', floor))
    end
  end
  local stored = '{"v":' .. seq_text .. ',"z":' .. z .. ',' .. body
  if fresh then
    if redis.call('HSETNX', KEYS[2], id, stored) == 0 then
      if op_field ~= '' then redis.call('HDEL', KEYS[5], op_field) end
      revert()
      return {'conflict'}
    end
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
if leaving_list then redis.call('LREM', leaving_list, -1, leaving) end
i = i + 1
for _ = 1, num(ARGV[i]) do
  redis.call('HDEL', KEYS[2], ARGV[i + 1])
  if ARGV[i + 2] == '1' then
    redis.call('HDEL', KEYS[6], ARGV[i + 1])
    edges_moved = true
  end
  i = i + 2
end
if edges_moved then redis.call('HINCRBY', KEYS[1], 'edges', 1) end

-- Built in one concatenation: Redis's Lua hashes every byte of every string it makes, so each
-- intermediate string (a head, a one-element table.concat) would cost its length again.
local record
if ARGV[13] == '' then
  record = '{"seq":' .. seq_text .. ',' .. ARGV[12]
elseif #written == 1 then
  record = '{"seq":' .. seq_text .. ',' .. ARGV[12] .. written[1] .. ARGV[13]
else
  record = '{"seq":' .. seq_text .. ',' .. ARGV[12] .. table.concat(written, ',') .. ARGV[13]
end
-- The log is history (§5): it is trimmed only by keep_history below, which first folds what it
-- drops into the room's base snapshot.
if redis.call('RPUSH', KEYS[3], record) == 1 then expire_new(KEYS[3]) end
-- (The board and idempotency hashes exist from the room's creation, kept by a placeholder
-- field, with the room's TTL: writing into them needs no expiry of its own.)

-- Trimmed back to `cap` once an eighth over it, like the log: not a call on every op.
local function push(key, cap)
  local len = redis.call('RPUSH', key, seq_text)
  if len == 1 then expire_new(key) end
  if len > cap + math.floor(cap / 8) then redis.call('LTRIM', key, -cap, -1) end
end
if stacks == 'push' then
  push(KEYS[9], num(ARGV[8]))
  -- A new op ends the user's redo chain, as in any editor.
  redis.call('DEL', KEYS[10])
elseif stacks == 'undo' then
  push(KEYS[10], num(ARGV[9]))
else
  push(KEYS[9], num(ARGV[8]))
end
-- Idempotency records live two replay windows at most: every `window` seqs the current
-- generation becomes the previous one (RENAME keeps its TTL) and the oldest goes.
if seq % window == 0 then
  redis.call('RENAME', KEYS[5], KEYS[8])
  redis.call('HSET', KEYS[5], '', '')
  expire_new(KEYS[5])
end

-- The room's derived history (§5, `docs/REDIS.md`): on a multiple of `every`, once `every` ops
-- and as many ops as the last snapshot holds elements have passed (`history::snapshot_due`), a
-- snapshot of the board after this op: a copy of the live board, which is the board at this
-- seq. Then, past `keep` ops, the oldest fold into the base (`history::fold_point`): the
-- newest snapshot at or before the fold point becomes it, and the log is trimmed to it.
local function keep_history()
  local s, n = string.match(redis.call('HGET', KEYS[7], 'last') or '', '^(%d+):(%d+)$')
  -- `last` names the newest snapshot and its size; gone (folded, deleted by hand): due now.
  if s and redis.call('EXISTS', snapshot_key(s)) == 1
      and seq - num(s) < math.max(every, num(n)) then
    return
  end
  redis.call('COPY', KEYS[2], snapshot_key(seq_text), 'REPLACE')
  redis.call('HSET', KEYS[7], 's:' .. seq_text, '',
    'last', seq_text .. ':' .. (redis.call('HLEN', KEYS[2]) - 1))
  expire_new(KEYS[7])
  if seq - keep < every then return end
  local fold = newest_snapshot(seq - keep - (seq - keep) % every)
  local first = seq - redis.call('LLEN', KEYS[3]) + 1
  -- The log starts right after the base: a fold point before it is folded already, which
  -- this tells without reading the base (a whole board, made a Lua string).
  if not fold or fold < first then return end
  local base = redis.call('HGET', KEYS[7], 'base')
  if base and fold <= num(string.match(base, '^{"seq":(%d+)')) then return end
  -- Made text once per fold: the base is read whole by every question about older seqs.
  redis.call('HSET', KEYS[7], 'base', snapshot_text(fold))
  for _, field in ipairs(redis.call('HKEYS', KEYS[7])) do
    local at = tonumber(string.match(field, '^s:(%d+)$'))
    if at and at <= fold then
      redis.call('HDEL', KEYS[7], field)
      redis.call('DEL', snapshot_key(at))
    end
  end
  redis.call('LTRIM', KEYS[3], fold - first + 1, -1)
end
every, keep = num(every), num(keep)
if every > 0 and seq % every == 0 then keep_history() end

redis.call(publish, channel, record)
touch_if_due(pttl)
return {'ok', seq}
