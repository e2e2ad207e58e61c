"""Faults of a clustered or replicated Redis under load (SPEC §12, RELIABILITY): a slot migrated
mid-load, a shard killed and restarted mid-load, a Sentinel failover mid-conversation. Each drives
conversations through the store as the runtime does (begin, commit with a dedupe id, an outbox
item and a timer; a 503 answered retried as the provider retries) and then checks that nothing was
lost or doubled: every conversation has exactly its turns, its transcript, one outbox item per
turn, each claimed once, and one timer."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgspec
import pytest
from clusterkit import RedisClusterKit, SentinelKit
from redis.crc import key_slot

from orchestrator.errors import LockTimeout, StaleWrite, StoreUnavailable
from orchestrator.stores.base import Commit, OutboxPut, TimerSet, timer_member
from orchestrator.stores.layout import BUCKETS, bucket_of, bucket_tags
from orchestrator.stores.redis import RedisStore

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(90)]

BUSINESS = "+15555550100"


def contacts(n_in_bucket: int, n_other: int, bucket: int = 0) -> list[str]:
    """`n_in_bucket` contacts of `bucket` (so the migrated slot is busy) and `n_other` of others."""
    mine, others = [], []
    k = 0
    while len(mine) < n_in_bucket or len(others) < n_other:
        c = f"+1555{k:07d}"
        (mine if bucket_of(c, BUCKETS) == bucket else others).append(c)
        k += 1
    return mine[:n_in_bucket] + others[:n_other]


class Load:
    """Conversations of `turns` turns each, driven concurrently; every answered failure is retried
    with the same delivery id (the provider's retry)."""

    def __init__(self, store: RedisStore, people: list[str], turns: int, tag: str) -> None:
        self.store, self.people, self.turns, self.tag = store, people, turns, tag
        self.failures = 0  # 503s answered (retried)
        self.acked: dict[str, int] = {}  # turns answered OK per session
        self.migrated_at = 0

    def sid(self, contact: str) -> str:
        return f"{BUSINESS}:{contact}"

    async def turn(self, contact: str, n: int) -> None:
        sid, delivery = self.sid(contact), f"{self.tag}-{contact}-{n}"
        while True:
            token = ""
            try:
                b = await self.store.begin(sid, delivery, lock_ttl_seconds=5, wait_seconds=5, contact=contact)
                if b.duplicate_reply is not None:
                    assert b.duplicate_reply == f"reply-{n}".encode()
                    break  # it was saved, its answer lost: the retry is answered
                token = b.token
                await self.store.commit(sid, token, Commit(
                    session=(b.session or b"") + b".", version=b.version + 1, expect_version=b.version,
                    ttl_seconds=600, dedupe_id=delivery, reply=f"reply-{n}".encode(),
                    transcript=[msgspec.msgpack.encode([time.time(), "in", f"t{n}"])], contact=contact,
                    outbox=[OutboxPut(f"{sid}|{delivery}", msgspec.msgpack.encode({"contact": contact}))],
                    outbox_due=time.time() + 3600, timer=TimerSet(due=1.0, member=timer_member(sid, n + 1)),
                ))
                break
            except (StoreUnavailable, LockTimeout, StaleWrite):
                self.failures += 1
                if token:
                    try:
                        await self.store.release(sid, token)
                    except StoreUnavailable:
                        pass
                await asyncio.sleep(0.05)
        self.acked[sid] = n + 1
        # a copy of the same delivery is answered from the stored reply
        while True:
            try:
                dup = await self.store.begin(sid, delivery, lock_ttl_seconds=5, wait_seconds=5, contact=contact)
                assert dup.duplicate_reply == f"reply-{n}".encode(), "a copy of a saved delivery is a duplicate"
                break
            except (StoreUnavailable, LockTimeout):
                self.failures += 1
                await asyncio.sleep(0.05)

    async def converse(self, contact: str, pause: float = 0.0, start: int = 0, stop: int | None = None) -> None:
        for n in range(start, self.turns if stop is None else stop):
            await self.turn(contact, n)
            await asyncio.sleep(pause)

    async def run(self, pause: float = 0.01) -> None:
        await asyncio.gather(*(self.converse(c, pause) for c in self.people))

    async def check(self) -> None:
        """Nothing lost, nothing doubled."""
        store = self.store
        for contact in self.people:
            sid = self.sid(contact)
            assert await store.load(sid) == b"." * self.turns, f"{sid}: every turn saved once"
            entries = [msgspec.msgpack.decode(e)[2] for e in await store.get_transcript(sid)]
            assert entries == [f"t{n}" for n in range(self.turns)], f"{sid}: transcript in order, once each"
        expected = {f"{self.sid(c)}|{self.tag}-{c}-{n}" for c in self.people for n in range(self.turns)}
        claimed: list[str] = []
        for _ in range(50):  # every bucket's items, each claimed once (the lease pushes a claimed one away)
            batch = [c.id for c in await store.claim_outbox(time.time() + 7200, 1000, 3600)]
            claimed += batch
            if not batch and len(claimed) >= len(expected):
                break
            await asyncio.sleep(0.05 if not batch else 0)
        assert sorted(claimed) == sorted(expected), "each outbox item once"
        timers = await store.claim_due_timers(time.time(), 10_000)
        assert sorted(timers) == sorted(timer_member(self.sid(c), self.turns) for c in self.people)


def runner_done_early(load: Load) -> bool:
    return load.migrated_at >= len(load.people) * load.turns


async def test_a_slot_migrated_mid_load_loses_and_doubles_nothing(redis_cluster: RedisClusterKit) -> None:
    store = await RedisStore.connect(redis_cluster.url, f"mig-{time.time_ns()}")
    try:
        load = Load(store, contacts(8, 8), turns=30, tag="mig")
        slot = key_slot(bucket_tags(BUCKETS)[0].encode())
        source = redis_cluster.shard_of_slot(slot)
        target = (source + 1) % 3
        runner = asyncio.create_task(load.run(pause=0.02))
        await asyncio.sleep(0.3)  # conversations under way, their keys in the slot
        moved = await asyncio.to_thread(redis_cluster.migrate_slot, slot, target, pause_between=0.01, batch=3)
        load.migrated_at = sum(load.acked.values())
        await runner
        assert moved > 20, "the slot held the busy bucket's keys when it moved"
        assert redis_cluster.shard_of_slot(slot) == target
        lean: Any = store.lean
        assert lean.refreshes >= 2, "the lean transport read the new slot map after MOVED"
        assert lean.redirects["moved"] > 0 and lean.redirects["ask"] + lean.redirects["tryagain"] > 0, (
            "traffic met the slot half moved", lean.redirects)
        await load.check()
    finally:
        await store.close()
        redis_cluster.drop(f"{store.prefix}:*")


async def test_a_shard_killed_and_restarted_mid_load_loses_and_doubles_nothing() -> None:
    with RedisClusterKit(3) as cluster:  # its own: a shard goes down
        store = await RedisStore.connect(cluster.url, "kill", timeout_seconds=0.5)
        try:
            load = Load(store, contacts(6, 12), turns=40, tag="kill")
            runner = asyncio.create_task(load.run(pause=0.03))
            await asyncio.sleep(0.3)
            victim = cluster.shard_of(f"kill:{{{bucket_tags(BUCKETS)[0]}}}:timers")
            cluster.kill(victim)
            await asyncio.sleep(1.0)  # turns of the other shards go on; those of this one are 503s
            await asyncio.to_thread(cluster.start_node, victim)
            await runner
            assert load.failures > 0, "the dead shard's turns were refused while it was down"
            await load.check()
        finally:
            await store.close()


async def test_a_sentinel_failover_mid_conversation_reconnects_to_the_new_primary_and_keeps_acked_turns() -> None:
    with SentinelKit() as group:
        store = await RedisStore.connect(group.url, "sent", timeout_seconds=0.5, wait_replicas=1)
        try:
            people = contacts(0, 6)
            load = Load(store, people, turns=6, tag="fo")
            await asyncio.gather(*(load.converse(c, stop=3) for c in people))  # half of each conversation
            old = group.kill_primary()
            started = time.monotonic()
            # the first turn after the primary died: Sentinel's failover (down after 1 s, then the
            # election) and the reconnect to the new primary
            await load.converse(people[0], start=3, stop=4)
            reconnected = time.monotonic() - started
            await asyncio.gather(load.converse(people[0], start=4),
                                 *(load.converse(c, start=3) for c in people[1:]))
            finished = time.monotonic() - started
            assert group.primary_port() != old
            assert reconnected < 15, f"back within seconds of the failover ({reconnected:.1f} s)"
            # the rest also waits out the locks the killed primary's last turns left (5 s TTL)
            assert finished < 45, f"every conversation went on ({finished:.1f} s)"
            await load.check()  # the turns acknowledged before the failover (WAIT 1) survived it
        finally:
            await store.close()
