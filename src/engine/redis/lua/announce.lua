-- ANNOUNCE: puts back presence of this instance's connections that another instance swept while
-- this one's liveness key had expired. ARGV from 5, three per local connection of the room:
-- presence field (conn key), member JSON, userId as JSON.
-- Returns how many entries were missing and are back.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local seen, users = distinct_users()
local count, restored = #users, 0
for i = 5, #ARGV, 3 do
  if redis.call('HSETNX', KEYS[4], ARGV[i], ARGV[i + 1]) == 1 then
    restored = restored + 1
    -- As in join.lua, only a user the room had lost is announced. Everyone is told, the
    -- user's own sockets too: the sweep told them all that the user had left.
    if not seen[ARGV[i + 2]] then
      seen[ARGV[i + 2]] = true
      count = count + 1
      publish_presence({'"joined":' .. ARGV[i + 1]})
    end
  end
end
if restored > 0 then touch() end
if count > #users then publish_presence({'"count":' .. count}) end
return restored
