-- begin: dedupe check, lock, load and the opt-out flag, atomically, so that "is this a
-- duplicate?", "take the lock" and "read the session" see one moment: a copy of a delivery
-- arriving while the first copy commits either finds the stored reply or waits for the lock,
-- never loads a half-old session.
-- A duplicate's reply lives in its turn's transcript element, just after the delivery's tag:
-- returned as {1, element, 1}; a reply kept in the dedupe hash (its turn wrote no element) as
-- {1, reply}. LPOS looks from the tail (a retried delivery is a recent one) at the last `scan`
-- elements: ~18 ns each, so a conversation with thousands of turns still costs a begin a few us.
-- Returns {0, session value or false, opted out 0/1}, or {2} when another turn holds the lock.
local lock, session, dedupe, optout, transcript = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local token, lock_ms, has_dedupe, field, tag, scan = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]

if has_dedupe == '1' then
  local at = redis.call('LPOS', transcript, tag, 'RANK', -1, 'MAXLEN', scan)
  if at then return {1, redis.call('LINDEX', transcript, at + 1) or '', 1} end
  local reply = redis.call('HGET', dedupe, field)
  if reply then return {1, reply} end
end
local opted = redis.call('EXISTS', optout)
if not redis.call('SET', lock, token, 'NX', 'PX', lock_ms) then return {2} end
return {0, redis.call('GET', session), opted}
