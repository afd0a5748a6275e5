-- KEEP a room's derived history (`history.rs`): ARGV 5 a snapshot's seq, 6 its text (the board
-- after that seq, built by the gateway from the log), 7 the seq to fold the oldest ops into
-- the base at ('' = none; the newest stored snapshot at or before it is used), 8 the
-- snapshot's element count (`last`, which spaces the next snapshot). The log is trimmed only
-- here, and only of what the base then holds.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[7], 's:' .. ARGV[5], ARGV[6])
-- Snapshots are kept off the op path, so an older one may land after a newer one.
local newest = tonumber(string.match(redis.call('HGET', KEYS[7], 'last') or '', '^(%d+):'))
if not newest or newest < tonumber(ARGV[5]) then
  redis.call('HSET', KEYS[7], 'last', ARGV[5] .. ':' .. ARGV[8])
end
expire_new(KEYS[7])
if ARGV[7] == '' then return 1 end
local fold = 0
for _, field in ipairs(redis.call('HKEYS', KEYS[7])) do
  local s = tonumber(string.match(field, '^s:(%d+)$'))
  if s and s <= tonumber(ARGV[7]) and s > fold then fold = s end
end
local snapshot = redis.call('HGET', KEYS[7], 's:' .. fold)
local base = redis.call('HGET', KEYS[7], 'base')
local base_seq = 0
if base then base_seq = tonumber(string.match(base, '^{"seq":(%d+)')) end
if not snapshot or fold <= base_seq then return 1 end
redis.call('HSET', KEYS[7], 'base', snapshot)
for _, field in ipairs(redis.call('HKEYS', KEYS[7])) do
  local s = tonumber(string.match(field, '^s:(%d+)$'))
  if s and s <= fold then redis.call('HDEL', KEYS[7], field) end
end
local seq = tonumber(redis.call('HGET', KEYS[1], 'seq') or '0')
local first = seq - redis.call('LLEN', KEYS[3]) + 1
if fold >= first then redis.call('LTRIM', KEYS[3], fold - first + 1, -1) end
return 2
