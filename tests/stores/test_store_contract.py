"""The SessionStore contract, run against every implementation (memory and Redis)."""

from __future__ import annotations

import asyncio
import itertools
import time

import msgspec
import pytest

from orchestrator.errors import LockTimeout, StaleWrite
from orchestrator.stores.base import (
    Commit,
    OutboxPut,
    SessionStore,
    TimerSet,
    parse_reminder_member,
    parse_timer_member,
    reminder_member,
    timer_member,
)

SID = "+15551230000:+15557654321"
CONTACT = "+15557654321"


def commit_for(b_version: int, payload: bytes, **kw: object) -> Commit:
    return Commit(
        session=payload, version=b_version + 1, expect_version=b_version, ttl_seconds=60,
        contact=CONTACT, **kw,  # type: ignore[arg-type]
    )


async def turn(store: SessionStore, sid: str, dedupe: str | None, payload: bytes, **kw: object) -> None:
    b = await store.begin(sid, dedupe, lock_ttl_seconds=5, wait_seconds=5, contact=CONTACT)
    assert b.duplicate_reply is None
    await store.commit(sid, b.token, commit_for(b.version, payload, dedupe_id=dedupe, **kw))


async def test_new_session_then_saved_and_versioned(store: SessionStore) -> None:
    b = await store.begin(SID, None, lock_ttl_seconds=5, wait_seconds=1, contact=CONTACT)
    assert (b.session, b.version, b.opted_out) == (None, 0, False)
    assert b.token
    await store.commit(SID, b.token, commit_for(0, b"one"))
    b2 = await store.begin(SID, None, lock_ttl_seconds=5, wait_seconds=1)
    assert (b2.session, b2.version) == (b"one", 1)
    await store.commit(SID, b2.token, commit_for(1, b"two"))
    assert await store.load(SID) == b"two"


async def test_load_many_reads_sessions_in_order_with_none_for_missing(store: SessionStore) -> None:
    other = "+15551230000:+15557650000"
    await turn(store, SID, None, b"first" * 40)  # long enough to be stored compressed on Redis
    await turn(store, other, None, b"second")
    assert await store.load_many([other, "+1:+2", SID]) == [b"second", None, b"first" * 40]
    assert await store.load_many([]) == []


async def test_duplicate_delivery_returns_stored_reply_without_locking(store: SessionStore) -> None:
    b = await store.begin(SID, "SM1", lock_ttl_seconds=5, wait_seconds=1)
    await store.commit(SID, b.token, commit_for(0, b"s1", dedupe_id="SM1", reply=b"reply-1"))
    for _ in range(3):
        dup = await store.begin(SID, "SM1", lock_ttl_seconds=5, wait_seconds=1)
        assert dup.duplicate_reply == b"reply-1"
        assert dup.token == ""
    # no lock was taken by the duplicates: a new delivery proceeds at once
    nxt = await store.begin(SID, "SM2", lock_ttl_seconds=5, wait_seconds=0.05)
    assert nxt.duplicate_reply is None and nxt.version == 1


async def test_lock_excludes_and_times_out(store: SessionStore) -> None:
    b = await store.begin(SID, None, lock_ttl_seconds=5, wait_seconds=1)
    started = time.monotonic()
    with pytest.raises(LockTimeout, match="held the lock"):
        await store.begin(SID, None, lock_ttl_seconds=5, wait_seconds=0.1)
    assert 0.09 <= time.monotonic() - started < 1.0
    await store.release(SID, b.token)
    b2 = await store.begin(SID, None, lock_ttl_seconds=5, wait_seconds=0.1)
    assert b2.token != b.token


async def test_release_with_foreign_token_keeps_the_lock(store: SessionStore) -> None:
    await store.begin(SID, None, lock_ttl_seconds=5, wait_seconds=1)
    await store.release(SID, "not-mine")
    with pytest.raises(LockTimeout):
        await store.begin(SID, None, lock_ttl_seconds=5, wait_seconds=0.05)


async def test_lock_recovered_after_holder_died(store: SessionStore) -> None:
    await store.begin(SID, None, lock_ttl_seconds=0.15, wait_seconds=1)  # never commits nor releases
    b = await store.begin(SID, None, lock_ttl_seconds=5, wait_seconds=2)
    await store.commit(SID, b.token, commit_for(0, b"recovered"))
    assert await store.load(SID) == b"recovered"


async def test_stale_holder_late_write_refused(store: SessionStore) -> None:
    slow = await store.begin(SID, None, lock_ttl_seconds=0.1, wait_seconds=1)
    await asyncio.sleep(0.15)  # the slow holder stalls past its lock
    fast = await store.begin(SID, None, lock_ttl_seconds=5, wait_seconds=1)
    await store.commit(SID, fast.token, commit_for(0, b"fast"))
    with pytest.raises(StaleWrite):
        await store.commit(SID, slow.token, commit_for(0, b"slow"))
    assert await store.load(SID) == b"fast"


async def test_expired_lock_refuses_write_even_when_nobody_took_over(store: SessionStore) -> None:
    b = await store.begin(SID, None, lock_ttl_seconds=0.05, wait_seconds=1)
    await asyncio.sleep(0.1)
    with pytest.raises(StaleWrite, match="lock expired"):
        await store.commit(SID, b.token, commit_for(0, b"late"))
    assert await store.load(SID) is None


async def test_version_mismatch_refused(store: SessionStore) -> None:
    await turn(store, SID, None, b"v1")
    b = await store.begin(SID, None, lock_ttl_seconds=5, wait_seconds=1)
    with pytest.raises(StaleWrite, match="version"):
        await store.commit(SID, b.token, commit_for(0, b"wrong"))
    assert await store.load(SID) == b"v1"


async def test_concurrent_turns_in_one_process_apply_each_once(store: SessionStore) -> None:
    async def one(i: int) -> None:
        b = await store.begin(SID, f"m{i}", lock_ttl_seconds=5, wait_seconds=10)
        count = int(b.session or b"0") + 1
        await asyncio.sleep(0)
        await store.commit(
            SID, b.token,
            commit_for(b.version, str(count).encode(), dedupe_id=f"m{i}", reply=b"r", transcript=[str(i).encode()]),
        )

    await asyncio.gather(*(one(i) for i in range(30)))
    assert await store.load(SID) == b"30"
    entries = await store.get_transcript(SID)
    assert sorted(int(e) for e in entries) == list(range(30))


async def test_transcript_appends_in_order(store: SessionStore) -> None:
    await turn(store, SID, None, b"a", transcript=[b"1", b"2"])
    await turn(store, SID, None, b"b", transcript=[b"3"])
    assert await store.get_transcript(SID) == [b"1", b"2", b"3"]


async def test_timers_fire_once_and_rearm_replaces(store: SessionStore) -> None:
    now = time.time()
    m1 = timer_member(SID, 1)
    await turn(store, SID, None, b"a", timer=TimerSet(now + 10, m1))
    assert await store.claim_due_timers(now) == []
    m2 = timer_member(SID, 2)
    await turn(store, SID, None, b"b", timer=TimerSet(now + 20, m2))  # re-arm: m1 is gone
    assert await store.claim_due_timers(now + 15) == []
    assert await store.claim_due_timers(now + 25) == [m2]
    assert await store.claim_due_timers(now + 25) == []
    assert parse_timer_member(m2) == (SID, 2)


async def test_reminders_ride_with_the_commit_outlive_later_turns_and_can_be_dropped(store: SessionStore) -> None:
    now = time.time()
    r1, r2 = reminder_member(SID, b"visit-1"), reminder_member(SID, b"visit-2")
    await turn(store, SID, None, b"a", reminders=[TimerSet(now + 10, r1), TimerSet(now + 20, r2)])
    await turn(store, SID, None, b"b")  # a later turn clears the no-reply timer, not the reminders
    assert parse_reminder_member(r1) == (SID, b"visit-1")
    assert await store.claim_due_timers(now + 15) == [r1]
    await store.put_timer(r1, now + 30)  # a lease while it fires
    await store.drop_timer(r1)  # done with: it does not come round again
    await store.drop_timer(r1)  # dropping a gone member is nothing
    assert await store.claim_due_timers(now + 40) == [r2]


async def test_commit_without_timer_clears_it(store: SessionStore) -> None:
    now = time.time()
    await turn(store, SID, None, b"a", timer=TimerSet(now + 1, timer_member(SID, 1)))
    await turn(store, SID, None, b"b")
    assert await store.claim_due_timers(now + 100) == []


async def test_outbox_lease_ack_and_retry(store: SessionStore) -> None:
    now = time.time()
    items = [OutboxPut(f"{SID}|a1", b"p1"), OutboxPut(f"{SID}|a2", b"p2")]
    await turn(store, SID, None, b"s", outbox=items, outbox_due=now)
    claimed = await store.claim_outbox(now, 10, lease_seconds=30)
    assert sorted((c.id, c.payload) for c in claimed) == [(f"{SID}|a1", b"p1"), (f"{SID}|a2", b"p2")]
    assert await store.claim_outbox(now + 1, 10, lease_seconds=30) == []  # leased
    await store.ack_outbox(f"{SID}|a1")
    await store.retry_outbox(f"{SID}|a2", b"p2-attempt2", now + 5)
    assert await store.claim_outbox(now + 4, 10, lease_seconds=30) == []
    again = await store.claim_outbox(now + 6, 10, lease_seconds=30)
    assert [(c.id, c.payload) for c in again] == [(f"{SID}|a2", b"p2-attempt2")]
    # a sender that died: the lease ends and the item is claimed again
    assert [c.id for c in await store.claim_outbox(now + 37, 10, lease_seconds=30)] == [f"{SID}|a2"]
    await store.ack_outbox(f"{SID}|a2")
    assert await store.claim_outbox(now + 1000, 10, lease_seconds=30) == []


async def test_outbox_not_written_when_commit_is_refused(store: SessionStore) -> None:
    b = await store.begin(SID, None, lock_ttl_seconds=5, wait_seconds=1)
    with pytest.raises(StaleWrite):
        await store.commit(SID, b.token, commit_for(7, b"x", outbox=[OutboxPut(f"{SID}|z", b"p")]))
    assert await store.claim_outbox(time.time() + 10, 10, lease_seconds=30) == []


STATUSES = ["queued", "sent", "delivered", "read", "failed"]


@pytest.mark.parametrize("order", list(itertools.permutations(STATUSES)))
async def test_status_never_moves_backwards(store: SessionStore, order: tuple[str, ...]) -> None:
    kept = []
    for status in order:
        kept.append(await store.record_status("SM42", status, "30003" if status == "failed" else None))
    assert await store.get_status("SM42") == ("failed", "30003")
    before_failed = order[: order.index("failed")]
    ranks = [STATUSES.index(s) for s in before_failed]
    # until 'failed' arrives, the kept status is the highest seen so far
    for i in range(len(before_failed)):
        assert kept[i] == STATUSES[max(ranks[: i + 1])]


async def test_status_unknown_message(store: SessionStore) -> None:
    assert await store.get_status("nope") is None
    assert await store.record_status("SM1", "delivered") == "delivered"
    assert await store.record_status("SM1", "sent") == "delivered"
    assert await store.get_status("SM1") == ("delivered", None)


async def test_opt_out_seen_by_begin(store: SessionStore) -> None:
    await store.set_opt_out(CONTACT, True)
    b = await store.begin(SID, None, lock_ttl_seconds=5, wait_seconds=1, contact=CONTACT)
    assert b.opted_out and await store.is_opted_out(CONTACT)
    await store.release(SID, b.token)
    await store.set_opt_out(CONTACT, False)
    b = await store.begin(SID, None, lock_ttl_seconds=5, wait_seconds=1, contact=CONTACT)
    assert not b.opted_out


async def test_revisions(store: SessionStore) -> None:
    assert await store.latest_revision("dental") is None
    await store.put_revision("dental", "aaa111", "flow: dental\n")
    await asyncio.sleep(0.01)
    await store.put_revision("dental", "bbb222", "flow: dental # 2\n")
    await store.put_revision("dental", "aaa111", "flow: dental\n")  # re-put does not make it latest
    assert await store.get_revision("aaa111") == "flow: dental\n"
    assert await store.get_revision("zzz") is None
    assert await store.latest_revision("dental") == "bbb222"
    assert await store.list_revisions("dental") == ["aaa111", "bbb222"]


async def test_list_export_and_erase_keep_opt_out(store: SessionStore) -> None:
    other = "+15551230000:+15550000000"
    now = time.time()
    await turn(store, SID, "SM1", b"s", reply=b"r", transcript=[b"hello"],
               outbox=[OutboxPut(f"{SID}|o1", b"p")], timer=TimerSet(now + 5, timer_member(SID, 1)))
    b = await store.begin(other, None, lock_ttl_seconds=5, wait_seconds=1)
    await store.commit(other, b.token, Commit(session=b"o", version=1, expect_version=0, ttl_seconds=60,
                                              contact="+15550000000", transcript=[b"x"]))
    await store.set_opt_out(CONTACT, True)
    assert {i.session_id for i in await store.list_sessions()} == {SID, other}
    exported = await store.export_contact(CONTACT)
    assert exported.opted_out and exported.sessions == {SID: b"s"} and exported.transcripts == {SID: [b"hello"]}
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(exported)) is not None
    assert await store.erase_contact(CONTACT) > 0
    assert await store.load(SID) is None and await store.get_transcript(SID) == []
    assert await store.claim_due_timers(now + 10) == []
    assert await store.claim_outbox(now + 10, 10, 30) == []
    assert [i.session_id for i in await store.list_sessions()] == [other]
    assert await store.is_opted_out(CONTACT)  # the opt-out record stays
    again = await store.begin(SID, "SM1", lock_ttl_seconds=5, wait_seconds=1)
    assert again.duplicate_reply is None  # dedupe records are gone too
    assert await store.load(other) == b"o"


async def test_a_session_id_not_ending_with_its_contact_still_sees_its_opt_out_and_is_exported(
    store: SessionStore,
) -> None:
    # the runtime's ids end with the contact (`<business>:<contact>`, one bucket on a cluster);
    # another id still works, at a call more per turn on a cluster
    contact = "+15557654321"
    layout = getattr(store, "layout", None)
    sid = next(f"shop:{contact}~{n}" for n in range(100)
               if layout is None or not layout.n or layout.bucket(f"shop:{contact}~{n}") != layout.bucket(contact))
    await store.set_opt_out(contact, True)
    b = await store.begin(sid, "SM-f1", lock_ttl_seconds=5, wait_seconds=1, contact=contact)
    assert b.opted_out is True
    await store.commit(sid, b.token, Commit(session=b"s", version=1, expect_version=0, ttl_seconds=60, contact=contact))
    exported = await store.export_contact(contact)
    assert exported.opted_out and list(exported.sessions) == [sid]
    assert await store.erase_contact(contact) > 0
    assert await store.load(sid) is None
