-- PASSWORD_RESET: KEYS 1 otp:<email>, 2 user:<email> (the address's slot); ARGV 1 code hash,
-- 2 max tries, 3 the new password hash, or '' to check the code only.
-- Checks a reset code with the same tries and lockout as OTP_CONFIRM. Checking, a match is
-- {'verified', user id} and the code stays; committing, a match consumes the code and replaces
-- the password. The caller revokes the user's refresh tokens (`refresh_revoke_all.lua`, another
-- slot in a cluster) between the check and the commit, and again after it.
-- Returns {'verified', id}, {'wrong', tries left}, {'locked'} or {'missing'}.
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
local user = redis.call('HGET', KEYS[2], 'id')
if ARGV[3] ~= '' then
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[2], 'passwordHash', ARGV[3])
end
return {'verified', user}
