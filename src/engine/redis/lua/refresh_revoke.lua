-- REFRESH_REVOKE: KEYS 1 refresh:<hash>; ARGV 1 hash, 2 the family key prefix. Logout: the
-- token dies and leaves its family. Unknown tokens are ignored.
local user = redis.call('GETDEL', KEYS[1])
if user then
  redis.call('SREM', ARGV[2] .. user, ARGV[1])
end
return 1
