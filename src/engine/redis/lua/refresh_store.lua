-- REFRESH_STORE: KEYS 1 refresh:<hash>, 2 refresh-family:<user>; ARGV 1 user id, 2 ttl ms,
-- 3 hash, 4 the refresh key prefix. Stores the token and adds it to its user's family, after
-- dropping family members whose token has expired.
for _, member in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  if redis.call('EXISTS', ARGV[4] .. member) == 0 then
    redis.call('SREM', KEYS[2], member)
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return 1
