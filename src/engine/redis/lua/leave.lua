-- LEAVE: ARGV 5 presence field. Returns how many connections are left in the room, or -1 when
-- this one was not there.
local member = redis.call('HGET', KEYS[4], ARGV[5])
if not member then return -1 end
redis.call('HDEL', KEYS[4], ARGV[5])
local uid = string_token(member, 11)
-- Only a hand edit writes an entry without a leading userId; drop it without telling anyone.
if not uid then return redis.call('HLEN', KEYS[4]) end
local seen, users = distinct_users()
local presence = {'"left":' .. uid, '"count":' .. #users}
if not seen[uid] then presence[3] = '"gone":true' end
publish_presence(presence)
return redis.call('HLEN', KEYS[4])
