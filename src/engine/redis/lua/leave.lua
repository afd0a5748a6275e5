-- LEAVE: ARGV 5 presence field. Returns 1 when the connection was present.
local member = redis.call('HGET', KEYS[4], ARGV[5])
if not member then return 0 end
redis.call('HDEL', KEYS[4], ARGV[5])
local uid = string_token(member, 11)
-- Only a hand edit writes an entry without a leading userId; drop it without telling anyone.
if not uid then return 1 end
local seen, users = distinct_users()
publish_frame('{"type":"CURSOR_LEAVE","payload":{"roomId":' .. room_json .. ',"userId":' .. uid .. '}}', nil)
if not seen[uid] then
  publish_frame('{"type":"USER_LEFT","payload":{"roomId":' .. room_json .. ',"userId":' .. uid
    .. ',"count":' .. #users .. '}}', nil)
end
publish_frame(count_frame(#users), nil)
return 1
