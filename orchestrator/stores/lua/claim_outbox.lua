-- claim_outbox: read + push the ready-at forward (a lease) in one step so two senders never
-- take the same item at once; an item whose sender died becomes ready again when the lease ends.
-- Each claim also says whether its contact has opted out (the `contact` of the payload, a msgpack
-- map: the runtime's OutboxItem; -1 when the payload has none), so a send costs no extra call.
-- Each claim is counted in the leases hash (retry_outbox and finish_outbox clear it): a count above
-- 1 is a claim whose sender neither finished nor rescheduled it (killed mid-send), so the runtime
-- reconciles it with the provider before sending again.
-- Returns id, payload, opt-out (1, 0 or -1), claims so far, per claimed item.
local outbox, leases = KEYS[1], KEYS[2]
local now, limit, lease_end, prefix = ARGV[1], ARGV[2], ARGV[3], ARGV[4]

local ids = redis.call('ZRANGEBYSCORE', outbox, '-inf', now, 'LIMIT', 0, limit)
local out = {}
for _, id in ipairs(ids) do
  local sid, uniq = string.match(id, '^(.*)|([^|]*)$')
  local payload = sid and redis.call('GET', prefix .. ':{' .. sid .. '}:o:' .. uniq)
  if payload then
    redis.call('ZADD', outbox, lease_end, id)
    local optout = -1
    local ok, item = pcall(cmsgpack.unpack, payload)
    if ok and type(item) == 'table' and type(item.contact) == 'string' then
      optout = redis.call('EXISTS', prefix .. ':optout:' .. item.contact)
    end
    table.insert(out, id)
    table.insert(out, payload)
    table.insert(out, optout)
    table.insert(out, redis.call('HINCRBY', leases, id, 1))
  else
    redis.call('ZREM', outbox, id)
    redis.call('HDEL', leases, id)
  end
end
return out
