"""Retention: old transcript entries, conversation records and audit entries go; one
process runs each pass (a lease), on the memory store and on real Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import msgspec
import pytest
from rediskit import redis_stores

from orchestrator.model import Session, TranscriptEntry, TurnResult
from orchestrator.records.analytics import Recorder
from orchestrator.records.audit import AuditLog
from orchestrator.records.retention import RetentionJob
from orchestrator.stores.base import Commit, SessionStore
from orchestrator.stores.memory import MemoryStore

DAY = 86400
NOW = 1_800_000_000.0
SID = "+15555550100:+15555550123"
enc = msgspec.msgpack.Encoder()


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis),
                        pytest.param("cluster", marks=pytest.mark.cluster)])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[SessionStore]:
    if request.param == "memory":
        yield MemoryStore()
        return
    if request.param == "cluster":  # a private 3-master Redis Cluster: paged bucket by bucket
        import uuid

        from orchestrator.stores.redis import RedisStore

        cluster = request.getfixturevalue("redis_cluster")
        prefix = f"ret-{uuid.uuid4().hex[:8]}"
        clustered = await RedisStore.connect(cluster.url, prefix)
        try:
            yield clustered
        finally:
            await clustered.close()
            cluster.drop(f"{prefix}:*")
        return
    async with redis_stores("ret") as [redis_store]:
        yield redis_store


def session(started: float, at: float, *, ended: bool, version: int) -> Session:
    return Session(id=SID, flow="f", revision="r1", state="done" if ended else "ask", business="+15555550100",
                   contact="+15555550123", channel="sms", started_at=started, updated_at=at, turns=1 if not ended
                   else 2, status="ended" if ended else "active", outcome="booked" if ended else None,
                   path=["ask", "done"] if ended else ["ask"], version=version)


async def turn(store: SessionStore, s: Session, texts: list[str]) -> None:
    b = await store.begin(SID, None, lock_ttl_seconds=5, wait_seconds=1, contact=s.contact)
    await store.commit(SID, b.token, Commit(
        session=enc.encode(s), version=b.version + 1, expect_version=b.version, ttl_seconds=90 * DAY,
        transcript=[enc.encode(TranscriptEntry(at=s.updated_at, dir="in", text=t)) for t in texts],
        retention_seconds=90 * DAY, contact=s.contact, updated_at=s.updated_at,
    ))


async def test_a_pass_drops_only_what_is_older_than_retention(store: SessionStore) -> None:
    old, recent = NOW - 40 * DAY, NOW - 2 * DAY
    recorder = Recorder(store, 90 * DAY)
    await turn(store, session(old, old, ended=False, version=1), ["old hi", "my voicemail"])
    await recorder.after_commit("sms", TurnResult(session=session(old, old, ended=False, version=1)))
    await turn(store, session(old, old + 60, ended=True, version=2), ["old bye"])
    await turn(store, session(recent, recent, ended=False, version=3), ["new hi"])
    await recorder.after_commit("sms", TurnResult(session=session(recent, recent, ended=False, version=3)))
    audit = AuditLog(store, 90 * DAY, clock=lambda: old)
    await audit.write(who="admin:x", action="GET /api/flows")
    audit.clock = lambda: recent
    await audit.write(who="admin:x", action="PUT /api/flows/{flow_id:str}")
    assert len(await recorder.scan()) == 2

    report = await RetentionJob(store, retention_seconds=30 * DAY).run_once(NOW)
    assert report is not None
    assert (report.transcript_entries, report.records, report.audit_entries) == (3, 2, 1)  # 2 indexes x 1 record
    left = [msgspec.msgpack.decode(e, type=TranscriptEntry).text for e in await store.get_transcript(SID)]
    assert left == ["new hi"]
    assert [r.started_at for r in await recorder.scan()] == [recent]
    assert [e.action for e in await audit.entries()] == ["PUT /api/flows/{flow_id:str}"]
    again = await RetentionJob(store, retention_seconds=30 * DAY).run_once(NOW)
    assert again is not None and (again.transcript_entries, again.records, again.audit_entries) == (0, 0, 0)


async def test_one_process_runs_a_pass(store: SessionStore) -> None:
    side = store.side
    token = await side.acquire("retention", 60)
    assert token is not None
    assert await RetentionJob(store, retention_seconds=DAY).run_once(NOW) is None  # someone else's lease
    await side.release("retention", token)
    jobs = [RetentionJob(store, retention_seconds=DAY) for _ in range(4)]
    reports = await asyncio.gather(*(j.run_once(NOW) for j in jobs))
    assert sum(r is not None for r in reports) >= 1
    assert await side.acquire("retention", 60) is not None  # released after the pass


@pytest.mark.redis
async def test_two_processes_share_one_lease_on_redis() -> None:
    async with redis_stores("ret", count=2) as [a, b]:
        ta = await a.side.acquire("retention", 60)
        assert ta is not None and await b.side.acquire("retention", 60) is None
        await b.side.release("retention", "not-the-token")  # a stranger cannot free it
        assert await b.side.acquire("retention", 60) is None
        await a.side.release("retention", ta)
        assert await b.side.acquire("retention", 60) is not None
