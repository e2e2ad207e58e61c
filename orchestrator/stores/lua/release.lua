-- release: compare-and-delete, so a turn (or a periodic job's lease) never removes a lock that
-- another holder took after ours expired. Returns 1 when it was ours and is gone, else 0.
local lock = KEYS[1]
local token = ARGV[1]

if redis.call('GET', lock) == token then return redis.call('DEL', lock) end
return 0
