"""The outbox sender's store calls (a claim that carries the contact's opt-out, one `finish_outbox`
recording the status and removing the item) and the side store's record writes (one script), on
each `store` (conftest: memory, Redis through the lean transport, Redis through redis-py alone)."""

from __future__ import annotations

import time

import msgspec
import pytest
from rediskit import REDIS_URL, drop_prefix, unique_prefix

from orchestrator.errors import StaleWrite
from orchestrator.stores.base import Commit, OutboxPut, SessionStore, SidePut, SideStore
from orchestrator.stores.redis import RedisStore
from orchestrator.stores.side import MemorySide, RedisSide

SID = "+15551230000:+15557654321"
CONTACT = "+15557654321"
STAFF = "+15550009999"


async def put_outbox(store: SessionStore, items: list[OutboxPut], now: float) -> None:
    b = await store.begin(SID, None, lock_ttl_seconds=5, wait_seconds=5, contact=CONTACT)
    await store.commit(SID, b.token, Commit(session=b"s", version=b.version + 1, expect_version=b.version,
                                            ttl_seconds=60, contact=CONTACT, outbox=items, outbox_due=now))


def payload(contact: str) -> bytes:
    return msgspec.msgpack.encode({"id": "x", "adapter": "sms", "contact": contact, "messages": [{"text": "hi"}],
                                   "within_window": True, "created_at": 1.5})


async def test_claim_carries_the_contacts_opt_out(store: SessionStore) -> None:
    now = time.time()
    await store.set_opt_out(STAFF, True)
    await put_outbox(store, [OutboxPut(f"{SID}|a", payload(CONTACT)), OutboxPut(f"{SID}|b", payload(STAFF)),
                                 OutboxPut(f"{SID}|c", b"opaque"), OutboxPut(f"{SID}|d", msgspec.msgpack.encode([1]))],
                     now)
    # with buckets (a cluster) a staff number's opt-out lives in another bucket than the conversation's
    # items: the claim cannot tell (None) and the sender asks `is_opted_out`
    layout = getattr(store, "layout", None)
    foreign = layout is not None and layout.n and layout.bucket(STAFF) != layout.bucket(SID)
    claims = {c.id: c for c in await store.claim_outbox(now, 10, 30)}
    assert {i: c.opted_out for i, c in claims.items()} == {
        f"{SID}|a": False, f"{SID}|b": None if foreign else True, f"{SID}|c": None, f"{SID}|d": None}
    assert claims[f"{SID}|b"].payload == payload(STAFF)  # unchanged
    await store.set_opt_out(STAFF, False)
    await store.set_opt_out(CONTACT, True)
    again = {c.id: c.opted_out for c in await store.claim_outbox(now + 31, 10, 30)}
    assert again[f"{SID}|a"] is True and again[f"{SID}|b"] is (None if foreign else False)


async def test_finish_records_statuses_and_removes_the_item(store: SessionStore) -> None:
    now = time.time()
    await put_outbox(store, [OutboxPut(f"{SID}|a", b"p1"), OutboxPut(f"{SID}|b", b"p2"),
                                 OutboxPut(f"{SID}|c", b"p3")], now)
    assert len(await store.claim_outbox(now, 10, 30)) == 3
    await store.record_status("SMold", "delivered")  # a callback that came first stays
    await store.finish_outbox(f"{SID}|a", "sent", message_ids=["SM1", "SMold"])
    await store.finish_outbox(f"{SID}|b", "failed", "131026")
    await store.finish_outbox(f"{SID}|c", "canceled", "opted_out")
    assert await store.get_status(f"{SID}|a") == ("sent", None)
    assert await store.get_status("SM1") == ("sent", None)
    assert await store.get_status("SMold") == ("delivered", None)
    assert await store.get_status(f"{SID}|b") == ("failed", "131026")
    assert await store.get_status(f"{SID}|c") == ("canceled", "opted_out")
    assert await store.claim_outbox(now + 1000, 10, 30) == []
    # statuses never move backwards, nor out of a terminal one, through finish either
    await store.finish_outbox(f"{SID}|b", "sent")
    assert await store.get_status(f"{SID}|b") == ("failed", "131026")


async def test_retry_of_a_finished_item_does_not_bring_it_back(store: SessionStore) -> None:
    now = time.time()
    await put_outbox(store, [OutboxPut(f"{SID}|a", b"p1")], now)
    await store.claim_outbox(now, 10, 30)
    await store.finish_outbox(f"{SID}|a", "sent")
    await store.retry_outbox(f"{SID}|a", b"p1-again", now)
    assert await store.claim_outbox(now + 1000, 10, 30) == []


async def test_a_claim_whose_sender_died_is_marked_reclaimed_until_rescheduled(store: SessionStore) -> None:
    now = time.time()
    await put_outbox(store, [OutboxPut(f"{SID}|a", payload(CONTACT))], now)
    assert [c.reclaimed for c in await store.claim_outbox(now, 10, 30)] == [False]
    # no finish, no retry (killed mid-send): the next claim after the lease says so
    assert [c.reclaimed for c in await store.claim_outbox(now + 31, 10, 30)] == [True]
    await store.retry_outbox(f"{SID}|a", payload(CONTACT), now + 40)  # a claim that ended normally
    assert [c.reclaimed for c in await store.claim_outbox(now + 41, 10, 30)] == [False]


async def test_a_given_up_item_is_listed_once_newest_first(store: SessionStore) -> None:
    now = time.time()
    await put_outbox(store, [OutboxPut(f"{SID}|a", b"p1"), OutboxPut(f"{SID}|b", b"p2")], now)
    assert await store.failed_outbox() == []
    await store.finish_outbox(f"{SID}|a", "failed", "gave_up", failure=b"fa")
    await store.finish_outbox(f"{SID}|a", "failed", "gave_up", failure=b"fa")  # a second finish: gone already
    await store.finish_outbox(f"{SID}|b", "failed", "131026", failure=b"fb")
    assert await store.failed_outbox() == [b"fb", b"fa"]
    assert await store.failed_outbox(limit=1) == [b"fb"]
    assert await store.get_status(f"{SID}|a") == ("failed", "gave_up")


async def write_records(side: SideStore) -> None:
    await side.put_indexed("{s1}:r:1", {"start": b"a" * 64, "start1": b"b", "seen": b"x"}, ["records", "records:f"],
                           "s1~1", 1700000000.125, ttl_seconds=3600, drop=["start2"])
    await side.put_indexed("{s1}:r:1", {"end": b"e", "end1": b"f"}, ["records", "records:f"], "s1~1",
                           1700000000.125, ttl_seconds=3600, drop=["end2", "seen"])
    await side.put_indexed("{s2}:r:2", {"start": b"c", "x": b"y"}, ["records"], "s2~2", 1700000001.5,
                           ttl_seconds=3600, drop=["x"])  # set and dropped: dropped
    await side.hset("{s2}:r:2", {"seen": b"z"}, ttl_seconds=3600, drop=["nothing"])
    await side.hset("{s3}:r:3", {}, ttl_seconds=3600, drop=["a"])


async def side_state(side: SideStore) -> tuple[object, ...]:
    return (await side.hgetall("{s1}:r:1"), await side.hgetall("{s2}:r:2"), await side.hgetall("{s3}:r:3"),
            await side.zrange("records"), await side.zrange("records:f"))


@pytest.mark.redis
async def test_side_record_writes_match_the_memory_side_on_both_transports() -> None:
    memory = MemorySide()
    await write_records(memory)
    expected = await side_state(memory)
    assert expected[1] == {"start": b"c", "seen": b"z"}
    for lean in (True, False):
        prefix = unique_prefix("side")
        store = await RedisStore.connect(REDIS_URL, prefix)
        try:
            side = store.side if lean else RedisSide(store.client, prefix)
            assert isinstance(side, RedisSide) and (side._lean is not None) == lean
            await write_records(side)
            assert await side_state(side) == expected
            for key in ("{s1}:r:1", "{s2}:r:2", "records", "records:f"):
                assert 0 < await store.client.ttl(f"{prefix}:{key}") <= 3600
        finally:
            await store.close()
            await drop_prefix(prefix)


RECORD_PUTS = [  # write_records' put_indexed calls, as side writes riding in commits
    SidePut(key="{s1}:r:1", fields={"start": b"a" * 64, "start1": b"b", "seen": b"x"}, ttl_seconds=3600,
            drop=["start2"], indexes=["records", "records:f"], member="s1~1", score=1700000000.125),
    SidePut(key="{s1}:r:1", fields={"end": b"e", "end1": b"f"}, ttl_seconds=3600, drop=["end2", "seen"],
            indexes=["records", "records:f"], member="s1~1", score=1700000000.125),
    SidePut(key="{s2}:r:2", fields={"start": b"c", "x": b"y"}, ttl_seconds=3600, drop=["x"], indexes=["records"],
            member="s2~2", score=1700000001.5),
]


async def test_side_writes_in_a_commit_match_put_indexed(store: SessionStore) -> None:
    memory = MemorySide()
    await write_records(memory)
    expected = await side_state(memory)
    now = time.time()
    b = await store.begin(SID, None, lock_ttl_seconds=5, wait_seconds=5, contact=CONTACT)
    # a stale commit writes nothing beside the session either
    with pytest.raises(StaleWrite):
        await store.commit(SID, b.token, Commit(session=b"s", version=b.version + 2, expect_version=b.version + 1,
                                                ttl_seconds=60, side=RECORD_PUTS[:1]))
    side = store.side
    assert await side.hgetall("{s1}:r:1") == {} and await side.zrange("records") == []
    # two commits (the first and the last turn), the second with outbox items after its side writes
    await store.commit(SID, b.token, Commit(session=b"s", version=b.version + 1, expect_version=b.version,
                                            ttl_seconds=60, contact=CONTACT, side=RECORD_PUTS[:1]))
    b = await store.begin(SID, None, lock_ttl_seconds=5, wait_seconds=5, contact=CONTACT)
    await store.commit(SID, b.token, Commit(
        session=b"s2", version=b.version + 1, expect_version=b.version, ttl_seconds=60, contact=CONTACT,
        outbox=[OutboxPut(f"{SID}|a", b"p1"), OutboxPut(f"{SID}|b", b"p2")], outbox_due=now, side=RECORD_PUTS[1:]))
    await side.hset("{s2}:r:2", {"seen": b"z"}, ttl_seconds=3600, drop=["nothing"])
    await side.hset("{s3}:r:3", {}, ttl_seconds=3600, drop=["a"])
    assert await side_state(side) == expected
    assert {(c.id, c.payload) for c in await store.claim_outbox(now, 10, 30)} == {
        (f"{SID}|a", b"p1"), (f"{SID}|b", b"p2")}
    assert await store.load(SID) == b"s2"
    if isinstance(store, RedisStore):
        names = [store.layout.side("{s1}:r:1"), store.layout.side("{s2}:r:2")]
        for index in ("records", "records:f"):  # one key, or one per bucket (those written)
            names += [k for k in store.layout.every(index) if await store.client.exists(k)] or ["missing"]
        for name in names:
            assert 0 < await store.client.ttl(name) <= 3600


async def test_erasing_a_contact_removes_its_given_up_sends_and_no_other(store: SessionStore) -> None:
    # a given-up send names the contact and holds the texts: erasure takes it too
    now = time.time()
    other = "+15557650000"
    await put_outbox(store, [OutboxPut(f"{SID}|a", payload(CONTACT)), OutboxPut(f"{SID}|b", payload(other))], now)
    await store.finish_outbox(f"{SID}|a", "failed", "gave_up", failure=payload(CONTACT))
    await store.finish_outbox(f"{SID}|b", "failed", "gave_up", failure=payload(other))
    await store.erase_contact(CONTACT)
    assert await store.failed_outbox() == [payload(other)]
