-- ACCOUNT_CREATE: KEYS 1 user:<email>, 2 user-id:<id>; ARGV id, name, passwordHash, verified,
-- createdAt, email. Returns 1, or 0 when the address is taken (nothing written).
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'name', ARGV[2], 'passwordHash', ARGV[3],
  'verified', ARGV[4], 'createdAt', ARGV[5])
redis.call('SET', KEYS[2], ARGV[6])
return 1
