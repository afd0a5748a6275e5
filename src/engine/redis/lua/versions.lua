-- VERSIONS, kept in the room's history hash as v:<versionId> -> JSON: ARGV 5 'add' (6 the id,
-- 7 the JSON, whose seq is replaced by the room's) or 'list'. Returns {'missing'} |
-- {'ok', {the seq named}} for 'add' | {'ok', JSON texts (unordered)} for 'list'.
if redis.call('EXISTS', KEYS[1]) == 0 then return {'missing'} end
if ARGV[5] == 'add' then
  -- The seq is read here, not by the caller, so the version names the board as it is now.
  local seq = tonumber(redis.call('HGET', KEYS[1], 'seq') or '0')
  local version = cjson.decode(ARGV[7])
  version.seq = seq
  redis.call('HSET', KEYS[7], 'v:' .. ARGV[6], cjson.encode(version))
  touch()
  return {'ok', {tostring(seq)}}
end
local out = {}
for _, field in ipairs(redis.call('HKEYS', KEYS[7])) do
  if string.sub(field, 1, 2) == 'v:' then out[#out + 1] = redis.call('HGET', KEYS[7], field) end
end
return {'ok', out}
