-- THAW a compacted room: ARGV 5 how many elements, then {id, stored JSON, edge index value} each
-- (the gateway splits the frozen snapshot). Rebuilds the live keys as a new room has them, unless
-- another instance got there first.
-- Returns 'thawed' | 'live' (someone else thawed it) | 'missing'.
if redis.call('EXISTS', KEYS[1]) == 0 then return 'missing' end
if redis.call('EXISTS', KEYS[2]) == 1 or not redis.call('HGET', KEYS[7], 'frozen') then return 'live' end
redis.call('HSET', KEYS[2], '', '')
redis.call('HSET', KEYS[5], '', '')
local i = 6
for _ = 1, tonumber(ARGV[5]) do
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
  if ARGV[i + 2] ~= '' then redis.call('HSET', KEYS[6], ARGV[i], ARGV[i + 2]) end
  i = i + 3
end
redis.call('HDEL', KEYS[7], 'frozen')
touch()
return 'thawed'
