-- LOAD a room from a backup, replacing whatever room has its id: ARGV 5 createdAt, 6 creator,
-- 7 a new epoch, 8 seq, 9 ztop, 10 the board as a snapshot (the history's base: history starts
-- here), 11 how many elements, then {id, stored JSON, edge index value ('' = not an edge)} each,
-- then how many quota counters and {field, bytes} each (`bytes`, `b:<userId>`), then
-- {versionId, JSON} pairs to the end.
-- The old room's snapshots first: they are found through its history, deleted next.
for _, field in ipairs(redis.call('HKEYS', KEYS[7])) do
  local s = string.match(field, '^s:(%d+)$')
  if s then redis.call('DEL', snapshot_key(s)) end
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8])
redis.call('HSET', KEYS[1], 'createdAt', ARGV[5], 'expiresAt', expires_at, 'creator', ARGV[6],
  'epoch', ARGV[7], 'seq', ARGV[8], 'ztop', ARGV[9], 'edges', '0')
redis.call('HSET', KEYS[2], '', '')
redis.call('HSET', KEYS[5], '', '')
redis.call('HSET', KEYS[7], 'base', ARGV[10])
local i = 12
for _ = 1, tonumber(ARGV[11]) do
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
  if ARGV[i + 2] ~= '' then redis.call('HSET', KEYS[6], ARGV[i], ARGV[i + 2]) end
  i = i + 3
end
local counters = tonumber(ARGV[i])
i = i + 1
for _ = 1, counters do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  i = i + 2
end
while i < #ARGV do
  redis.call('HSET', KEYS[7], 'v:' .. ARGV[i], ARGV[i + 1])
  i = i + 2
end
touch()
return 1
