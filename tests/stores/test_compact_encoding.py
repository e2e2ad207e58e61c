"""Compact storage: one transcript element per turn, stored replies (lean, and refused when a newer
release wrote them), short dedupe keys, and `trim_transcript` on both stores.
(test_compact_layout.py: delivery tags, compressed sessions, compact conversation records.)"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import msgspec
import pytest
import redis.asyncio as aioredis
from rediskit import REDIS_URL

from orchestrator.errors import NewerFormat
from orchestrator.model import Outbound, OutChoice, TranscriptEntry
from orchestrator.runtime.replies import StoredReply, decode_reply, encode_reply
from orchestrator.stores.base import Commit, SessionStore
from orchestrator.stores.codecs import delivery_key, pack_turn, unpack_turn
from orchestrator.stores.memory import MemoryStore
from orchestrator.stores.redis import RedisStore

SID = "+15551230000:+15550001111"


def entry(at: float, text: str) -> bytes:
    return msgspec.msgpack.encode(TranscriptEntry(at=at, dir="in", text=text))


def test_turn_element_round_trips_small_and_compressed() -> None:
    small = [entry(1.0, "hi"), b"\x00opaque"]
    assert unpack_turn(pack_turn(small)) == small
    big = [entry(2.0, "the same prompt text again " * 3) for _ in range(8)]
    packed = pack_turn(big)
    assert packed[:2] == b"\xc1\x05" and len(packed) < sum(map(len, big)) * 0.8
    assert unpack_turn(packed) == big


def test_a_stored_reply_reads_back_identically_and_a_newer_one_is_refused() -> None:
    reply = StoredReply(messages=[Outbound(kind="ask", text="What is the visit for?", state="ask_reason", choices=[
        OutChoice(id="cleaning", label="Cleaning", dtmf="1", match=["cleaning", "clean", "hygiene"]),
        OutChoice(id="checkup", label="Checkup", dtmf="2", match=["checkup", "exam"]),
    ], input="choice", language="en-US")], revision="2bae8d3da6b9", event_kind="text")
    raw = encode_reply(reply)
    assert raw == msgspec.msgpack.encode(reply)  # a msgpack map, as the previous release writes it
    assert decode_reply(raw) == reply
    # the store compresses it with its turn's transcript element; a marked value is a newer layout
    for newer in (b"\xc1\x03" + raw, encode_reply(msgspec.structs.replace(reply, fmt=2))):
        with pytest.raises(NewerFormat):
            decode_reply(newer)


def test_delivery_keys_are_short_and_distinct() -> None:
    sids = [f"SM{uuid.uuid4().hex}" for _ in range(1000)]
    keys = {delivery_key(s) for s in sids}
    assert len(keys) == 1000 and all(len(k) == 23 for k in keys)
    assert delivery_key("SM1") == "SM1" and delivery_key(sids[0]) == delivery_key(sids[0])


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[SessionStore]:
    if request.param == "memory":
        yield MemoryStore()
        return
    prefix = f"compact-{uuid.uuid4().hex[:10]}"
    s = await RedisStore.connect(REDIS_URL, prefix)
    try:
        yield s
    finally:
        client = aioredis.Redis.from_url(REDIS_URL)
        keys = [k async for k in client.scan_iter(match=f"{prefix}:*", count=1000)]
        if keys:
            await client.delete(*keys)
        await client.aclose()
        await s.close()


async def commit_turn(store: SessionStore, entries: list[bytes], dedupe_id: str | None = None) -> None:
    b = await store.begin(SID, dedupe_id, lock_ttl_seconds=5, wait_seconds=1)
    await store.commit(SID, b.token, Commit(session=b"s", version=b.version + 1, expect_version=b.version,
                                            ttl_seconds=60, transcript=entries, dedupe_id=dedupe_id,
                                            reply=b"r-" + (dedupe_id or "").encode()))


async def test_trim_transcript_drops_old_turns_only(store: SessionStore) -> None:
    for t in (1.0, 2.0, 3.0, 4.0):
        await commit_turn(store, [entry(t, f"a{t}"), entry(t, f"b{t}")])
    dropped = await store.trim_transcript(SID, 3.0)  # type: ignore[attr-defined]
    assert dropped == 4
    assert await store.get_transcript(SID) == [entry(3.0, "a3.0"), entry(3.0, "b3.0"),
                                               entry(4.0, "a4.0"), entry(4.0, "b4.0")]
    assert await store.trim_transcript(SID, 3.0) == 0  # type: ignore[attr-defined]
    assert await store.trim_transcript("nobody:+1", 3.0) == 0  # type: ignore[attr-defined]


async def test_long_provider_ids_still_dedupe(store: SessionStore) -> None:
    wamid = "wamid.HBgLMTY0NjcwNDM1OTUVAgASGBQzQUYxRjJCMjk3QUQ1MUM2QkQ3QQA="
    await commit_turn(store, [entry(1.0, "x")], dedupe_id=wamid)
    dup = await store.begin(SID, wamid, lock_ttl_seconds=5, wait_seconds=1)
    assert dup.duplicate_reply == b"r-" + wamid.encode()
    other = await store.begin(SID, wamid[:-2] + "B=", lock_ttl_seconds=5, wait_seconds=1)
    assert other.duplicate_reply is None


def test_turn_element_carries_the_reply_apart_from_the_entries() -> None:
    from orchestrator.stores.codecs import turn_reply

    entries = [entry(1.0, "Would you like to book a visit?"), entry(1.0, "menu")]
    reply = msgspec.msgpack.encode(StoredReply(messages=[Outbound(kind="ask", text="Would you like to book a visit?",
                                                                  state="menu", input="choice")]))
    element = pack_turn(entries, reply)
    assert unpack_turn(element) == entries and turn_reply(element) == reply
    assert turn_reply(pack_turn(entries)) == b""
    # the reply repeats the entries' texts: it adds little to the compressed element
    assert len(element) < len(pack_turn(entries)) + len(reply) // 2


async def test_duplicates_find_their_reply_through_the_transcript_after_head_trims(store: SessionStore) -> None:
    for t in (1.0, 2.0, 3.0, 4.0):
        await commit_turn(store, [entry(t, f"a{t}")], dedupe_id=f"SM{int(t)}")
    await commit_turn(store, [entry(5.0, "no delivery id")])  # e.g. a turn without a provider id
    assert await store.trim_transcript(SID, 3.0) == 2  # type: ignore[attr-defined]
    for n in (3, 4):
        dup = await store.begin(SID, f"SM{n}", lock_ttl_seconds=5, wait_seconds=1)
        assert dup.duplicate_reply == f"r-SM{n}".encode()
    if isinstance(store, RedisStore):  # no dedupe hash: each delivery's tag sits before its turn
        from orchestrator.stores.codecs import delivery_tag

        # a trimmed turn took its tag along (trims keep the retention, 30 days by default; the
        # dedupe window is 48 h): its delivery would be new again, as after the dedupe TTL
        assert (await store.begin(SID, "SM1", lock_ttl_seconds=5, wait_seconds=1)).duplicate_reply is None
        client = aioredis.Redis.from_url(REDIS_URL)
        try:
            assert not await client.exists(f"{store.prefix}:{{{SID}}}:d")
            elements = await client.lrange(f"{store.prefix}:{{{SID}}}:t", 0, -1)
        finally:
            await client.aclose()
        assert [e for e in elements if e[:2] == b"\xc1\x00"] == [delivery_tag("SM3"), delivery_tag("SM4")]
        assert elements.index(delivery_tag("SM3")) == 0 and len(elements) == 5


def test_a_conversation_record_is_stored_without_what_its_id_restores() -> None:
    from orchestrator.records.analytics import ConversationRecord, _merge, _stored, conversation_id

    sid = "+15551230000:+15557654321"
    record = ConversationRecord(id=conversation_id(sid, 1_700_000_000.5), session_id=sid, flow="f",
                                revision="r1", business="+15551230000", contact="+15557654321",
                                channels=["sms"], started_at=1_700_000_000.5, last_state="menu")
    raw = _stored(record)
    assert b"+1555" not in raw  # the id (the hash's key) says it
    assert _merge({"start": raw}, record.id) == record
    odd = ConversationRecord(id=conversation_id("a:b:c", 1.0), session_id="a:b:c", flow="f", revision="r",
                             business="a:b", contact="c")
    assert _merge({"start": _stored(odd)}, odd.id) == odd  # an ambiguous id keeps its fields
