-- DUMP a room for a backup, at one moment (a compacted room from its frozen snapshot, without
-- thawing it). Returns {'missing'} | {'ok', createdAt, creator, seq, elements (HVALS, the
-- placeholder among them), versions JSON, the frozen snapshot or false}.
if redis.call('EXISTS', KEYS[1]) == 0 then return {'missing'} end
local meta = redis.call('HMGET', KEYS[1], 'createdAt', 'creator', 'seq')
local versions = {}
for _, field in ipairs(redis.call('HKEYS', KEYS[7])) do
  if string.sub(field, 1, 2) == 'v:' then versions[#versions + 1] = redis.call('HGET', KEYS[7], field) end
end
return {'ok', meta[1] or '0', meta[2] or '', meta[3] or '0', redis.call('HVALS', KEYS[2]), versions,
  redis.call('HGET', KEYS[7], 'frozen') or false}
