-- ACCOUNT_CREATE: KEYS 1 user:<email>, 2 user-id:<id>, 3 otp:<email>; ARGV id, name, passwordHash,
-- verified, createdAt, email, 7 the user-id key prefix. Returns 1, or 0 when a verified account
-- has the address (nothing written). An unverified account under the address is replaced:
-- whoever signed up first cannot hold an address they cannot prove is theirs. Its id mapping
-- and its pending code go with it, so nothing sent for it can verify the new account.
if redis.call('EXISTS', KEYS[1]) == 1 then
  if redis.call('HGET', KEYS[1], 'verified') == '1' then
    return 0
  end
  local old = redis.call('HGET', KEYS[1], 'id')
  if old then
    redis.call('DEL', ARGV[7] .. old)
  end
  redis.call('DEL', KEYS[1], KEYS[3])
end
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'name', ARGV[2], 'passwordHash', ARGV[3],
  'verified', ARGV[4], 'createdAt', ARGV[5])
redis.call('SET', KEYS[2], ARGV[6])
return 1
