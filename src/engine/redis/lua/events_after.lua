-- EVENTS_AFTER: ARGV 5 the last seq delivered, 6 the most events worth sending (the replay window).
-- Returns {'ok', seq, epoch, envelopes} | {'missing'} | {'unavailable'} (trimmed, or Redis lost writes).
if redis.call('EXISTS', KEYS[1]) == 0 then return {'missing'} end
local seq = tonumber(redis.call('HGET', KEYS[1], 'seq') or '0')
local epoch = redis.call('HGET', KEYS[1], 'epoch') or ''
local after = tonumber(ARGV[5])
if after > seq then return {'unavailable'} end
local len = redis.call('LLEN', KEYS[3])
local first = seq - len + 1
if after + 1 < first or seq - after > tonumber(ARGV[6]) then return {'unavailable'} end
return {'ok', seq, epoch, redis.call('LRANGE', KEYS[3], after + 1 - first, -1)}
