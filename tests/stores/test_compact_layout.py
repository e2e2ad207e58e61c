"""The compact Redis layout of a live conversation (issue #7, < 2 KB): delivery tags in the
transcript instead of a dedupe hash, compressed session values, conversation records in
listpack-sized pieces; and that everything the previous release writes still reads."""

from __future__ import annotations

import time
import zlib
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rediskit import REDIS_URL, drop_prefix, unique_prefix

from orchestrator.errors import NewerFormat
from orchestrator.model import Session, TranscriptEntry, TurnResult
from orchestrator.records.analytics import (
    PIECE_BYTES,
    ConversationRecord,
    Recorder,
    _merge,
    _pieces,
    _stored,
    conversation_id,
)
from orchestrator.stores.base import Commit, SessionStore
from orchestrator.stores.codecs import (
    delivery_key,
    delivery_tag,
    pack_turn,
    parse_session_value,
    session_value,
    turn_reply,
    unpack_turn,
)
from orchestrator.stores.memory import MemoryStore
from orchestrator.stores.redis import DEDUPE_SCAN, RedisStore

SID = "+15551230000:+15550002222"
WAMID = "wamid.HBgLMTY0NjcwNDM1OTUVAgASGBQzQUYxRjJCMjk3QUQ1MUM2QkQ3QQA="


def entry(at: float, text: str) -> bytes:
    return msgspec.msgpack.encode(TranscriptEntry(at=at, dir="in", text=text))


@pytest.fixture
async def redis_store() -> AsyncIterator[RedisStore]:
    prefix = unique_prefix("layout")
    store = await RedisStore.connect(REDIS_URL, prefix)
    yield store
    await store.close()
    await drop_prefix(prefix)


async def turn(store: SessionStore, entries: list[bytes], dedupe_id: str | None, reply: bytes = b"") -> None:
    b = await store.begin(SID, dedupe_id, lock_ttl_seconds=5, wait_seconds=1)
    assert b.duplicate_reply is None
    await store.commit(SID, b.token, Commit(session=b"s%d" % b.version, version=b.version + 1,
                                            expect_version=b.version, ttl_seconds=60, transcript=entries,
                                            dedupe_id=dedupe_id, reply=reply or b"r-" + (dedupe_id or "").encode()))


async def duplicate(store: SessionStore, dedupe_id: str) -> bytes | None:
    return (await store.begin(SID, dedupe_id, lock_ttl_seconds=5, wait_seconds=1)).duplicate_reply


# turn elements and delivery tags -------------------------------------------------------------

def test_each_element_format_of_the_previous_release_reads_and_any_other_is_refused() -> None:
    _pack = msgspec.msgpack.encode
    entries, reply = [entry(1.0, "hello " * 20), entry(1.0, "menu")], b"\x81\xa8messages\x90" * 4
    plain = b"\xc1\x01" + _pack(entries)  # what deflate did not pay for: entries alone
    plain_reply = b"\xc1\x03" + _pack((entries, reply))  # ... and with the delivery's reply
    new = pack_turn(entries, reply)
    assert new[:2] == b"\xc1\x05"
    for element, kept in ((plain, b""), (plain_reply, reply), (new, reply)):
        assert unpack_turn(element) == entries and turn_reply(element) == kept
    zipped = zlib.compress(_pack(entries))
    for other in (b"\xc1\x02" + zipped, b"\xc1\x04" + zipped, b"\xc1\x07" + zipped, entry(1.0, "bare")):
        with pytest.raises(NewerFormat, match="left for a newer process"):
            unpack_turn(other)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=6), st.one_of(st.none(), st.binary(max_size=400)))
def test_any_turn_round_trips(entries: list[bytes], reply: bytes | None) -> None:
    element = pack_turn(entries, reply)
    assert unpack_turn(element) == entries and turn_reply(element) == (reply or b"")
    assert element[:2] != b"\xc1\x00"  # never mistaken for a delivery tag


def test_a_delivery_tag_is_no_entry_and_distinct_per_delivery() -> None:
    tags = {delivery_tag(f"SM{n:032x}") for n in range(5000)}
    assert len(tags) == 5000 and {len(t) for t in tags} == {11}
    assert unpack_turn(delivery_tag(WAMID)) == [] and turn_reply(delivery_tag(WAMID)) == b""


async def test_no_dedupe_hash_and_tags_read_as_no_entries(redis_store: RedisStore) -> None:
    await turn(redis_store, [entry(1.0, "hi")], "SM1")
    await turn(redis_store, [entry(2.0, "1")], WAMID)
    await turn(redis_store, [entry(3.0, "no provider id")], None)
    client = redis_store.client
    assert not await client.exists(f"{redis_store.prefix}:{{{SID}}}:d")
    elements = await client.lrange(f"{redis_store.prefix}:{{{SID}}}:t", 0, -1)
    assert [e[:2] == b"\xc1\x00" for e in elements] == [True, False, True, False, False]
    assert await redis_store.get_transcript(SID) == [entry(1.0, "hi"), entry(2.0, "1"), entry(3.0, "no provider id")]
    assert (await redis_store.export_contact("+15550002222")).transcripts == {}  # no contact given: no index
    assert await duplicate(redis_store, "SM1") == b"r-SM1"
    assert await duplicate(redis_store, WAMID) == b"r-" + WAMID.encode()


@pytest.mark.parametrize("kind", ["memory", "redis"])
async def test_a_turn_without_transcript_still_dedupes(kind: str, redis_store: RedisStore) -> None:
    store: SessionStore = MemoryStore() if kind == "memory" else redis_store
    await turn(store, [], "SM-no-entries", reply=b"kept")
    assert await duplicate(store, "SM-no-entries") == b"kept"
    if isinstance(store, RedisStore):  # no element to carry it: the hash keeps the reply itself
        stored = await store.client.hgetall(f"{store.prefix}:{{{SID}}}:d")
        assert stored == {b"SM-no-entries": b"kept"}


async def test_whole_replies_in_the_hash_answer_beside_tagged_turns(redis_store: RedisStore) -> None:
    """The previous release keeps a reply in the dedupe hash only for a turn without an element."""
    client, prefix = redis_store.client, redis_store.prefix
    long_id = "SM" + "0" * 32
    await client.hset(f"{prefix}:{{{SID}}}:d", mapping={delivery_key(long_id): b"whole reply", "SM-full": b"short"})
    await client.set(f"{prefix}:{{{SID}}}:s", b"2,," + b"old session")
    await turn(redis_store, [entry(3.0, "c")], "SM3")
    await turn(redis_store, [entry(4.0, "d")], "SM4")
    assert await duplicate(redis_store, long_id) == b"whole reply"
    assert await duplicate(redis_store, "SM-full") == b"short"
    assert await duplicate(redis_store, "SM4") == b"r-SM4"
    assert await redis_store.trim_transcript(SID, 4.0) == 1
    assert await duplicate(redis_store, "SM3") is None  # its turn (and tag) trimmed: a new delivery now
    assert await redis_store.get_transcript(SID) == [entry(4.0, "d")]


async def test_begin_looks_for_a_tag_among_the_last_dedupe_scan_elements_only(
    redis_store: RedisStore, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The lookup's cost stays bounded however long the conversation: ~500 turns back by default."""
    from orchestrator.stores import redis as store_redis

    for n in range(5):
        await turn(redis_store, [entry(float(n), f"x{n}")], f"SM{n}")
    monkeypatch.setattr(store_redis, "DEDUPE_SCAN", 4)  # the last two turns and their tags
    assert await duplicate(redis_store, "SM4") == b"r-SM4"
    assert await duplicate(redis_store, "SM3") == b"r-SM3"
    assert await duplicate(redis_store, "SM2") is None  # too far back: new again
    assert DEDUPE_SCAN >= 1000  # the default: ~500 turns


async def test_trims_take_a_turn_and_its_tag_together(redis_store: RedisStore) -> None:
    for t in (1.0, 2.0, 3.0):
        await turn(redis_store, [entry(t, f"x{t}")], f"SM{int(t)}")
    await turn(redis_store, [entry(4.0, "no id")], None)
    assert await redis_store.trim_transcript(SID, 2.5) == 2
    elements = await redis_store.client.lrange(f"{redis_store.prefix}:{{{SID}}}:t", 0, -1)
    assert elements[0] == delivery_tag("SM3") and len(elements) == 3
    assert await duplicate(redis_store, "SM3") == b"r-SM3"


# the session value ----------------------------------------------------------------------------

def realistic_session() -> bytes:
    now = time.time()
    return msgspec.msgpack.encode(Session(
        id=SID, flow="dental_booking", revision="3f5ec869b0c3", state="ask_reason", business="+15551230000",
        contact="+15550002222", channel="sms", vars={"patient_name": "Alex Morgan"}, started_at=now,
        updated_at=now, last_inbound_at=now, turns=3, version=3, path=["greet", "menu", "ask_name", "ask_reason"]))


def test_a_session_value_is_compressed_and_plain_ones_still_read() -> None:
    data = realistic_session()
    value = session_value(3, data, f"{SID}|3", SID)
    assert value.startswith(b"3,3,\xc1\x01") and len(value) < len(data) * 0.6
    assert parse_session_value(value) == (3, "3", data)
    assert parse_session_value(b"3,," + data) == (3, "", data)  # written before compression
    assert parse_session_value(session_value(1, b"tiny", None, SID)) == (1, "", b"tiny")
    big = msgspec.msgpack.encode(msgspec.structs.replace(
        msgspec.msgpack.decode(data, type=Session), path=["ask_name", "ask_reason"] * 200))
    assert session_value(9, big, None, SID) == b"9,," + big  # its cost would grow with it: kept plain


async def test_a_plain_session_value_of_older_code_loads_and_is_replaced(redis_store: RedisStore) -> None:
    key = f"{redis_store.prefix}:{{{SID}}}:s"
    data = realistic_session()
    await redis_store.client.set(key, b"3,," + data)
    assert await redis_store.load(SID) == data
    b = await redis_store.begin(SID, None, lock_ttl_seconds=5, wait_seconds=1)
    assert (b.session, b.version) == (data, 3)
    await redis_store.commit(SID, b.token, Commit(session=data, version=4, expect_version=3, ttl_seconds=60))
    raw: Any = await redis_store.client.get(key)
    assert bytes(raw).startswith(b"4,,\xc1\x01")
    assert await redis_store.load(SID) == data


# conversation records -------------------------------------------------------------------------

def record(**changes: Any) -> ConversationRecord:
    started = 1_795_600_000.123456
    base = ConversationRecord(
        id=conversation_id(SID, started), session_id=SID, flow="dental_booking", revision="3f5ec869b0c3",
        business="+15551230000", contact="+15550002222", channels=["sms"], started_at=started, turns=1,
        last_state="menu", path=["greet", "menu"])
    return msgspec.structs.replace(base, **changes)


def ended(**changes: Any) -> ConversationRecord:
    r = record(turns=9, last_state="done", ended_at=1_795_600_321.987654, outcome="booked",
               path=["greet", "menu", "ask_name", "ask_reason", "ask_time", "offer", "confirm", "done"],
               summary={"booking": {"label": "Tue 10:00"}, "name": "Alex Morgan"}, status="ended")
    r.duration_seconds = round(r.ended_at - r.started_at, 3)  # type: ignore[operator]
    return msgspec.structs.replace(r, **changes)


def test_records_round_trip_and_a_start_fits_one_listpack_value() -> None:
    for r in (record(), ended(), record(last_state="elsewhere"), record(path=[], last_state=""),
              record(path=["a"], last_state=""), ended(channels=["voice", "sms"])):
        fields, _ = _pieces("end" if r.status == "ended" else "start", _stored(r))
        assert all(len(v) <= PIECE_BYTES for v in fields.values())
        assert _merge(fields, r.id) == r
    assert len(_stored(record())) <= PIECE_BYTES


def test_records_whose_status_does_not_follow_keep_the_full_map() -> None:
    odd = record(status="ended")  # ended without ended_at: not derivable
    assert _stored(odd)[0] == 0xDE or 0x80 <= _stored(odd)[0] <= 0x8F  # a msgpack map
    assert _merge({"start": _stored(odd)}, odd.id) == odd
    late = ended(duration_seconds=1.0)
    assert _merge({"end": _stored(late)}, late.id) == late


def test_records_written_by_older_code_still_read_and_merge() -> None:
    start = record(channels=["voice"])
    old_start = msgspec.msgpack.encode(msgspec.structs.replace(start, session_id="", business="", contact=""))
    old_full = msgspec.msgpack.encode(start)
    end = ended(channels=["sms"])
    fields, _ = _pieces("end", _stored(end))
    for old in (old_start, old_full):
        assert _merge({"start": old}, start.id) == start
        merged = _merge({"start": old, **fields}, start.id)
        assert merged is not None and merged.channels == ["voice", "sms"] and merged.outcome == "booked"


def test_a_shorter_snapshot_never_joins_pieces_of_a_longer_one() -> None:
    running = ended(status="active", ended_at=None, outcome=None, duration_seconds=None)
    long_fields, _ = _pieces("seen", _stored(running))
    assert len(long_fields) > 1
    short_fields, after = _pieces("seen", _stored(record()))
    stored = {**long_fields, **short_fields}
    stored.pop(after)
    assert _merge(stored, record().id) == record()


def result_for(r: ConversationRecord) -> TurnResult:
    session = Session(id=SID, flow=r.flow, revision=r.revision, state=r.last_state, business=r.business,
                      contact=r.contact, channel=r.channels[-1], started_at=r.started_at,
                      updated_at=r.ended_at or r.started_at, turns=r.turns, path=r.path,
                      status="ended" if r.ended_at else "active", outcome=r.outcome)
    return TurnResult(session=session, ended=r.ended_at is not None, summary=r.summary)


async def test_a_record_hash_stays_a_listpack_from_start_to_end(redis_store: RedisStore) -> None:
    recorder = Recorder(redis_store, 86400)
    start, end = record(), ended()
    await recorder.after_commit("sms", result_for(start))
    key = f"{redis_store.prefix}:{{{SID}}}:r:{start.id.rpartition('~')[2]}"
    assert await redis_store.client.object("encoding", key) == b"listpack"
    assert await recorder.get(start.id) == start
    await recorder.after_commit("sms", result_for(end))
    assert await redis_store.client.object("encoding", key) == b"listpack"
    assert await recorder.get(end.id) == end
    assert [r.id for r in await recorder.list_records(outcome="booked")] == [end.id]
