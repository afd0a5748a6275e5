-- REBASE a room whose seq went back under its epoch: Redis lost writes it had confirmed (a
-- failover to a lagging replica, a lost AOF tail), so seqs that clients have seen will be given
-- to other events. ARGV 5 the epoch seen to go stale, 6 a new epoch. If the room still has the
-- stale one, the new one replaces it and every instance is told (`{"rebased":"<epoch>"}`): its
-- sessions re-join, and under a new epoch a join gets the board, never a replay of reused seqs.
-- Returns {'ok', the epoch in force} | {'missing'}.
if redis.call('EXISTS', KEYS[1]) == 0 then return {'missing'} end
local epoch = redis.call('HGET', KEYS[1], 'epoch') or ''
if epoch == ARGV[5] then
  epoch = ARGV[6]
  redis.call('HSET', KEYS[1], 'epoch', epoch)
  redis.call(publish, channel, '{"rebased":"' .. epoch .. '"}')
end
return {'ok', epoch}
