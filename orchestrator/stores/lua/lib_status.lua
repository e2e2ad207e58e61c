-- record(key, status, rank, err, ttl): a delivery status read-compare-written in one step, so
-- callbacks arriving out of order never move it backwards (queued < sent < delivered < read;
-- rank >= 9 is terminal). The status hash: s = status, r = rank, e = error code. Returns the
-- status kept. Included by status.lua and finish_outbox.lua.
local function record(key, status, rank, err, ttl)
  local cur = redis.call('HGET', key, 'r')
  if cur then
    cur = tonumber(cur)
    if cur >= 9 or cur >= tonumber(rank) then return redis.call('HGET', key, 's') end
  end
  redis.call('HSET', key, 's', status, 'r', rank, 'e', err)
  redis.call('EXPIRE', key, ttl)
  return status
end
