-- settle: a commit sent but not answered (Redis paused, the connection dropped) may or may not
-- have run. Decide it for good: while the lock still holds our token the commit has not run, and
-- deleting the lock makes it refuse when Redis reads it later ('LOCK'); otherwise it ran if its
-- delivery's tag (or its hash reply, or with neither its new version) is there.
-- Returns 1 (the commit ran) or 0 (it did not and never will).
local lock, transcript, dedupe, session = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local token, tag, field, version, scan = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]

if redis.call('GET', lock) == token then
  redis.call('DEL', lock)
  return 0
end
if tag ~= '' then
  if redis.call('LPOS', transcript, tag, 'RANK', -1, 'MAXLEN', scan) then return 1 end
  return 0
end
if field ~= '' then return redis.call('HEXISTS', dedupe, field) end
local s = redis.call('GET', session)
if s and string.match(s, '^(%d+),') == version then return 1 end
return 0
