-- PAST: what a question about a room's history needs, read at one moment (`history.rs`).
-- ARGV 5 'ops' | 'board', 6 since / at ('' = now), 7 limit (ops).
-- A compacted room is read from its frozen snapshot, not thawed: looking at history is not
-- activity. Returns {'missing'} | {'trimmed', oldest} | {'ahead', seq} |
--   {'ops', epoch, records} | {'now', seq, elements (HVALS, the placeholder among them)} |
--   {'board', snapshot text or false (the empty board at 0), records after it up to `at`}.
if redis.call('EXISTS', KEYS[1]) == 0 then return {'missing'} end
local seq = tonumber(redis.call('HGET', KEYS[1], 'seq') or '0')
local first = seq - redis.call('LLEN', KEYS[3]) + 1
local function seq_of(snapshot) return tonumber(string.match(snapshot, '^{"seq":(%d+)')) end

local frozen = redis.call('HGET', KEYS[7], 'frozen')
local base = redis.call('HGET', KEYS[7], 'base')
local base_seq = 0
if base then
  base_seq = seq_of(base)
elseif first > 1 then
  -- The log was trimmed before history was kept (an older gateway): history starts here, from
  -- the board as it is.
  if frozen then
    base = frozen
  else
    local elements = {}
    for _, e in ipairs(redis.call('HVALS', KEYS[2])) do
      if e ~= '' then elements[#elements + 1] = e end
    end
    base = '{"seq":' .. seq .. ',"elements":[' .. table.concat(elements, ',') .. ']}'
  end
  redis.call('HSET', KEYS[7], 'base', base)
  expire_new(KEYS[7])
  base_seq = seq
end

local at = tonumber(ARGV[6]) or seq
if at < base_seq then return {'trimmed', base_seq} end
if at > seq then return {'ahead', seq} end
if ARGV[5] == 'ops' then
  local last = math.min(seq, at + tonumber(ARGV[7]))
  local records = {}
  if last > at then records = redis.call('LRANGE', KEYS[3], at + 1 - first, last - first) end
  return {'ops', redis.call('HGET', KEYS[1], 'epoch') or '', records}
end
if at == seq then
  if frozen then return {'board', frozen, {}} end
  return {'now', seq, redis.call('HVALS', KEYS[2])}
end
-- The nearest snapshot at or before `at`, then the records after it.
local best = newest_snapshot(at)
local snapshot = base or false
if best and best > base_seq then snapshot = snapshot_text(best) else best = base_seq end
local records = {}
if at > best then records = redis.call('LRANGE', KEYS[3], best + 1 - first, at - first) end
return {'board', snapshot, records}
