-- claim_timers: range + remove in one step so that with several pollers each due timer is
-- handed to exactly one of them. Returns the claimed members.
-- With buckets (a cluster), KEYS[2] is the bucket's poller lease: a bucket is polled by one
-- process at a time (ARGV token) until the lease (ARGV lease ms) ends, then by whoever comes
-- first, so several processes share the buckets; the holder may poll it again meanwhile.
local timers, lease = KEYS[1], KEYS[2]
local now, limit, token, lease_ms = ARGV[1], ARGV[2], ARGV[3], ARGV[4]

if lease then
  local holder = redis.call('GET', lease)
  if holder and holder ~= token then return {} end
  if not holder then redis.call('SET', lease, token, 'PX', lease_ms) end
end
local due = redis.call('ZRANGEBYSCORE', timers, '-inf', now, 'LIMIT', 0, limit)
if #due > 0 then redis.call('ZREM', timers, unpack(due)) end
return due
