-- READ what an op needs to be decided (the board module's `Need`): ARGV 5 op field ('' = none),
-- 6 '1' to read the edge index, 7 how many undo entries, 8 how many redo entries, 9 '1' to read
-- the whole board, 10.. element ids.
-- Returns {'missing'} | {'duplicate', 'seq|ackId'} |
--   {'ok', elements (one per id, false when absent), edges ({version, HGETALL} or false),
--    undo ({seq, record or false}..., newest first, or false), redo (likewise),
--    the room's seq, every element (HVALS, the placeholder among them) or false}.
local gone = not_live()
if gone then return gone end
if ARGV[5] ~= '' then
  local prev = redis.call('HGET', KEYS[5], ARGV[5]) or redis.call('HGET', KEYS[8], ARGV[5])
  if prev then return {'duplicate', prev} end
end
local elements = {}
if #ARGV >= 10 then elements = redis.call('HMGET', KEYS[2], unpack(ARGV, 10)) end
local edges = false
if ARGV[6] == '1' then
  -- The index's version (bumped by every edge write) lets the commit check it did not move.
  edges = {redis.call('HGET', KEYS[1], 'edges') or '0', redis.call('HGETALL', KEYS[6])}
end

-- The records of the newest `n` seqs on a list, read from the log by position.
local seq = tonumber(redis.call('HGET', KEYS[1], 'seq') or '0')
local first = seq - redis.call('LLEN', KEYS[3]) + 1
local function entries(key, n)
  if n == 0 then return false end
  local out = {}
  local seqs = redis.call('LRANGE', key, -n, -1)
  for i = #seqs, 1, -1 do
    local s = tonumber(seqs[i])
    local record = false
    if s and s >= first then record = redis.call('LINDEX', KEYS[3], s - first) end
    out[#out + 1] = {seqs[i], record}
  end
  return out
end
local all = false
if ARGV[9] == '1' then all = redis.call('HVALS', KEYS[2]) end
return {'ok', elements, edges, entries(KEYS[9], tonumber(ARGV[7])), entries(KEYS[10], tonumber(ARGV[8])),
  seq, all}
