-- finish_outbox: the item's final status (and "sent" for each provider message id), recorded as
-- record_status does, and the item removed, all in one step: a sender dying in between can
-- neither lose the status of a removed item nor leave a recorded item to be sent again.
-- A given-up item's failure entry (when not empty) goes to the failed list, newest first, at
-- most `cap` entries, if the item was still there.
-- KEYS: 1 outbox zset, 2 item key, 3 leases hash, 4 failed list, 5 the item's status hash (absent:
--       remove only, `ack_outbox`), then one status hash per provider message id.
local outbox, item, leases, failed, item_status = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local id, status, rank, err, ttl, sent_rank, failure, cap = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5],
  ARGV[6], ARGV[7], ARGV[8]

if item_status then record(item_status, status, rank, err, ttl) end
for k = 6, #KEYS do record(KEYS[k], 'sent', sent_rank, '', ttl) end
if failure ~= '' and redis.call('EXISTS', item) == 1 then
  redis.call('LPUSH', failed, failure)
  redis.call('LTRIM', failed, 0, tonumber(cap) - 1)
  redis.call('EXPIRE', failed, ttl)
end
redis.call('ZREM', outbox, id)
redis.call('HDEL', leases, id)
redis.call('DEL', item)
return 1
