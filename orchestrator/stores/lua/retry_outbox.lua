-- retry_outbox: the item's new payload (attempts counted) and its next ready-at, both only if
-- the item is still there (an item finished meanwhile stays gone); its claim ended.
local outbox, item, leases = KEYS[1], KEYS[2], KEYS[3]
local payload, due, id = ARGV[1], ARGV[2], ARGV[3]

redis.call('SET', item, payload, 'KEEPTTL', 'XX')
redis.call('ZADD', outbox, 'XX', due, id)
redis.call('HDEL', leases, id)
return 1
