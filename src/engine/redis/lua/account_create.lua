-- ACCOUNT_CREATE: KEYS 1 user:<email>, 2 otp:<email> (one slot: the address's); ARGV id, name,
-- passwordHash, verified, createdAt. Returns {1, replaced id or ''}, or {0} when a verified
-- account has the address (nothing written). An unverified account under the address is
-- replaced: whoever signed up first cannot hold an address they cannot prove is theirs. Its
-- pending code goes with it, so nothing sent for it can verify the new account; its id mapping
-- (`user-id:`, another slot) is deleted by the caller, and is ignored meanwhile since it
-- points at an account that now has another id.
local old = ''
if redis.call('EXISTS', KEYS[1]) == 1 then
  if redis.call('HGET', KEYS[1], 'verified') == '1' then
    return {0}
  end
  old = redis.call('HGET', KEYS[1], 'id') or ''
  redis.call('DEL', KEYS[1], KEYS[2])
end
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'name', ARGV[2], 'passwordHash', ARGV[3],
  'verified', ARGV[4], 'createdAt', ARGV[5])
return {1, old}
