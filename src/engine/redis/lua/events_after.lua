-- EVENTS_AFTER: ARGV 5 the last seq delivered, 6 the most events worth sending (the replay window).
-- Returns {'ok', seq, epoch, the records after ARGV 5, the record at ARGV 5 ('' when the log
-- does not hold it)} | {'missing'} | {'unavailable'} (the log no longer reaches back) |
-- {'behind', seq, epoch} (the room's seq is below ARGV 5: Redis lost writes it had confirmed).
-- The record at ARGV 5 lets the caller check that it is the one it delivered: after such a
-- loss the seq comes back with other events under it.
if redis.call('EXISTS', KEYS[1]) == 0 then return {'missing'} end
local meta = redis.call('HMGET', KEYS[1], 'seq', 'epoch')
local seq, epoch = tonumber(meta[1] or '0'), meta[2] or ''
local after = tonumber(ARGV[5])
if after > seq then return {'behind', seq, epoch} end
local len = redis.call('LLEN', KEYS[3])
local first = seq - len + 1
if after + 1 < first or seq - after > tonumber(ARGV[6]) then return {'unavailable'} end
if after < first then return {'ok', seq, epoch, redis.call('LRANGE', KEYS[3], 0, -1), ''} end
local records = redis.call('LRANGE', KEYS[3], after - first, -1)
local at = table.remove(records, 1)
return {'ok', seq, epoch, records, at}
