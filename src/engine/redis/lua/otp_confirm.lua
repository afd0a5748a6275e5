-- OTP_CONFIRM: KEYS 1 otp:<email>, 2 user:<email>; ARGV 1 code hash, 2 max tries, 3 the account
-- id the code was sent for ('' = any, for verification tokens that name none).
-- Returns {'verified'} (code consumed, account verified), {'wrong', tries left}, {'locked'}
-- or {'missing'}. A wrong try is counted before the reply, so parallel guesses all count.
-- A code only verifies the account it was sent for: if the address's unverified account was
-- replaced by a later sign-up, the earlier sign-up's token finds it 'missing'.
local stored = redis.call('HGET', KEYS[1], 'codeHash')
if not stored then
  return {'missing'}
end
if ARGV[3] ~= '' and redis.call('HGET', KEYS[2], 'id') ~= ARGV[3] then
  return {'missing'}
end
local max = tonumber(ARGV[2])
local tries = tonumber(redis.call('HGET', KEYS[1], 'tries') or '0')
if tries >= max then
  return {'locked'}
end
if stored == ARGV[1] then
  redis.call('DEL', KEYS[1])
  if redis.call('EXISTS', KEYS[2]) == 0 then
    return {'missing'}
  end
  redis.call('HSET', KEYS[2], 'verified', '1')
  return {'verified'}
end
tries = redis.call('HINCRBY', KEYS[1], 'tries', 1)
if tries >= max then
  return {'locked'}
end
return {'wrong', max - tries}
