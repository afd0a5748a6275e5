-- VERSIONS, kept in the room's history hash as v:<versionId> -> JSON: ARGV 5 'add' (6 the id,
-- 7 the JSON) or 'list'. Returns {'missing'} | {'ok', JSON texts (for 'list'; unordered)}.
if redis.call('EXISTS', KEYS[1]) == 0 then return {'missing'} end
if ARGV[5] == 'add' then
  redis.call('HSET', KEYS[7], 'v:' .. ARGV[6], ARGV[7])
  touch()
  return {'ok', {}}
end
local out = {}
for _, field in ipairs(redis.call('HKEYS', KEYS[7])) do
  if string.sub(field, 1, 2) == 'v:' then out[#out + 1] = redis.call('HGET', KEYS[7], field) end
end
return {'ok', out}
