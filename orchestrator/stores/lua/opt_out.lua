#!lua flags=allow-oom
-- set_opt_out: a STOP is recorded even when Redis is at maxmemory (allow-oom: a ~60-byte key
-- beyond the limit), so an opt-out is never lost to a full store (Redis >= 7).
local key = KEYS[1]
local value, ttl = ARGV[1], ARGV[2]

redis.call('SET', key, value, 'EX', ttl)
return 1
