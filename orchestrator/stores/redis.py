"""`SessionStore` on Redis: a turn costs two round trips (the `begin` and `commit` scripts).

Keys (prefix `orch` by default; `{sid}` is the hash tag shared by one conversation):

    orch:{sid}:s           string "<version>,<timer turns>," + the session, compressed when that pays
                           (`session_value`); the armed timer's member is "<sid>|<timer turns>"
                           (none when empty). A plain string costs ~300 B less than the hash it
                           replaced (fields d, v, tm); `begin` converts a hash written by older code
    orch:{sid}:l           lock token (SET NX PX)
    orch:{sid}:t           transcript list, one element per turn (`pack_turn`: its entries and the
                           reply to its delivery in one compressed blob), each delivery's tag
                           (`delivery_tag`) just before its turn: dedupe finds it with LPOS
    orch:{sid}:d           hash delivery key -> reply, only for a delivery whose turn wrote no
                           transcript. Written by older code: delivery key -> "@<n>", the n-th
                           transcript element pushed, and "#" -> elements pushed so far ("@<n>" is
                           LINDEX n - "#" - 1, immune to head trims; commits keep "#" counting)
    orch:{sid}:o:<uniq>    an outbox item; its id is "<sid>|<uniq>"
    orch:timers            zset member "<sid>|<turns>" score due      (global index)
    orch:outbox            zset member outbox id score ready-at       (global index)
    orch:outbox:leases     hash outbox id -> claims since it was last rescheduled (> 1: a sender died)
    orch:outbox:failed     list of given-up sends (`FailedSend`, newest first, FAILED_OUTBOX_KEPT at most)
    orch:sessions          zset sid score updated_at                  (global index)
    orch:c:<contact>       set of the contact's session ids
    orch:optout:<contact>  opt-out record
    orch:rev:<revision>    a flow revision's YAML source
    orch:flow:<flow id>    zset revision score first-seen
    orch:st:<message id>   hash s = delivery status, r = rank, e = error code

Every key gets a TTL. The turn scripts also touch the global indexes, so they need a
single Redis (or a cluster shard per deployment): atomicity of a turn wins over cluster
spreading; per-conversation keys still share one slot.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import secrets
import time
import zlib
from collections.abc import Awaitable, Sequence
from typing import Any

import msgspec
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import BusyLoadingError, NoScriptError, RedisError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from orchestrator.errors import LockTimeout, NewerFormat, StaleWrite, StoreError, StoreUnavailable, StoreWriteRefused
from orchestrator.logs import redact_phone
from orchestrator.stores.base import (
    FAILED_OUTBOX_KEPT,
    Begin,
    Commit,
    ContactExport,
    OutboxClaim,
    SessionInfo,
    entry_time,
    payload_contact,
    status_rank,
)
from orchestrator.stores.resp import LeanRedis, NotSent, run_script
from orchestrator.stores.side import PUT_FUNCTION, put_script_args

log = logging.getLogger("orchestrator.stores.base")
OPT_OUT_TTL_SECONDS = 10 * 365 * 86400  # an opt-out outlives everything else, but still has a TTL
REVISION_TTL_SECONDS = 400 * 86400
STATUS_TTL_SECONDS = 30 * 86400

# begin: atomic so that "is this a duplicate?", "take the lock" and "read the session" see
# one consistent moment: a copy of a delivery arriving while the first copy commits either
# finds the stored reply or waits for the lock, never loads a half-old session.
# A duplicate's reply lives in its turn's transcript element, just after the delivery's tag
# or, written by older code, where an "@<n>" pointer says: returned as {1, element, 1}; a full
# reply in the hash as {1, reply}. LPOS looks from the tail (a retried delivery is a recent one)
# at the last DEDUPE_SCAN elements: ~18 ns each, so a conversation with thousands of turns
# still costs a begin a few us; a delivery older than its last ~500 turns counts as new.
# KEYS: lock, session, dedupe hash, optout, transcript.
# ARGV: token, lock ttl ms, has dedupe ('1'/'0'), delivery key (hash field), delivery tag, DEDUPE_SCAN.
DEDUPE_SCAN = 1000
BEGIN_LUA = """
if ARGV[3] == '1' then
  local at = redis.call('LPOS', KEYS[5], ARGV[5], 'RANK', -1, 'MAXLEN', ARGV[6])
  if at then return {1, redis.call('LINDEX', KEYS[5], at + 1) or '', 1} end
  local reply = redis.call('HGET', KEYS[3], ARGV[4])
  if reply then
    if string.byte(reply, 1) == 64 then
      local n = tonumber(redis.call('HGET', KEYS[3], '#') or '0')
      local el = redis.call('LINDEX', KEYS[5], tonumber(string.sub(reply, 2)) - n - 1)
      return {1, el or '', 1}
    end
    return {1, reply}
  end
end
local optout = redis.call('EXISTS', KEYS[4])
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return {2} end
local s = redis.pcall('GET', KEYS[2])
if type(s) == 'table' and s.err then
  -- a session hash (d, v, tm) written before the string layout: convert it, keeping its TTL
  local h = redis.call('HMGET', KEYS[2], 'd', 'v', 'tm')
  local ttl = redis.call('PTTL', KEYS[2])
  s = (h[2] or '0') .. ',' .. (h[3] and string.match(h[3], '|(%d+)$') or '') .. ',' .. (h[1] or '')
  redis.call('DEL', KEYS[2])
  redis.call('SET', KEYS[2], s)
  if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) end
end
return {0, s, optout}
"""

# commit: atomic so a turn is all-or-nothing and fenced. The lock must still hold our
# token and the stored version must be the one we loaded (a stalled holder's late write is
# refused); session, transcript, dedupe reply, outbox, timer and indexes change together.
# KEYS: 1 lock, 2 session, 3 transcript, 4 dedupe, 5 timers, 6 outbox zset, 7 sessions zset,
#       8 contact set, 9.. the side writes' keys (each: its hash, then its indexes), then outbox item keys
# ARGV: 1 token, 2 expect version, 3 new version (inside 4), 4 session value (`session_value`), 5 ttl s,
#       6 delivery key of a reply kept in the hash ('' = none), 7 that reply,
#       8 dedupe ttl s, 9 retention s, 10 timer member ('' = clear), 11 timer due,
#       12 outbox due, 13 session id, 14 updated_at, 15 the lock's least PTTL (ms) for the commit to
#       apply (its deadline, `RedisStore.commit`), 16 n transcript elements (0, 1 = the turn,
#       2 = the delivery's tag and the turn), then the elements, then the number of side writes and
#       for each its number of keys and its `put` arguments (sidestore.PUT_FUNCTION: the conversation
#       record, written as `RedisSide.put_indexed` writes it), then one (id, payload) pair per outbox item key.
# A delivery whose turn has an element is found by its tag (the reply is inside the element);
# without one, the hash keeps the reply itself.
COMMIT_LUA = PUT_FUNCTION + """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 'LOCK' end
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[15]) then
  redis.call('DEL', KEYS[1])
  return 'LATE'
end
local cur, turns = 0, ''
local s = redis.call('GET', KEYS[2])
if s then
  local v, t = string.match(s, '^(%d+),(%d*),')
  cur, turns = tonumber(v), t
end
if cur ~= tonumber(ARGV[2]) then return 'VERSION' end
local retention = tonumber(ARGV[9])
if turns ~= '' then
  local old = ARGV[13] .. '|' .. turns
  if old ~= ARGV[10] then redis.call('ZREM', KEYS[5], old) end
end
redis.call('SET', KEYS[2], ARGV[4], 'EX', ARGV[5])
if ARGV[10] ~= '' then
  redis.call('ZADD', KEYS[5], ARGV[11], ARGV[10])
  redis.call('EXPIRE', KEYS[5], retention)
end
local n = tonumber(ARGV[16])
if n > 0 then
  redis.call('RPUSH', KEYS[3], unpack(ARGV, 17, 16 + n))
  redis.call('EXPIRE', KEYS[3], retention)
  -- "@<n>" pointers written by older code count from the tail: keep their count right
  if redis.call('HEXISTS', KEYS[4], '#') == 1 then redis.call('HINCRBY', KEYS[4], '#', n) end
end
if ARGV[6] ~= '' then
  redis.call('HSET', KEYS[4], ARGV[6], ARGV[7])
  redis.call('EXPIRE', KEYS[4], ARGV[8])
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
  redis.call('ZADD', KEYS[6], ARGV[12], ARGV[a])
  a = a + 2
end
if #KEYS >= first then redis.call('EXPIRE', KEYS[6], retention) end
redis.call('ZADD', KEYS[7], ARGV[14], ARGV[13])
redis.call('ZREMRANGEBYSCORE', KEYS[7], '-inf', tonumber(ARGV[14]) - retention)
redis.call('EXPIRE', KEYS[7], retention)
redis.call('SADD', KEYS[8], ARGV[13])
redis.call('EXPIRE', KEYS[8], retention)
redis.call('DEL', KEYS[1])
return 'OK'
"""

# settle: a commit sent but not answered (Redis paused, the connection dropped) may or may not
# have run. Decide it for good: while the lock still holds our token the commit has not run, and
# deleting the lock makes it refuse when Redis reads it later ('LOCK'); otherwise it ran if its
# delivery's tag (or its hash reply, or with neither its new version) is there.
# KEYS: lock, transcript, dedupe hash, session. ARGV: token, delivery tag or '', dedupe field or '',
# new version, DEDUPE_SCAN. Returns 1 (the commit ran) or 0 (it did not and never will).
SETTLE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 0
end
if ARGV[2] ~= '' then
  if redis.call('LPOS', KEYS[2], ARGV[2], 'RANK', -1, 'MAXLEN', ARGV[5]) then return 1 end
  return 0
end
if ARGV[3] ~= '' then return redis.call('HEXISTS', KEYS[3], ARGV[3]) end
local s = redis.call('GET', KEYS[4])
if s and string.match(s, '^(%d+),') == ARGV[4] then return 1 end
return 0
"""

# set_opt_out: a STOP is recorded even when Redis is at maxmemory (allow-oom: a ~60-byte key
# beyond the limit), so an opt-out is never lost to a full store (Redis >= 7).
# KEYS: opt-out key. ARGV: value, ttl s.
OPT_OUT_LUA = """#!lua flags=allow-oom
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 1
"""

# release: compare-and-delete, so a turn never removes a lock another turn took after ours expired.
RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# claim_timers: range + remove in one step so that with several pollers each due timer is
# handed to exactly one of them.
CLAIM_TIMERS_LUA = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
if #due > 0 then redis.call('ZREM', KEYS[1], unpack(due)) end
return due
"""

# claim_outbox: read + push the ready-at forward (a lease) in one step so two senders never
# take the same item at once; an item whose sender died becomes ready again when the lease ends.
# Each claim also says whether its contact has opted out (the `contact` of the payload, a msgpack
# map: the runtime's OutboxItem; -1 when the payload has none), so a send costs no extra call.
# Each claim is counted in the leases hash (retry_outbox and finish_outbox clear it): a count above
# 1 is a claim whose sender neither finished nor rescheduled it (killed mid-send), so the runtime
# reconciles it with the provider before sending again.
# KEYS: outbox zset, leases hash. ARGV: now, limit, lease end, key prefix.
# Returns id, payload, opt-out (1, 0 or -1), claims so far per claimed item.
CLAIM_OUTBOX_LUA = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
local out = {}
for _, id in ipairs(ids) do
  local sid, uniq = string.match(id, '^(.*)|([^|]*)$')
  local payload = sid and redis.call('GET', ARGV[4] .. ':{' .. sid .. '}:o:' .. uniq)
  if payload then
    redis.call('ZADD', KEYS[1], ARGV[3], id)
    local optout = -1
    local ok, item = pcall(cmsgpack.unpack, payload)
    if ok and type(item) == 'table' and type(item.contact) == 'string' then
      optout = redis.call('EXISTS', ARGV[4] .. ':optout:' .. item.contact)
    end
    table.insert(out, id)
    table.insert(out, payload)
    table.insert(out, optout)
    table.insert(out, redis.call('HINCRBY', KEYS[2], id, 1))
  else
    redis.call('ZREM', KEYS[1], id)
    redis.call('HDEL', KEYS[2], id)
  end
end
return out
"""

# retry_outbox: the item's new payload (attempts counted) and its next ready-at, both only if
# the item is still there (an item acked meanwhile stays gone).
# KEYS: outbox zset, item key, leases hash. ARGV: payload, due, item id.
RETRY_OUTBOX_LUA = """
redis.call('SET', KEYS[2], ARGV[1], 'KEEPTTL', 'XX')
redis.call('ZADD', KEYS[1], 'XX', ARGV[2], ARGV[3])
redis.call('HDEL', KEYS[3], ARGV[3])
return 1
"""

# record_status: read-compare-write in one step so concurrent callbacks arriving out of
# order never move a status backwards (queued < sent < delivered < read; failed terminal).
# KEYS: status hash. ARGV: status, rank, error code, ttl.
_STATUS_FUNCTION = """
local function record(key, status, rank, err, ttl)
  local cur = redis.call('HGET', key, 'r')
  if cur then
    cur = tonumber(cur)
    if cur >= 9 or cur >= tonumber(rank) then return redis.call('HGET', key, 's') end
  end
  redis.call('HSET', key, 's', status, 'r', rank, 'e', err)
  redis.call('EXPIRE', key, ttl)
  return status
end
"""
STATUS_LUA = _STATUS_FUNCTION + """
return record(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4])
"""

# finish_outbox: the item's final status (and "sent" for each provider message id), recorded as
# record_status does, and the item removed, all in one step: a sender dying in between can
# neither lose the status of a removed item nor leave a recorded item to be sent again.
# A given-up item's failure entry (ARGV 7, when not empty) goes to the failed list, newest first,
# at most ARGV 8 entries.
# KEYS: outbox zset, item key, leases hash, failed list, item status hash (none: remove only,
# `ack_outbox`), then one status hash per provider message id.
# ARGV: item id, status, rank, error code, ttl, rank of "sent", failure entry, failed list cap.
FINISH_OUTBOX_LUA = _STATUS_FUNCTION + """
if KEYS[5] then record(KEYS[5], ARGV[2], ARGV[3], ARGV[4], ARGV[5]) end
for k = 6, #KEYS do record(KEYS[k], 'sent', ARGV[6], '', ARGV[5]) end
if ARGV[7] ~= '' and redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('LPUSH', KEYS[4], ARGV[7])
  redis.call('LTRIM', KEYS[4], 0, tonumber(ARGV[8]) - 1)
  redis.call('EXPIRE', KEYS[4], ARGV[5])
end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('DEL', KEYS[2])
return 1
"""

# A turn's transcript entries travel and live as ONE list element (one argument to pack, one
# listpack entry), starting with b"\xc1" (a byte msgpack never starts with) and a mark:
#   b"\x05" raw deflate (window 4 KB, preset dictionary _TURN_DICT_2) of msgpack [entries as bin,
#           the reply to the turn's delivery (dedupe) or nil]: what is written now;
#   b"\x01" / b"\x03" the same uncompressed, entries alone / [entries, reply] (when deflate does not pay);
#   b"\x02" / b"\x04" zlib with the older dictionaries _TURN_DICT / _TURN_REPLY_DICT (older elements).
# The reply costs only what it adds to the compressed turn: its texts are the entries' texts.
# A delivery's tag (`delivery_tag`: b"\xc1\x00" + a 9-byte digest) is pushed just before its turn's
# element: `begin` finds a duplicate with LPOS (C, no Lua string per element) and reads the next one.
# Elements written before all this (a bare entry) still read as one entry.
_TURN_MARK = 0xC1
_TAG_MARK = b"\xc1\x00"
_DEFLATED_TURN = b"\xc1\x05"
_DEFLATE_FROM = 48  # bytes; below this deflate's own framing eats the gain
# zlib preset dictionaries of older elements (b"\x02", b"\x04"): never change them.
_TURN_DICT = (
    b"\xa4note\xa3var\xa3call\xa7outcome\xa2ms\xa3say\xa3ask\xa3end\xa5voice\xa8whatsapp\xa4chat"
    b"\x82\xa4kind\xa4text\xa7channel\xa3sms\xa5start\xa6choice\xa9choice_id\xc4\x17\x94\xcbA\xda"
    b"\xa5state\xc0\xc4\x94\xcbA\xda\xa3out\x82\xa4kind\xa3ask\xa5state\xc4\x94\xcbA\xda\xa2in"
)
_TURN_REPLY_DICT = _TURN_DICT + (
    b"\xa5input\xa4name\xa8datetime\xa4text\xa6choice\xa8reprompt\xc3\xa7outcome\xa6target\xa9media_url"
    b"\xa4kind\xa3end\xa4kind\xa3say\xa4text\xacflow_choices\x91\x00\xa8revision\xac\xaaevent_kind\xa5start"
    b"\xa4step\xadwithin_window\xc2\xaaevent_kind\xa4text\x83\xa8messages\x91\x84\xa4kind\xa3ask\xa4text"
)
# The dictionary of b"\x05" elements: a turn as msgspec encodes it (TranscriptEntry arrays, a
# runtime.StoredReply map; rarer shapes first, the most common turn last, nearest to the data) and
# phrases common in prompts. Never change it: elements written with it must stay readable (a
# better one takes a new mark). Measured on walks of the shipped flow (SMS, booking, voice,
# WhatsApp): turns 21-26 % smaller than b"\x04", ~10 % less CPU (the compressor is primed once
# and copied per turn).
_TURN_DICT_2 = (
    b"Sorry, I didn't get that. Please reply with one of the options, or say it again. Thank you! Is there anything"
    b" else I can help you with? We'll get back to you as soon as we can. Would you like to book an appointment? Wh"
    b"at time works for you? For example: today at 4pm, tomorrow morning. You're all set. See you then! Goodbye! Re"
    b"ply STOP to opt out. \x94\xcbA\xda\xc1\xab\xa0\x00\x00\x00\xa4call\xb3calendar.find_slots\x83\xa7outcome\xa2o"
    b"k\xa2ms\xcb?\xf8\x00\x00\x00\x00\x00\x00\xa6detail\xa0\x94\xcbA\xda\xc1\xab\xa0\x00\x00\x00\xa4note\xaeoutcom"
    b"e booked\x81\xa7outcome\xa6booked\x94\xcbA\xda\xc1\xab\xa0\x00\x00\x00\xa2in\xa1x\x83\xa4kind\xa5media\xa7cha"
    b"nnel\xa8whatsapp\xa5media\x91\x84\xa3url\xa8https://\xa2id\xa0\xa4type\xaaimage/jpeg\xa7caption\xa0\x94\xcbA"
    b"\xda\xc1\xab\xa0\x00\x00\x00\xa2in\xa1x\x83\xa4kind\xa8location\xa7channel\xa8whatsapp\xa8location\x84\xa8lat"
    b"itude\xcb?\xf8\x00\x00\x00\x00\x00\x00\xa9longitude\xcb?\xf8\x00\x00\x00\x00\x00\x00\xa4name\xa0\xa7address"
    b"\xa0ignored  event at state not understood at  (try new conversationopening message answered call ended mid-f"
    b"low: continuing by intent \x84\xa8messages\x95\x83\xa4kind\xa7handoff\xa4text\xa1x\xa6target\xa2+1\x83\xa4kin"
    b"d\xa6notify\xa4text\xa1x\xa6target\xa2+1\x82\xa4kind\xa3end\xa7outcome\xaahanded_off\x83\xa4kind\xa6record"
    b"\xa4text\xa1x\xabmax_seconds\xcb@^\x00\x00\x00\x00\x00\x00\x83\xa4kind\xa3say\xa4text\xa1x\xa9media_url\xa8ht"
    b"tps://\xadwithin_window\xc2\xa9opted_out\xc3\xa4step\xa80123abcd\x87\xa4kind\xa3ask\xa4text\xa1x\xa7choices"
    b"\x91\x85\xa2id\xa0\xa5label\xa0\xa4dtmf\xa11\xa5match\x91\xa0\xabdescription\xa0\xa5input\xa6choice\xa8reprom"
    b"pt\xc3\xa8language\xa5en-US\xa5voice\xa0\x94\xcbA\xda\xc1\xab\xa0\x00\x00\x00\xa2in\xa1x\x83\xa4kind\xa6speec"
    b"h\xa7channel\xa5voice\xaaconfidence\xcb?\xe0\x00\x00\x00\x00\x00\x00\x94\xcbA\xda\xc1\xab\xa0\x00\x00\x00\xa2"
    b"in\xa1x\x82\xa4kind\xa6digits\xa7channel\xa5voice\x94\xcbA\xda\xc1\xab\xa0\x00\x00\x00\xa2in\xa1x\x83\xa4kind"
    b"\xa6choice\xa7channel\xa8whatsapp\xa9choice_id\xa0\x94\xcbA\xda\xc1\xab\xa0\x00\x00\x00\xa2in\xa1x\x82\xa4kin"
    b"d\xa5start\xa7channel\xa4chat\x94\xcbA\xda\xc1\xab\xa0\x00\x00\x00\xa3out\xa1x\x82\xa4kind\xa3say\xa5state"
    b"\xa0\x94\xcbA\xda\xc1\xab\xa0\x00\x00\x00\xa3var\xa4name\xa0\x84\xa8messages\x92\x82\xa4kind\xa3say\xa4text"
    b"\xa1x\x83\xa4kind\xa3ask\xa4text\xa1x\xa5input\xa8datetime\xacflow_choices\x91\x01\xa8revision\xac00000000000"
    b"0\xaaevent_kind\xa5start\x92\x93\xc4&\x94\xcbA\xda\xc1\xab\xa0\x00\x00\x00\xa2in\xa1x\x82\xa4kind\xa4text\xa7"
    b"channel\xa3sms\xc4\x16\x94\xcbA\xda\xc1\xab\xa0\x00\x00\x00\xa5state\xa4ask_\xc0\xc4P\x94\xcbA\xda\xc1\xab"
    b"\xa0\x00\x00\x00\xa3out\xd9+Thanks, x. What would you like to do today?\x82\xa4kind\xa3ask\xa5state\xa4ask_"
    b"\xc4\x94\x84\xa8messages\x91\x84\xa4kind\xa3ask\xa4text\xd9+Thanks, x. What would you like to do today?\xa5st"
    b"ate\xa4ask_\xa5input\xa6choice\xacflow_choices\x91\x00\xa8revision\xac000000000000\xaaevent_kind\xa4text"
)
_bytes_list = msgspec.msgpack.Decoder(list[bytes])
_pack = msgspec.msgpack.Encoder().encode
_turn_with_reply = msgspec.msgpack.Decoder(tuple[list[bytes], bytes])
_turn_maybe_reply = msgspec.msgpack.Decoder(tuple[list[bytes], bytes | None])


def _deflater(zdict: bytes, wbits: int) -> Any:
    """A raw-deflate compressor primed with `zdict`; `_deflate` copies it (cheaper than setting the
    dictionary per call). Level 6, memLevel 4: a small state to copy, the same bytes as the
    defaults on values of a few hundred bytes."""
    return zlib.compressobj(6, zlib.DEFLATED, -wbits, 4, zlib.Z_DEFAULT_STRATEGY, zdict)


def _deflate(primed: Any, data: bytes) -> bytes:
    c = primed.copy()
    return bytes(c.compress(data) + c.flush())


def _inflate(data: bytes, zdict: bytes, wbits: int) -> bytes:
    """Inflate what `_deflater(zdict, wbits)` wrote: the writer's window is part of the format (a
    smaller reader window fails, a larger one costs an allocation per call)."""
    d = zlib.decompressobj(-wbits, zdict)
    return d.decompress(data) + d.flush()


_TURN_WBITS = 12  # a 4 KB window: the dictionary and a turn fit in it
_turn_deflater = _deflater(_TURN_DICT_2, _TURN_WBITS)


def pack_turn(entries: Sequence[bytes], reply: bytes | None = None) -> bytes:
    """One turn's encoded TranscriptEntry values (and the reply to its delivery) as one element."""
    body = _pack((entries, reply))
    if len(body) >= _DEFLATE_FROM:
        packed = _deflate(_turn_deflater, body)
        if len(packed) < len(body):
            return _DEFLATED_TURN + packed
    return b"\xc1\x01" + _pack(entries) if reply is None else b"\xc1\x03" + body


def _turn_body(element: bytes) -> tuple[list[bytes], bytes | None]:
    if not element or element[0] != _TURN_MARK:
        return [element], None
    mark = element[1:2]
    if mark == b"\x05":
        return _turn_maybe_reply.decode(_inflate(element[2:], _TURN_DICT_2, _TURN_WBITS))
    if mark == b"\x00":  # a delivery tag, not a turn
        return [], None
    if mark in (b"\x02", b"\x04"):
        d = zlib.decompressobj(zlib.MAX_WBITS, _TURN_DICT if mark == b"\x02" else _TURN_REPLY_DICT)
        body = d.decompress(element[2:]) + d.flush()
    elif mark in (b"\x01", b"\x03"):
        body = element[2:]
    else:
        raise NewerFormat(f"a stored turn is marked {element[:2]!r}, which this process does not read; "
                          "left for a newer process")
    if mark in (b"\x03", b"\x04"):
        return _turn_with_reply.decode(body)
    return _bytes_list.decode(body), None


def unpack_turn(element: bytes) -> list[bytes]:
    """The entries of one transcript element (a bare entry of the old format is itself; a
    delivery tag has none)."""
    return _turn_body(element)[0]


def turn_reply(element: bytes) -> bytes:
    """The reply kept in a transcript element (b"" when it holds none: e.g. trimmed away)."""
    return (_turn_body(element)[1] or b"") if element else b""


def is_delivery_tag(element: bytes) -> bool:
    return element[:2] == _TAG_MARK


def delivery_tag(dedupe_id: str) -> bytes:
    """The transcript element that marks a delivery, pushed just before its turn: 72 bits of
    blake2b, ample within one conversation (a false match needs two of its deliveries to collide)."""
    return _TAG_MARK + hashlib.blake2b(dedupe_id.encode(), digest_size=9).digest()


# The session key's value is "<version>,<timer turns>," + the session: its msgpack, or
# b"\xc1\x01" + raw deflate of it with this dictionary (a Session as msgspec encodes it) when
# that is smaller: ~315 -> ~140 bytes for the shipped flow (~220 B less MEMORY USAGE), ~7 us to
# pack, ~2 us to read. Sessions over 2 KB (a path of hundreds of states, large vars) stay plain:
# their cost grows with their size (3.5 KB: ~35 us a turn to pack and read in a live process).
# Never change the dictionary or the 2 KB window (a new one takes a new mark). A session msgpack
# never starts with b"\xc1".
_SESSION_DICT = (
    b"\xde\x00\x0b\xa2id\xa1x\xa4flow\xa1x\xa8revision\xa1x\xa5state\xa1x\xa7channel\xa8whatsapp\xa4vars\x81\xa1x"
    b"\x84\xa2id\xa0\xa5start\xa0\xa3end\xa0\xa5label\xa0\xa7retries\x01\xa9reminders\x01\xa6status\xa5ended\xa7out"
    b"come\xa6booked\xa4path\x91\xa1x\xde\x00\x05\xa2id\xa1x\xa4flow\xa1x\xa8revision\xa1x\xa5state\xa1x\xa7channel"
    b"\xa5voice\xde\x00\x0e\xa2id\xb9+10000000000:+10000000000\xa4flow\xa1x\xa8revision\xac000000000000\xa5state"
    b"\xa4ask_\xa8business\xac+10000000000\xa7contact\xac+10000000000\xa7channel\xa3sms\xa4vars\x81\xa4name\xa1x"
    b"\xaastarted_at\xcbA\xda\xc1\xab\xa0\x00\x00\x00\xaaupdated_at\xcbA\xda\xc1\xab\xa0\x00\x00\x00\xaflast_inboun"
    b"d_at\xcbA\xda\xc1\xab\xa0\x00\x00\x00\xa5turns\x01\xa7version\x01\xa4path\x93\xa4ask_\xa4menu\xa4ask_"
)
_SESSION_MARK = b"\xc1\x01"
_SESSION_WBITS = 11
_SESSION_DEFLATE_UP_TO = 2048
_session_deflater = _deflater(_SESSION_DICT, _SESSION_WBITS)


def session_value(version: int, session: bytes, timer_member: str | None, session_id: str) -> bytes:
    """The session key's value: "<version>,<timer turns>," + the (compressed) session msgpack. The
    armed timer's member must be "<session id>|<turns>" (store.timer_member): only its turns are kept."""
    turns = ""
    if timer_member:
        sid, _, turns = timer_member.rpartition("|")
        if sid != session_id or not turns.isdigit():
            raise ValueError(f"timer member {timer_member!r} must be {session_id!r} + '|<turns>'")
    if _DEFLATE_FROM <= len(session) <= _SESSION_DEFLATE_UP_TO:
        packed = _SESSION_MARK + _deflate(_session_deflater, session)
        if len(packed) < len(session):
            session = packed
    return b"%d,%s," % (version, turns.encode()) + session


def parse_session_value(value: bytes) -> tuple[int, str, bytes]:
    """(version, timer turns or "", session msgpack) of a session key's value; NewerFormat for a
    layout or a mark this code does not know (the "<version>,<timer turns>," prefix never changes:
    every release's commit script reads it)."""
    version, _, rest = value.partition(b",")
    turns, comma, data = rest.partition(b",")
    if not comma or not version.isdigit() or not (turns.isdigit() or not turns):
        raise NewerFormat(f"a stored session value starts {value[:24]!r}: not a layout this process reads; "
                          "left for a newer process")
    if data[:1] == b"\xc1":
        if data[:2] != _SESSION_MARK:
            raise NewerFormat(f"a stored session is marked {data[:2]!r}, this process reads {_SESSION_MARK!r}; "
                              "left for a newer process")
        data = _inflate(data[2:], _SESSION_DICT, _SESSION_WBITS)
    return int(version), turns.decode(), data


def delivery_key(dedupe_id: str) -> str:
    """The dedupe hash field of a provider delivery id: long ids (Twilio's 34-character SIDs,
    WhatsApp wamids of ~60) become a 16-byte digest in base64 (24 chars), short ones stay."""
    if len(dedupe_id) <= 24:
        return dedupe_id
    return "#" + base64.b64encode(hashlib.blake2b(dedupe_id.encode(), digest_size=16).digest()).decode()[:22]


# Error replies meaning "Redis is up but takes no writes now", as Redis words them (a script's
# error carries the refused command's error: "OOM command not allowed ... script: ..."). A turn
# script is refused at its first write (Redis checks maxmemory, read-only and disk errors before
# a script's first write only, to keep the script atomic), so a refusal leaves nothing written.
_REFUSALS = (
    ("OOM command not allowed", "out_of_memory"),
    ("used memory > 'maxmemory'", "out_of_memory"),
    ("READONLY", "read_only"),
    ("read only replica", "read_only"),
    ("MISCONF", "disk_error"),
    ("NOREPLICAS", "no_replicas"),
)
_REFUSAL_FIX = {
    "out_of_memory": "Redis is at maxmemory: raise maxmemory or free memory (the turn's keys all have TTLs; "
                     "use maxmemory-policy noeviction, never an evicting policy, for this store)",
    "read_only": "ORCHESTRATOR_REDIS_URL points at a read-only replica: point it at the primary",
    "disk_error": "Redis cannot persist its snapshot (stop-writes-on-bgsave-error): fix its disk, see its log",
    "no_replicas": "Redis has fewer replicas than min-replicas-to-write: bring the replicas back",
}


def write_refusal(exc: ResponseError) -> str | None:
    """The reason code when an error reply means Redis refuses writes, else None."""
    text = str(exc)
    if type(exc).__name__ == "OutOfMemoryError":
        return "out_of_memory"
    if type(exc).__name__ == "ReadOnlyError":
        return "read_only"
    return next((reason for needle, reason in _REFUSALS if needle in text), None)


def _split_token(token: str) -> tuple[str, float, int]:
    """(lock token, monotonic time its begin returned, lock ttl ms) of a `begin` token; a bare
    lock token has no deadline (0.0, 0)."""
    lock, _, rest = token.partition("@")
    began, _, ttl = rest.partition("@")
    return (lock, float(began), int(ttl)) if ttl else (lock, 0.0, 0)


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


class RedisStore:
    """Conversations in Redis; safe with many processes. Build with `await RedisStore.connect(url)`."""

    def __init__(self, client: aioredis.Redis, prefix: str = "orch") -> None:
        self._r = client
        self.prefix = prefix
        self._begin = client.register_script(BEGIN_LUA)
        self._commit = client.register_script(COMMIT_LUA)
        self._release = client.register_script(RELEASE_LUA)
        self._claim_timers = client.register_script(CLAIM_TIMERS_LUA)
        self._claim_outbox = client.register_script(CLAIM_OUTBOX_LUA)
        self._status = client.register_script(STATUS_LUA)
        self._retry_outbox = client.register_script(RETRY_OUTBOX_LUA)
        self._finish_outbox = client.register_script(FINISH_OUTBOX_LUA)
        self._settle = client.register_script(SETTLE_LUA)
        self._opt_out = client.register_script(OPT_OUT_LUA)
        # the hot path (begin, commit, release; the outbox sender, conversation records) goes
        # through one persistent pipelined connection
        pool = client.connection_pool
        plain = pool.connection_class.__name__ in ("Connection", "UnixDomainSocketConnection")
        self._lean = LeanRedis.from_pool_kwargs(pool.connection_kwargs, plain=plain)
        # how long a commit sent without an answer may still apply (and is asked about): a Redis
        # pause of up to this long answers the stored reply, a longer one a 503 with nothing saved
        self.settle_seconds = 4.0 * float(pool.connection_kwargs.get("socket_timeout") or 1.0)

    @classmethod
    async def connect(cls, url: str, prefix: str = "orch", *, timeout_seconds: float = 1.0) -> RedisStore:
        """Connect and check; StoreUnavailable (fast) when Redis cannot be reached."""
        client = aioredis.Redis.from_url(
            url,
            socket_timeout=timeout_seconds,
            socket_connect_timeout=timeout_seconds,
            retry=Retry(NoBackoff(), 1),  # one reconnect after a dropped pooled connection
            health_check_interval=0,
            max_connections=256,
        )
        store = cls(client, prefix)
        await store.ping()
        return store

    # keys ----------------------------------------------------------------------------
    def _k(self, session_id: str, part: str) -> str:
        return f"{self.prefix}:{{{session_id}}}:{part}"

    def _g(self, name: str) -> str:
        return f"{self.prefix}:{name}"

    def _eval(self, script: Any, keys: list[Any], args: list[Any]) -> Awaitable[Any]:
        """A hot-path script call: EVALSHA through the lean transport (`_resp.py`; ~10x less CPU
        than redis-py's client), or redis-py's Script when the URL needs TLS."""
        return run_script(self._lean, script, keys, args)

    def _call(self, *args: Any) -> Awaitable[Any]:
        """A plain command, through the lean transport when there is one (as `_eval`)."""
        if self._lean is not None:
            return self._lean.execute(*args)
        return self._r.execute_command(*args)

    @property
    def lean(self) -> LeanRedis | None:
        """The lean transport (`_resp.py`), None when the URL needs TLS: storage beside the sessions
        (sidestore.py) sends its scripts through it too."""
        return self._lean

    async def _do(self, awaitable: Awaitable[Any]) -> Any:
        try:
            return await awaitable
        except NoScriptError:
            raise
        except (RedisError, OSError) as exc:
            mapped = self._mapped(exc)
            if type(mapped) is StoreError:  # unexpected: keep the cause
                raise mapped from exc
            raise mapped from None

    def _mapped(self, exc: RedisError | OSError) -> StoreError:
        """The store's error for a Redis failure: StoreUnavailable (unreachable, loading),
        StoreWriteRefused (up, takes no writes), else StoreError."""
        if isinstance(exc, (RedisConnectionError, RedisTimeoutError, BusyLoadingError, OSError)):
            return StoreUnavailable(
                f"redis store ({self.prefix}): cannot reach Redis ({type(exc).__name__}: {exc}); "
                "check ORCHESTRATOR_REDIS_URL and that Redis is running"
            )
        reason = write_refusal(exc) if isinstance(exc, ResponseError) else None
        if reason is not None:
            return StoreWriteRefused(
                f"redis store ({self.prefix}): Redis refuses writes ({reason}: {exc}); nothing was written. "
                f"{_REFUSAL_FIX[reason]}", reason,
            )
        return StoreError(f"redis store ({self.prefix}): {type(exc).__name__}: {exc}")

    # the turn ------------------------------------------------------------------------
    async def begin(
        self, session_id: str, dedupe_id: str | None, *, lock_ttl_seconds: float, wait_seconds: float,
        contact: str | None = None,
    ) -> Begin:
        token = secrets.token_hex(8)
        keys = [
            self._k(session_id, "l"),
            self._k(session_id, "s"),
            self._k(session_id, "d"),
            self._g(f"optout:{contact or '-'}"),
            self._k(session_id, "t"),
        ]
        args: list[Any] = [token, max(1, int(lock_ttl_seconds * 1000)), "1" if dedupe_id else "0",
                           delivery_key(dedupe_id) if dedupe_id else "", delivery_tag(dedupe_id) if dedupe_id else "",
                           DEDUPE_SCAN]
        deadline = time.monotonic() + wait_seconds
        delay = 0.002
        while True:
            res = await self._do(self._eval(self._begin, keys, args))
            code = int(res[0])
            if code == 1:
                if len(res) > 2:  # the turn's transcript element, which carries the reply
                    return Begin(duplicate_reply=turn_reply(bytes(res[1])))
                return Begin(duplicate_reply=bytes(res[1]))
            if code == 0:
                raw, optout = res[1], res[2]
                # the token handed out also says when the lock was taken: the commit's deadline
                held = f"{token}@{time.monotonic()!r}@{args[1]}"
                try:
                    version, data = (parse_session_value(bytes(raw))[::2]) if raw else (0, b"")
                except NewerFormat:
                    await self.release(session_id, held)
                    raise
                return Begin(session=data or None, version=version, token=held, opted_out=bool(optout))
            if time.monotonic() >= deadline:
                raise LockTimeout(
                    f"session {session_id!r}: another turn held the lock for more than {wait_seconds} s; "
                    "the provider should retry (raise ORCHESTRATOR_LOCK_WAIT_SECONDS if turns are slow)"
                )
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 0.05)

    async def commit(self, session_id: str, token: str, commit: Commit) -> None:
        """Save the turn, or raise (StaleWrite, StoreUnavailable) having saved nothing. A commit that
        was sent but not answered (Redis paused, the connection lost) is settled before this returns:
        it applies only within `settle_seconds` of being sent (its lock's PTTL says so in Redis' own
        clock), and `_settle_commit` finds out whether it did, so a raise always means not saved."""
        token, began, lock_ms = _split_token(token)
        sent = time.monotonic()
        settle_by = sent + self.settle_seconds
        # the lock was taken at most (sent - began) before now: the commit must run within
        # settle_seconds from now, i.e. while its lock has at least this much of its TTL left
        least_pttl = max(0, lock_ms - int((sent - began + self.settle_seconds) * 1000)) if began else 0
        keys = [
            self._k(session_id, "l"),
            self._k(session_id, "s"),
            self._k(session_id, "t"),
            self._k(session_id, "d"),
            self._g("timers"),
            self._g("outbox"),
            self._g("sessions"),
            self._g(f"c:{commit.contact or '-'}"),
        ]
        deduped = bool(commit.dedupe_id) and commit.reply is not None
        # the reply rides in the turn's element, found by the delivery's tag; the hash keeps it
        # only when the turn has no element
        in_hash = deduped and not commit.transcript
        args: list[Any] = [
            token, commit.expect_version, commit.version,
            session_value(commit.version, commit.session, commit.timer.member if commit.timer else None,
                          session_id),
            max(1, int(commit.ttl_seconds)),
            delivery_key(commit.dedupe_id or "") if in_hash else "", (commit.reply or b"") if in_hash else b"",
            max(1, int(commit.dedupe_ttl_seconds)), max(1, int(commit.retention_seconds)),
            commit.timer.member if commit.timer else "", commit.timer.due if commit.timer else 0,
            commit.outbox_due, session_id, commit.updated_at or time.time(), least_pttl,
        ]
        if commit.transcript:
            element = pack_turn(commit.transcript, commit.reply if deduped else None)
            args += [2, delivery_tag(commit.dedupe_id or ""), element] if deduped else [1, element]
        else:
            args.append(0)
        args.append(len(commit.side))
        for put in commit.side:
            put_keys, put_args = put_script_args(self.prefix, put)
            keys += put_keys
            args.append(len(put_keys))
            args += put_args
        for item in commit.outbox:
            sid, _, uniq = item.id.rpartition("|")
            if sid != session_id:
                raise ValueError(f"outbox id {item.id!r} must start with the session id {session_id!r} + '|'")
            keys.append(self._k(session_id, f"o:{uniq}"))
            args += [item.id, item.payload]
        try:
            res = await self._eval(self._commit, keys, args)
        except NotSent as exc:
            raise self._mapped(exc) from None
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:  # sent, unanswered: it may have run
            res = await self._settle_commit(session_id, token, commit, in_hash, settle_by, exc)
        except RedisError as exc:
            raise self._mapped(exc) from exc
        res = res.decode() if isinstance(res, bytes) else str(res)
        if res == "LATE":
            raise StoreUnavailable(
                f"session {session_id!r}: Redis ran the commit more than {self.settle_seconds} s after it was "
                "sent (paused or overloaded), so it was refused; the turn was not saved, the provider should retry"
            )
        if res == "LOCK":
            raise StaleWrite(
                f"session {session_id!r}: the lock expired before the save and may belong to another "
                "turn now; the turn was not saved (raise ORCHESTRATOR_LOCK_TTL_SECONDS if turns are slow)"
            )
        if res == "VERSION":
            raise StaleWrite(
                f"session {session_id!r}: stored version is not {commit.expect_version} (another turn "
                "saved first); the turn was not saved"
            )

    async def _settle_commit(
        self, session_id: str, token: str, commit: Commit, in_hash: bool, settle_by: float, cause: Exception,
    ) -> bytes:
        """Whether a commit sent without an answer ran ("OK"), else StoreUnavailable: asked again
        (SETTLE_LUA, which fences it off if it has not run) until `settle_by`, after which it can
        no longer run (its deadline)."""
        deduped = bool(commit.dedupe_id) and commit.reply is not None
        keys = [self._k(session_id, "l"), self._k(session_id, "t"), self._k(session_id, "d"),
                self._k(session_id, "s")]
        args = [token, delivery_tag(commit.dedupe_id or "") if deduped and not in_hash else "",
                delivery_key(commit.dedupe_id or "") if in_hash else "", commit.version, DEDUPE_SCAN]
        while True:
            try:
                ran = await self._do(self._eval(self._settle, keys, args))
            except StoreUnavailable:
                if time.monotonic() >= settle_by:
                    raise StoreUnavailable(
                        f"session {session_id!r}: Redis did not answer the commit ({cause}) nor the check after "
                        f"it for {self.settle_seconds} s; the commit can no longer run (its deadline passed), "
                        "the turn was not saved: the provider should retry"
                    ) from None
                await asyncio.sleep(0.02)
                continue
            if int(ran):
                log.warning("session %s: the commit's answer was lost (%s) but it ran; answering its reply",
                            redact_phone(session_id), cause)
                return b"OK"
            raise StoreUnavailable(
                f"session {session_id!r}: Redis did not answer the commit in time ({cause}); it did not run and "
                "now never will (settled): the turn was not saved, the provider should retry"
            )

    async def release(self, session_id: str, token: str) -> None:
        if token:
            await self._do(self._eval(self._release, [self._k(session_id, "l")], [_split_token(token)[0]]))

    async def _session_value(self, session_id: str) -> tuple[int, str, bytes] | None:
        key = self._k(session_id, "s")
        try:
            raw = await self._do(self._r.get(key))
        except StoreError as exc:  # WRONGTYPE: a hash of the older layout, not converted by a turn yet
            if "WRONGTYPE" not in str(exc) or isinstance(exc, StoreUnavailable):
                raise
            d, v, tm = await self._do(self._r.hmget(key, ["d", "v", "tm"]))
            if d is None:
                return None
            return int(v or 0), bytes(tm).decode().rpartition("|")[2] if tm else "", bytes(d)
        return parse_session_value(bytes(raw)) if raw else None

    async def load(self, session_id: str) -> bytes | None:
        value = await self._session_value(session_id)
        return value[2] or None if value else None

    async def load_many(self, session_ids: list[str]) -> list[bytes | None]:
        """One pipelined GET per id; a key of the older hash layout (WRONGTYPE) is read on its own."""
        if not session_ids:
            return []
        pipe = self._r.pipeline(transaction=False)
        for sid in session_ids:
            pipe.get(self._k(sid, "s"))
        rows = await self._do(pipe.execute(raise_on_error=False))
        out: list[bytes | None] = []
        for sid, raw in zip(session_ids, rows, strict=True):
            if isinstance(raw, Exception):
                out.append(await self.load(sid))
            else:
                out.append(parse_session_value(bytes(raw))[2] or None if raw else None)
        return out

    # opt-outs ------------------------------------------------------------------------
    async def set_opt_out(self, contact: str, opted_out: bool) -> None:
        key = self._g(f"optout:{contact}")
        if opted_out:
            await self._do(self._eval(self._opt_out, [key], [str(int(time.time())), OPT_OUT_TTL_SECONDS]))
        else:
            await self._do(self._r.delete(key))  # DEL is allowed at maxmemory

    async def is_opted_out(self, contact: str) -> bool:
        return bool(await self._do(self._call("EXISTS", self._g(f"optout:{contact}"))))

    # flow revisions ------------------------------------------------------------------
    async def put_revision(self, flow_id: str, revision: str, source: str) -> None:
        pipe = self._r.pipeline(transaction=True)
        pipe.set(self._g(f"rev:{revision}"), source.encode(), ex=REVISION_TTL_SECONDS)
        pipe.zadd(self._g(f"flow:{flow_id}"), {revision: time.time()}, nx=True)
        pipe.expire(self._g(f"flow:{flow_id}"), REVISION_TTL_SECONDS)
        await self._do(pipe.execute())

    async def get_revision(self, revision: str) -> str | None:
        data = await self._do(self._r.get(self._g(f"rev:{revision}")))
        return bytes(data).decode() if data else None

    async def latest_revision(self, flow_id: str) -> str | None:
        items = await self._do(self._r.zrange(self._g(f"flow:{flow_id}"), -1, -1))
        return bytes(items[0]).decode() if items else None

    async def list_revisions(self, flow_id: str) -> list[str]:
        items = await self._do(self._r.zrange(self._g(f"flow:{flow_id}"), 0, -1))
        return [bytes(i).decode() for i in items]

    # timers and outbox ---------------------------------------------------------------
    async def claim_due_timers(self, now: float, limit: int = 100) -> list[str]:
        res = await self._do(self._eval(self._claim_timers, [self._g("timers")], [now, limit]))
        return [bytes(m).decode() for m in res]

    async def put_timer(self, member: str, due: float) -> None:
        await self._do(self._r.zadd(self._g("timers"), {member: due}))

    async def claim_outbox(self, now: float, limit: int, lease_seconds: float) -> list[OutboxClaim]:
        res = await self._do(
            self._eval(self._claim_outbox, [self._g("outbox"), self._g("outbox:leases")],
                       [now, limit, now + lease_seconds, self.prefix])
        )
        return [
            OutboxClaim(bytes(res[i]).decode(), bytes(res[i + 1]), None if int(res[i + 2]) < 0 else bool(res[i + 2]),
                        reclaimed=int(res[i + 3]) > 1)
            for i in range(0, len(res), 4)
        ]

    def _outbox_key(self, item_id: str) -> str:
        sid, _, uniq = item_id.rpartition("|")
        return self._k(sid, f"o:{uniq}")

    async def ack_outbox(self, item_id: str) -> None:
        keys = [self._g("outbox"), self._outbox_key(item_id), self._g("outbox:leases"), self._g("outbox:failed")]
        await self._do(self._eval(self._finish_outbox, keys, [item_id, "", 0, "", 1, 0, "", 1]))

    async def finish_outbox(
        self, item_id: str, status: str, error_code: str | None = None, message_ids: Sequence[str] = (),
        failure: bytes = b"",
    ) -> None:
        keys = [self._g("outbox"), self._outbox_key(item_id), self._g("outbox:leases"), self._g("outbox:failed"),
                self._g(f"st:{item_id}")]
        keys += [self._g(f"st:{m}") for m in message_ids]
        args = [item_id, status, status_rank(status), error_code or "", STATUS_TTL_SECONDS, status_rank("sent"),
                failure, FAILED_OUTBOX_KEPT]
        await self._do(self._eval(self._finish_outbox, keys, args))

    async def retry_outbox(self, item_id: str, payload: bytes, due: float) -> None:
        await self._do(self._eval(self._retry_outbox,
                                  [self._g("outbox"), self._outbox_key(item_id), self._g("outbox:leases")],
                                  [payload, due, item_id]))

    async def failed_outbox(self, limit: int = 100) -> list[bytes]:
        return [bytes(v) for v in await self._do(self._call("LRANGE", self._g("outbox:failed"), 0, limit - 1))]

    # delivery statuses ---------------------------------------------------------------
    async def record_status(self, message_id: str, status: str, error_code: str | None = None) -> str:
        res = await self._do(
            self._eval(self._status, [self._g(f"st:{message_id}")],
                       [status, status_rank(status), error_code or "", STATUS_TTL_SECONDS])
        )
        return bytes(res).decode() if isinstance(res, bytes) else str(res)

    async def get_status(self, message_id: str) -> tuple[str, str | None] | None:
        s, e = await self._do(self._r.hmget(self._g(f"st:{message_id}"), ["s", "e"]))
        if not s:
            return None
        return bytes(s).decode(), (bytes(e).decode() or None) if e else None

    # records -------------------------------------------------------------------------
    async def get_transcript(self, session_id: str) -> list[bytes]:
        """Every entry, in order (each stored element holds one turn's entries)."""
        out: list[bytes] = []
        for element in await self._do(self._r.lrange(self._k(session_id, "t"), 0, -1)):
            out.extend(unpack_turn(bytes(element)))
        return out

    async def trim_transcript(self, session_id: str, older_than: float) -> int:
        """Drop the leading turns whose entries are all older than `older_than` (with the tags of
        their deliveries); returns the entries dropped. Commits only append, so trimming the head
        never loses a new turn."""
        key = self._k(session_id, "t")
        dropped_elements = dropped = tags = 0
        for element in await self._do(self._r.lrange(key, 0, -1)):
            if is_delivery_tag(bytes(element)):
                tags += 1  # goes with the turn after it
                continue
            entries = unpack_turn(bytes(element))
            if any(entry_time(e) >= older_than for e in entries):
                break
            dropped_elements += tags + 1
            tags = 0
            dropped += len(entries)
        if dropped_elements:
            await self._do(self._r.ltrim(key, dropped_elements, -1))
        return dropped

    @property
    def client(self) -> aioredis.Redis:
        """The store's Redis client (same pool, timeouts, retry policy) for storage kept beside the
        sessions (sidestore.py): keys written through it start with f"{prefix}:" and get a TTL."""
        return self._r

    async def list_sessions(self, limit: int = 100, offset: int = 0) -> list[SessionInfo]:
        items = await self._do(
            self._r.zrevrange(self._g("sessions"), offset, offset + limit - 1, withscores=True)
        )
        return [SessionInfo(bytes(m).decode(), float(s)) for m, s in items]

    async def _contact_sessions(self, contact: str) -> list[str]:
        return sorted(bytes(m).decode() for m in await self._do(self._r.smembers(self._g(f"c:{contact}"))))

    async def export_contact(self, contact: str) -> ContactExport:
        sids = await self._contact_sessions(contact)
        sessions: dict[str, bytes] = {}
        transcripts: dict[str, list[bytes]] = {}
        for sid in sids:
            data = await self.load(sid)
            if data is not None:
                sessions[sid] = data
            transcripts[sid] = await self.get_transcript(sid)
        return ContactExport(
            contact=contact, opted_out=await self.is_opted_out(contact), sessions=sessions,
            transcripts=transcripts,
        )

    async def erase_contact(self, contact: str) -> int:
        removed = 0
        for sid in await self._contact_sessions(contact):
            value = await self._session_value(sid)
            timer = f"{sid}|{value[1]}" if value and value[1] else None
            keys: list[bytes] = []
            pattern = f"{_glob_escape(self.prefix)}:{{{_glob_escape(sid)}}}:*"
            async for key in self._r.scan_iter(match=pattern, count=500):
                keys.append(key)
            pipe = self._r.pipeline(transaction=False)
            if timer:
                pipe.zrem(self._g("timers"), timer)
            pipe.zrem(self._g("sessions"), sid)
            for key in keys:
                name = bytes(key).decode()
                if ":o:" in name:
                    pipe.zrem(self._g("outbox"), f"{sid}|{name.rpartition(':o:')[2]}")
            if keys:
                pipe.delete(*keys)
            await self._do(pipe.execute())
            removed += len(keys)
        removed += int(await self._do(self._r.delete(self._g(f"c:{contact}"))))
        # given-up sends name the contact and hold the texts: they go too (LREM by value is safe
        # beside a concurrent LPUSH of another entry)
        failed = self._g("outbox:failed")
        for entry in await self._do(self._r.lrange(failed, 0, -1)):
            if payload_contact(bytes(entry)) == contact:
                removed += int(await self._do(self._r.lrem(failed, 0, entry)))
        return removed

    async def ping(self) -> None:
        await self._do(self._r.ping())

    async def check_writes(self) -> None:
        """A write probe (one small key with a TTL): StoreWriteRefused when Redis takes no writes
        (maxmemory, read-only replica, disk error), which PING alone does not show."""
        await self._do(self._call("SET", self._g("health"), "1", "PX", 60_000))

    async def close(self) -> None:
        if self._lean is not None:
            await self._lean.close()
        await self._r.aclose()
