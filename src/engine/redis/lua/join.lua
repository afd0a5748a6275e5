-- JOIN: ARGV 5 presence field (conn key), 6 member JSON, 7 userId as JSON, 8 since ('' = none),
-- 9 client's epoch, 10 conn key as JSON, 11 the replay window (most events a replay carries),
-- 12 a new epoch, taken if the client has seen more of this epoch than the room holds.
-- Returns {'missing'} | {'replay', seq, epoch, users, records, announced} |
-- {'snapshot', seq, epoch, users, elements, announced} (elements in no order: the gateway sorts
-- them by z; announced 0: the socket was already present, as it is, and the room was told nothing).
local gone = not_live()
if gone then return gone end
local announced = 0
local users
if redis.call('HGET', KEYS[4], ARGV[5]) == ARGV[6] then
  -- A re-join by a socket already here (a client catching up): nothing changes for the room,
  -- so it hears nothing; the gateway gives the joiner its count itself.
  users = select(2, distinct_users())
else
  local before = distinct_users()
  local was_present = before[ARGV[7]]
  redis.call('HSET', KEYS[4], ARGV[5], ARGV[6])
  users = select(2, distinct_users())
  local presence = {'"count":' .. #users}
  -- Only a user the room did not have yet is announced, to everyone but the joining socket.
  if not was_present then
    presence[2] = '"joined":' .. ARGV[6]
    presence[3] = '"except":' .. ARGV[10]
  end
  publish_presence(presence)
  announced = 1
end
touch()

local seq = tonumber(redis.call('HGET', KEYS[1], 'seq') or '0')
local epoch = redis.call('HGET', KEYS[1], 'epoch') or ''
local since = tonumber(ARGV[8])
if since and ARGV[9] == epoch and since > seq then
  -- The client saw seqs the room no longer has: Redis lost confirmed writes (a failover to a
  -- lagging replica), and those seqs will be given to other events. A new epoch makes every
  -- client that saw them take the board rather than a replay (`rebase.lua`). A client can
  -- claim any `since`: at most one such rebase a minute, so a liar cannot keep the room
  -- re-sending its board (after a real loss, the first claim rebases; the rest then carry
  -- the old epoch and get the board anyway).
  local now = tonumber(redis.call('TIME')[1])
  if now - tonumber(redis.call('HGET', KEYS[1], 'rebasedAt') or '0') >= 60 then
    epoch = ARGV[12]
    redis.call('HSET', KEYS[1], 'epoch', epoch, 'rebasedAt', now)
    redis.call(publish, channel, '{"rebased":"' .. epoch .. '"}')
  end
elseif since and ARGV[9] == epoch then
  local len = redis.call('LLEN', KEYS[3])
  local first = seq - len + 1
  -- The log is history and reaches far back; a client further behind gets the board instead.
  if since + 1 >= first and seq - since <= tonumber(ARGV[11]) then
    return {'replay', seq, epoch, users, redis.call('LRANGE', KEYS[3], since + 1 - first, -1), announced}
  end
end
local elements = redis.call('HVALS', KEYS[2])
return {'snapshot', seq, epoch, users, elements, announced}
