-- REFRESH_REVOKE_ALL: KEYS 1 refresh-family:<user>, 2 revoked:<user> (the token keys' slot);
-- ARGV 1 the refresh key prefix, 2 now (Unix seconds), 3 how long the time is kept (ms).
-- Every refresh token of the user dies, and the time is recorded (open sockets of earlier
-- access tokens close at their next check). A password reset runs it.
for _, member in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  redis.call('DEL', ARGV[1] .. member)
end
redis.call('DEL', KEYS[1])
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
return 1
