-- claim_timers: range + remove in one step so that with several pollers each due timer is
-- handed to exactly one of them. Returns the claimed members.
local timers = KEYS[1]
local now, limit = ARGV[1], ARGV[2]

local due = redis.call('ZRANGEBYSCORE', timers, '-inf', now, 'LIMIT', 0, limit)
if #due > 0 then redis.call('ZREM', timers, unpack(due)) end
return due
