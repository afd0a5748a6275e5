-- REFRESH_ROTATE: KEYS 1 refresh:<old>, 2 refresh:<new>, 3 refresh-used:<old>,
-- 4 refresh-grace:<old>; ARGV 1 old hash, 2 new hash, 3 ttl ms, 4 the refresh key prefix,
-- 5 the family key prefix, 6 the successor sealed with the old token, 7 grace ms,
-- 8 the revoked key prefix, 9 now (Unix seconds).
-- A live old token is deleted (GETDEL) and replaced: {'rotated', user}; its sealed successor is
-- kept for the grace window. Presented again within that window: {'repeated', user, sealed}
-- (a second tab, a retried request). Presented again later, it is presumed stolen: every live
-- token of its user is revoked and the time recorded, {'reused', user}. Else {'unknown'}.
local user = redis.call('GETDEL', KEYS[1])
if user then
  local family = ARGV[5] .. user
  redis.call('SET', KEYS[2], user, 'PX', ARGV[3])
  redis.call('SET', KEYS[3], user, 'PX', ARGV[3])
  if tonumber(ARGV[7]) > 0 then
    redis.call('SET', KEYS[4], ARGV[6], 'PX', ARGV[7])
  end
  redis.call('SREM', family, ARGV[1])
  redis.call('SADD', family, ARGV[2])
  redis.call('PEXPIRE', family, ARGV[3])
  return {'rotated', user}
end
local victim = redis.call('GET', KEYS[3])
if not victim then
  return {'unknown'}
end
local sealed = redis.call('GET', KEYS[4])
if sealed then
  return {'repeated', victim, sealed}
end
local family = ARGV[5] .. victim
for _, member in ipairs(redis.call('SMEMBERS', family)) do
  redis.call('DEL', ARGV[4] .. member)
end
redis.call('DEL', family)
redis.call('SET', ARGV[8] .. victim, ARGV[9], 'PX', ARGV[3])
return {'reused', victim}
