-- MIGRATE one room written by a v1 gateway (strokes in a list) to the board layout, in place:
-- each stroke becomes a stroke element, in its list order. KEYS 9 is the v1 redo-stack hash.
-- The v1 log entries are not records; the log is emptied, so a reconnecting client is sent the
-- board (INITIAL_STATE) instead of a replay. Returns how many strokes moved (0: nothing to do).
if redis.call('TYPE', KEYS[2]).ok ~= 'list' then return 0 end
local strokes = redis.call('LRANGE', KEYS[2], 0, -1)
redis.call('DEL', KEYS[2], KEYS[3], KEYS[9])
redis.call('HSET', KEYS[2], '', '')
redis.call('HSETNX', KEYS[5], '', '')
-- Versions must be positive (0 means "absent" to the commit script): the room's seq will do.
local v = math.max(1, tonumber(redis.call('HGET', KEYS[1], 'seq') or '0'))
local moved = 0
for i, s in ipairs(strokes) do
  -- v1 strokes start {"userId":<string>,"strokeId":<string>,...: written by the v1 gateway.
  local uid = string_token(s, 11)
  local sid = uid and string_token(s, 11 + #uid + 12)
  if sid then
    local id = cjson.decode(sid)
    redis.call('HSET', KEYS[2], id, '{"v":' .. v .. ',"z":' .. i .. ',"id":' .. sid .. ',"kind":"stroke",' .. string.sub(s, 2))
    moved = moved + 1
  end
end
redis.call('HSET', KEYS[1], 'ztop', #strokes)
local pttl = redis.call('PTTL', KEYS[1])
if pttl > 0 then
  redis.call('PEXPIRE', KEYS[2], pttl)
  redis.call('PEXPIRE', KEYS[5], pttl)
end
return moved
