-- REFRESH_ROTATE: KEYS 1 refresh:<old>, 2 refresh:<new>, 3 refresh-used:<old>; ARGV 1 old hash,
-- 2 new hash, 3 ttl ms, 4 the refresh key prefix, 5 the family key prefix.
-- A live old token is deleted (GETDEL) and replaced: {'rotated', user}. An already rotated one
-- is presumed stolen and every live token of its user is revoked: {'reused', user}.
-- Anything else: {'unknown'}.
local user = redis.call('GETDEL', KEYS[1])
if user then
  local family = ARGV[5] .. user
  redis.call('SET', KEYS[2], user, 'PX', ARGV[3])
  redis.call('SET', KEYS[3], user, 'PX', ARGV[3])
  redis.call('SREM', family, ARGV[1])
  redis.call('SADD', family, ARGV[2])
  redis.call('PEXPIRE', family, ARGV[3])
  return {'rotated', user}
end
local victim = redis.call('GET', KEYS[3])
if not victim then
  return {'unknown'}
end
local family = ARGV[5] .. victim
for _, member in ipairs(redis.call('SMEMBERS', family)) do
  redis.call('DEL', ARGV[4] .. member)
end
redis.call('DEL', family)
return {'reused', victim}
