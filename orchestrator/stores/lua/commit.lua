-- commit: a turn, all or nothing, fenced. The lock must still hold our token with at least
-- `least_pttl` ms left (else Redis ran this too long after it was sent: 'LATE') and the stored
-- version must be the one `begin` loaded (a stalled holder's late write is refused); session,
-- transcript, dedupe reply, outbox, timer, indexes and side writes change together.
-- KEYS: 1 lock, 2 session, 3 transcript, 4 dedupe hash, 5 timers, 6 outbox zset, 7 sessions zset,
--       8 contact set, 9.. the side writes' keys (each: its hash, then its indexes), then one key
--       per outbox item.
-- ARGV: 1 token, 2 expect version, 3 new version (also inside 4), 4 session value
--       (`codecs.session_value`), 5 session ttl s, 6 delivery key of a reply kept in the hash
--       ('' = none), 7 that reply, 8 dedupe ttl s, 9 retention s, 10 timer member ('' = clear),
--       11 timer due, 12 outbox due, 13 session id, 14 updated_at, 15 least PTTL of the lock (ms),
--       16 n transcript elements (0; 1 = the turn; 2 = the delivery's tag and the turn), then the
--       elements, then the number of side writes and for each its number of keys and its `put`
--       arguments (lib_put.lua), then one (id, payload) pair per outbox item key, then (optional)
--       the number of reminder timers, the timers index's least ttl s, and a (member, due) pair each.
-- A delivery whose turn has an element is found by its tag (the reply is inside the element);
-- without one, the dedupe hash keeps the reply itself.
-- Returns 'OK', or 'LOCK' / 'LATE' / 'VERSION' having written nothing.
local lock, session, transcript, dedupe = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local timers, outbox, sessions, contact = KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local token, expect, value, ttl = ARGV[1], tonumber(ARGV[2]), ARGV[4], ARGV[5]
local field, reply, dedupe_ttl, retention = ARGV[6], ARGV[7], ARGV[8], tonumber(ARGV[9])
local timer, timer_due, outbox_due, sid = ARGV[10], ARGV[11], ARGV[12], ARGV[13]
local updated_at, least_pttl, n = tonumber(ARGV[14]), tonumber(ARGV[15]), tonumber(ARGV[16])

if redis.call('GET', lock) ~= token then return 'LOCK' end
if redis.call('PTTL', lock) < least_pttl then
  redis.call('DEL', lock)
  return 'LATE'
end
local cur, turns = 0, ''
local s = redis.call('GET', session)
if s then
  local v, t = string.match(s, '^(%d+),(%d*),')
  cur, turns = tonumber(v), t
end
if cur ~= expect then return 'VERSION' end
if turns ~= '' then
  local old = sid .. '|' .. turns
  if old ~= timer then redis.call('ZREM', timers, old) end
end
redis.call('SET', session, value, 'EX', ttl)
-- the timers index only ever lengthens its ttl: it may hold reminders due weeks ahead
local function keep(key, ttl)
  if redis.call('TTL', key) < ttl then redis.call('EXPIRE', key, ttl) end
end
if timer ~= '' then
  redis.call('ZADD', timers, timer_due, timer)
  keep(timers, retention)
end
if n > 0 then
  redis.call('RPUSH', transcript, unpack(ARGV, 17, 16 + n))
  redis.call('EXPIRE', transcript, retention)
end
if field ~= '' then
  redis.call('HSET', dedupe, field, reply)
  redis.call('EXPIRE', dedupe, dedupe_ttl)
end
local a = 18 + n
local first = 9
for _ = 1, tonumber(ARGV[17 + n]) do
  local nk = tonumber(ARGV[a])
  a = put(first, nk, a + 1)
  first = first + nk
end
for k = first, #KEYS do
  redis.call('SET', KEYS[k], ARGV[a + 1], 'EX', retention)
  redis.call('ZADD', outbox, outbox_due, ARGV[a])
  a = a + 2
end
if #KEYS >= first then redis.call('EXPIRE', outbox, retention) end
local reminders = tonumber(ARGV[a]) or 0
for r = 1, reminders do
  redis.call('ZADD', timers, ARGV[a + 2 * r + 1], ARGV[a + 2 * r])
end
if reminders > 0 then keep(timers, tonumber(ARGV[a + 1])) end
redis.call('ZADD', sessions, updated_at, sid)
redis.call('ZREMRANGEBYSCORE', sessions, '-inf', updated_at - retention)
redis.call('EXPIRE', sessions, retention)
redis.call('SADD', contact, sid)
redis.call('EXPIRE', contact, retention)
redis.call('DEL', lock)
return 'OK'
