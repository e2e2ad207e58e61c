-- record_status: one delivery status, never backwards (lib_status.lua). Returns the status kept.
local key = KEYS[1]
local status, rank, err, ttl = ARGV[1], ARGV[2], ARGV[3], ARGV[4]

return record(key, status, rank, err, ttl)
