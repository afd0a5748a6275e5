-- PASSWORD_RESET: KEYS 1 otp:<email>, 2 user:<email>; ARGV 1 code hash, 2 max tries, 3 new
-- password hash, 4 the refresh key prefix, 5 the family key prefix, 6 the revoked key prefix,
-- 7 now (Unix seconds), 8 how long the revocation time is kept (ms).
-- Checks a reset code with the same tries and lockout as OTP_CONFIRM; on a match the code is
-- consumed, the password replaced, every refresh token of the user revoked and the time
-- recorded (open sockets of earlier access tokens close at their next check).
-- Returns {'verified'}, {'wrong', tries left}, {'locked'} or {'missing'}.
local stored = redis.call('HGET', KEYS[1], 'codeHash')
if not stored or redis.call('HGET', KEYS[2], 'verified') ~= '1' then
  return {'missing'}
end
local max = tonumber(ARGV[2])
local tries = tonumber(redis.call('HGET', KEYS[1], 'tries') or '0')
if tries >= max then
  return {'locked'}
end
if stored ~= ARGV[1] then
  tries = redis.call('HINCRBY', KEYS[1], 'tries', 1)
  if tries >= max then
    return {'locked'}
  end
  return {'wrong', max - tries}
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[2], 'passwordHash', ARGV[3])
local user = redis.call('HGET', KEYS[2], 'id')
local family = ARGV[5] .. user
for _, member in ipairs(redis.call('SMEMBERS', family)) do
  redis.call('DEL', ARGV[4] .. member)
end
redis.call('DEL', family)
redis.call('SET', ARGV[6] .. user, ARGV[7], 'PX', ARGV[8])
return {'verified'}
