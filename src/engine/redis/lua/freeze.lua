-- FREEZE (compact) a room nobody is in (§6): its board goes into the history hash as one
-- snapshot (`frozen`), and its live keys go: the board and edge hashes, presence, idempotency
-- records. Any script that needs the board answers {'frozen'} and the gateway thaws it first.
-- Returns 'busy' (someone is in it), 'missing', 'done' (already frozen) or 'frozen'.
if redis.call('EXISTS', KEYS[1]) == 0 then return 'missing' end
if redis.call('HLEN', KEYS[4]) > 0 then return 'busy' end
if redis.call('EXISTS', KEYS[2]) == 0 then return 'done' end
local elements = {}
for _, e in ipairs(redis.call('HVALS', KEYS[2])) do
  if e ~= '' then elements[#elements + 1] = e end
end
local seq = redis.call('HGET', KEYS[1], 'seq') or '0'
redis.call('HSET', KEYS[7], 'frozen', '{"seq":' .. seq .. ',"elements":[' .. table.concat(elements, ',') .. ']}')
expire_new(KEYS[7])
redis.call('DEL', KEYS[2], KEYS[4], KEYS[5], KEYS[6], KEYS[8])
return 'frozen'
