"""How the Redis store lays out what it keeps: the values' byte formats, apart from where they live.

- a turn's transcript element (`pack_turn` / `unpack_turn` / `turn_reply`): its entries and the
  reply to its delivery, raw deflate with a preset dictionary when that pays;
- a delivery's tag (`delivery_tag`), pushed just before its turn's element, and its dedupe hash
  field (`delivery_key`);
- the session key's value (`session_value` / `parse_session_value`): "<version>,<timer turns>,"
  and the session msgpack, compressed when that pays.

Each value starts with a mark (b"\xc1" + one byte: a byte msgpack never starts with); a mark this
code does not know is a newer release's value (NewerFormat), never misread. The dictionaries are
part of the formats: never change one (a better one takes a new mark). docs/ARCHITECTURE.md,
"Stored formats", has the rules.
"""

from __future__ import annotations

import base64
import hashlib
import zlib
from collections.abc import Sequence
from typing import Any

import msgspec

from orchestrator.errors import NewerFormat

# A turn's transcript entries travel and live as ONE list element (one argument to pack, one
# listpack entry), starting with b"\xc1" (a byte msgpack never starts with) and a mark:
#   b"\x05" raw deflate (window 4 KB, preset dictionary _TURN_DICT_2) of msgpack [entries as bin,
#           the reply to the turn's delivery (dedupe) or nil]: what is written now;
#   b"\x01" / b"\x03" the same uncompressed, entries alone / [entries, reply] (when deflate does not pay).
# The reply costs only what it adds to the compressed turn: its texts are the entries' texts.
# A delivery's tag (`delivery_tag`: b"\xc1\x00" + a 9-byte digest) is pushed just before its turn's
# element: `begin` finds a duplicate with LPOS (C, no Lua string per element) and reads the next one.
# Any other first bytes are a newer release's element: NewerFormat.
_TAG_MARK = b"\xc1\x00"
_DEFLATED_TURN = b"\xc1\x05"
_DEFLATE_FROM = 48  # bytes; below this deflate's own framing eats the gain
# The dictionary of b"\x05" elements: a turn as msgspec encodes it (TranscriptEntry arrays, a
# runtime.StoredReply map; rarer shapes first, the most common turn last, nearest to the data) and
# phrases common in prompts. Never change it: elements written with it must stay readable (a
# better one takes a new mark). Measured on walks of the shipped flow (SMS, booking, voice,
# WhatsApp): turns 21-26 % smaller than with a dictionary of field names alone, ~10 % less CPU
# (the compressor is primed once and copied per turn).
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
    mark = element[:2]
    if mark == _DEFLATED_TURN:
        return _turn_maybe_reply.decode(_inflate(element[2:], _TURN_DICT_2, _TURN_WBITS))
    if mark == b"\xc1\x01":
        return _bytes_list.decode(element[2:]), None
    if mark == b"\xc1\x03":
        return _turn_with_reply.decode(element[2:])
    if mark == _TAG_MARK:  # a delivery tag, not a turn
        return [], None
    raise NewerFormat(f"a stored turn is marked {element[:2]!r}, which this process does not read; "
                      "left for a newer process")


def unpack_turn(element: bytes) -> list[bytes]:
    """The entries of one transcript element (a delivery tag has none)."""
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
