-- Shared by every room script. KEYS, always in this order:
--   1 room:{id} (hash)  2 :strokes (hash: element id -> element, and the placeholder '')
--   3 :log (list of records)  4 :users (hash)  5 :ops (hash, and the placeholder '')  6 :edges (hash)
--   7 :history (hash: base, s:<seq> snapshots' index, last, v:<versionId> versions)
--   8 :ops-prev (hash: the previous generation of idempotency records)
--   and for scripts acting for one user: 9 :undo:<userId> (list)  10 :redo:<userId> (list);
--   last, always: :members (hash), which only touch() uses (it walks #KEYS), so members expire
--   with the room.
-- ARGV 1..4, always: channel, room TTL in ms (0 = forever), expiresAt (unix ms), and the command
-- that publishes on the channel: PUBLISH, or SPUBLISH when instances subscribe with SSUBSCRIBE
-- (`pubsub_mode = sharded`: a PUBLISH would never reach a shard-channel subscriber).
-- Stored JSON is produced by the gateway with a fixed field order (elements start {"v":..,"z":..,
-- presence entries {"userId":..), so scripts read what they need by prefix without decoding.
-- A number from an argument. tonumber() parses a string twice (lua_isnumber, then lua_tonumber:
-- two strtod calls); arithmetic coerces it with one. Our arguments are always numerals.
local function num(s) return s + 0 end

local channel, ttl_ms, expires_at, publish = ARGV[1], num(ARGV[2]), ARGV[3], ARGV[4]

-- The JSON string token that starts at `pos` (a '"'), escapes included.
local function string_token(s, pos)
  if string.byte(s, pos) ~= 34 then return nil end
  local i = pos + 1
  while true do
    local c = string.byte(s, i)
    if c == nil then return nil end
    if c == 92 then i = i + 2
    elseif c == 34 then return string.sub(s, pos, i)
    else i = i + 1 end
  end
end

-- Present users, one entry per distinct userId: a set of userId tokens and the member JSONs.
local function distinct_users()
  local seen, list = {}, {}
  for _, v in ipairs(redis.call('HVALS', KEYS[4])) do
    local uid = string_token(v, 11) -- after '{"userId":'
    if uid and not seen[uid] then
      seen[uid] = true
      list[#list + 1] = v
    end
  end
  return seen, list
end

-- A snapshot is a copy of the board hash at its seq (`COPY`: Redis copies it without making a
-- Lua string of each element, which would hash every byte), indexed in :history as
-- `s:<seq>` = ''. A non-empty `s:<seq>` is an older gateway's snapshot, its board as text.
local function snapshot_key(seq) return KEYS[1] .. ':snap:' .. seq end

-- The newest snapshot at or before `at` that is still there: its seq, or nil.
local function newest_snapshot(at)
  local seqs = {}
  for _, field in ipairs(redis.call('HKEYS', KEYS[7])) do
    local s = tonumber(string.match(field, '^s:(%d+)$'))
    if s and s <= at then seqs[#seqs + 1] = s end
  end
  table.sort(seqs, function(a, b) return a > b end)
  for _, s in ipairs(seqs) do
    if redis.call('HSTRLEN', KEYS[7], 's:' .. s) > 0 or redis.call('EXISTS', snapshot_key(s)) == 1 then
      return s
    end
  end
  return nil
end

-- A snapshot's board as text, `{"seq":N,"elements":[...]}` (what `history::Board` reads).
local function snapshot_text(seq)
  local text = redis.call('HGET', KEYS[7], 's:' .. seq)
  if text and text ~= '' then return text end
  local elements = {}
  for _, e in ipairs(redis.call('HVALS', snapshot_key(seq))) do
    if e ~= '' then elements[#elements + 1] = e end
  end
  return '{"seq":' .. seq .. ',"elements":[' .. table.concat(elements, ',') .. ']}'
end

-- Activity keeps every key of the room alive for another TTL.
local function touch()
  if ttl_ms > 0 then
    for i = 1, #KEYS do redis.call('PEXPIRE', KEYS[i], ttl_ms) end
    -- And its snapshots, which no script names among its keys.
    for _, field in ipairs(redis.call('HKEYS', KEYS[7])) do
      local s = string.match(field, '^s:(%d+)$')
      if s then redis.call('PEXPIRE', snapshot_key(s), ttl_ms) end
    end
    redis.call('HSET', KEYS[1], 'expiresAt', expires_at)
  end
end

-- The hot path refreshes TTLs only once a tenth of the TTL (at most a minute) has passed, judged
-- by the room hash's remaining PTTL: a call per key saved on almost every op. A key that an op
-- creates between refreshes gets its TTL from that op (`expire_new`).
local function touch_if_due(pttl)
  if ttl_ms > 0 and (pttl < 0 or ttl_ms - pttl >= math.min(60000, ttl_ms / 10)) then touch() end
end

local function expire_new(key)
  if ttl_ms > 0 then redis.call('PEXPIRE', key, ttl_ms) end
end

-- Presence changes are published as a compact record; every instance builds the client frames
-- (CURSOR_LEAVE, USER_LEFT, USER_JOINED, USER_COUNT_UPDATED) from it in Rust. `parts` are JSON
-- members: "joined":<member>, "except":<conn>, "left":<userId>, "gone":true, "count":N.
local function publish_presence(parts)
  redis.call(publish, channel, '{"presence":{' .. table.concat(parts, ',') .. '}}')
end

-- A live room's board hash always exists (its placeholder keeps it); without it the room is
-- either gone or compacted (its board frozen into the history hash, `freeze.lua`). Returns the
-- reply that says which, or nil for a live room: one call, as the plain EXISTS it replaces.
local function not_live()
  if redis.call('EXISTS', KEYS[2]) == 1 then return nil end
  if redis.call('EXISTS', KEYS[1]) == 0 then return {'missing'} end
  return {'frozen'}
end
