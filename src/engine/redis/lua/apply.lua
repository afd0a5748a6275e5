-- APPLY a sequenced op: ARGV 5 kind (stroke|undo|redo), 6 opId ('' = none), 7 origin conn as JSON,
-- 8 userId as JSON, 9 userId (undone-hash field), 10 stroke JSON (stroke), 11 strokeId as JSON
-- ('' = latest), 12 log length cap, 13 redo stack cap.
-- Returns {'ok', seq, strokeId JSON} | {'duplicate', 'seq|strokeId JSON'} | {'missing'} |
--         {'forbidden'} | {'nothing_to_undo'} | {'nothing_to_redo'}.
local pttl = redis.call('PTTL', KEYS[1])
if pttl == -2 then return {'missing'} end
local kind, op_id, origin_json, user_json, user_field = ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9]
local sid_json, log_max, redo_max = ARGV[11], tonumber(ARGV[12]), tonumber(ARGV[13])
if op_id ~= '' then
  local prev = redis.call('HGET', KEYS[5], op_id)
  if prev then return {'duplicate', prev} end
end

local own = '{"userId":' .. user_json .. ','
-- Undo and redo look for the user's own stroke (that one when a strokeId is given) by prefix.
local function wanted()
  if sid_json == '' then return own end
  return own .. '"strokeId":' .. sid_json .. ','
end

local function load_stack()
  local stack = redis.call('HGET', KEYS[6], user_field)
  if stack then return cjson.decode(stack) end
  return {}
end

local function save_stack(stack)
  if #stack == 0 then
    redis.call('HDEL', KEYS[6], user_field)
  else
    redis.call('HSET', KEYS[6], user_field, cjson.encode(stack))
  end
end

local stroke, sid
if kind == 'stroke' then
  stroke, sid = ARGV[10], sid_json
  if redis.call('RPUSH', KEYS[2], stroke) == 1 then expire_new(KEYS[2]) end
  -- A new stroke ends the user's redo chain, as in any editor.
  redis.call('HDEL', KEYS[6], user_field)
elseif kind == 'undo' then
  local wanted, other = wanted(), nil
  if sid_json ~= '' then other = ',"strokeId":' .. sid_json .. ',' end
  -- Newest first, in chunks: the stroke to undo is almost always near the end.
  local hi = redis.call('LLEN', KEYS[2]) - 1
  while hi >= 0 and not stroke do
    local lo = math.max(0, hi - 127)
    local chunk = redis.call('LRANGE', KEYS[2], lo, hi)
    for i = #chunk, 1, -1 do
      local s = chunk[i]
      if string.sub(s, 1, #wanted) == wanted then stroke = s break end
      if other and string.find(s, other, 1, true) then return {'forbidden'} end
    end
    hi = lo - 1
  end
  if not stroke then return {'nothing_to_undo'} end
  redis.call('LREM', KEYS[2], -1, stroke)
  local stack = load_stack()
  stack[#stack + 1] = stroke
  while #stack > redo_max do table.remove(stack, 1) end
  save_stack(stack)
elseif kind == 'redo' then
  local wanted, stack = wanted(), load_stack()
  local index = nil
  for i = #stack, 1, -1 do
    if string.sub(stack[i], 1, #wanted) == wanted then index = i break end
  end
  if not index then return {'nothing_to_redo'} end
  stroke = table.remove(stack, index)
  save_stack(stack)
  if redis.call('RPUSH', KEYS[2], stroke) == 1 then expire_new(KEYS[2]) end
else
  return redis.error_reply('unknown op kind')
end

sid = sid or string_token(stroke, #own + 12) -- after '"strokeId":'
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
local frame
if kind == 'stroke' then
  frame = '{"type":"CANVAS_UPDATE","payload":{"roomId":' .. room_json .. ',"canvasData":' .. stroke
    .. ',"userId":' .. user_json .. ',"seq":' .. seq .. '}}'
elseif kind == 'undo' then
  frame = '{"type":"UNDO","payload":{"roomId":' .. room_json .. ',"userId":' .. user_json
    .. ',"strokeId":' .. sid .. ',"seq":' .. seq .. '}}'
else
  frame = '{"type":"REDO","payload":{"roomId":' .. room_json .. ',"userId":' .. user_json
    .. ',"stroke":' .. stroke .. ',"seq":' .. seq .. '}}'
end
local envelope = '{"seq":' .. seq .. ',"origin":' .. origin_json .. ',"frame":' .. frame .. '}'
local log_len = redis.call('RPUSH', KEYS[3], envelope)
if log_len == 1 then expire_new(KEYS[3]) end
-- Trimmed in batches of a 64th of the cap: the log keeps at least log_max entries.
if log_len > log_max + math.floor(log_max / 64) then redis.call('LTRIM', KEYS[3], -log_max, -1) end
if op_id ~= '' then
  redis.call('HSET', KEYS[5], op_id, seq .. '|' .. sid)
  expire_new(KEYS[5])
end
redis.call('PUBLISH', channel, envelope)
-- Undo and redo may create the redo-stack hash, so they refresh every key; they are rare.
if kind == 'stroke' then touch_if_due(pttl) else touch() end
return {'ok', seq, sid}
