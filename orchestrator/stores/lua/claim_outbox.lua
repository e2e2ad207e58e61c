-- claim_outbox: read + push the ready-at forward (a lease) in one step so two senders never
-- take the same item at once; an item whose sender died becomes ready again when the lease ends.
-- Each claim also says whether its contact has opted out (the `contact` of the payload, a msgpack
-- map: the runtime's OutboxItem; -1 when the payload has none, or with buckets when the contact's
-- opt-out lives in another bucket: a staff note), so a send costs no extra call.
-- Each claim is counted in the leases hash (retry_outbox and finish_outbox clear it): a count above
-- 1 is a claim whose sender neither finished nor rescheduled it (killed mid-send), so the runtime
-- reconciles it with the provider before sending again.
-- KEYS: 1 outbox zset, 2 leases hash, 3 (buckets only) the bucket's poller lease (claim_timers.lua).
-- ARGV: 1 now, 2 limit, 3 lease end, 4 key head (`prefix`, or `prefix:{<tag>}` with buckets),
--       5 poller token, 6 poller lease ms, 7 this bucket, 8 buckets (0: the single-Redis layout).
-- The item keys are read by name from the index: with buckets they carry the index's hash tag, so
-- they are on its slot. While a resharding moves the slot an item may already be on the other
-- node: with buckets a missing item is left for MISSES claims before it counts as gone.
-- Returns id, payload, opt-out (1, 0 or -1), claims so far, per claimed item.
local outbox, leases, lease = KEYS[1], KEYS[2], KEYS[3]
local now, limit, lease_end, head = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local token, lease_ms, bucket, n = ARGV[5], ARGV[6], tonumber(ARGV[7]), tonumber(ARGV[8]) or 0
local MISSES = 3

-- layout.bucket_of: the same hash of the text after the last ':'
local function bucket_of(text)
  local h = 0
  local part = string.match(text, '([^:]*)$')
  for i = 1, #part do h = (h * 31 + string.byte(part, i)) % 1000003 end
  return h % n
end

if lease then
  local holder = redis.call('GET', lease)
  if holder and holder ~= token then return {} end
  if not holder then redis.call('SET', lease, token, 'PX', lease_ms) end
end
local ids = redis.call('ZRANGEBYSCORE', outbox, '-inf', now, 'LIMIT', 0, limit)
local out = {}
for _, id in ipairs(ids) do
  local sid, uniq = string.match(id, '^(.*)|([^|]*)$')
  local payload = sid and redis.call('GET', head .. ':{' .. sid .. '}:o:' .. uniq)
  if payload then
    redis.call('ZADD', outbox, lease_end, id)
    local optout = -1
    local ok, item = pcall(cmsgpack.unpack, payload)
    if ok and type(item) == 'table' and type(item.contact) == 'string' then
      if n == 0 then
        optout = redis.call('EXISTS', head .. ':optout:' .. item.contact)
      elseif bucket_of(item.contact) == bucket then
        optout = redis.call('EXISTS', head .. ':optout:' .. item.contact)
      end
    end
    if n > 0 then redis.call('HDEL', leases, '?' .. id) end
    table.insert(out, id)
    table.insert(out, payload)
    table.insert(out, optout)
    table.insert(out, redis.call('HINCRBY', leases, id, 1))
  elseif n > 0 and sid and redis.call('HINCRBY', leases, '?' .. id, 1) < MISSES then
    redis.call('ZADD', outbox, lease_end, id)
  else
    redis.call('ZREM', outbox, id)
    redis.call('HDEL', leases, id, '?' .. id)
  end
end
return out
