-- put(k, nk, a): a hash's fields set and its `drop` fields deleted (in that order: a field in
-- both ends deleted), its TTL, and the member's score in each index with the index's TTL.
-- KEYS[k] is the hash, KEYS[k + 1 .. k + nk - 1] the indexes. From ARGV[a]: ttl s, n fields,
-- the n (field, value) pairs, d drops, the d dropped fields, then member and score (only with
-- indexes). Returns the index of the ARGV after them. Included by put.lua and commit.lua (the
-- side writes riding in a turn's commit); `side.put_script_args` builds the arguments.
local function put(k, nk, a)
  local ttl = ARGV[a]
  local n = tonumber(ARGV[a + 1])
  if n > 0 then redis.call('HSET', KEYS[k], unpack(ARGV, a + 2, a + 1 + 2 * n)) end
  a = a + 2 + 2 * n
  local d = tonumber(ARGV[a])
  if d > 0 then redis.call('HDEL', KEYS[k], unpack(ARGV, a + 1, a + d)) end
  redis.call('EXPIRE', KEYS[k], ttl)
  a = a + d + 1
  if nk < 2 then return a end
  for i = k + 1, k + nk - 1 do
    redis.call('ZADD', KEYS[i], ARGV[a + 1], ARGV[a])
    redis.call('EXPIRE', KEYS[i], ttl)
  end
  return a + 2
end
