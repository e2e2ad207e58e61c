"""The in-process per-session queue in front of the store's lock (`runtime.SessionGates`):
one turn per session per process at the store, the others handed the gate in arrival order,
waits bounded by lock_wait_seconds (-> LockTimeout), no entry left once a session is idle."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from test_runtime import FLOW, SID, Clock, FakeChannel, inbound, session_of, texts

from orchestrator.errors import LockTimeout
from orchestrator.plugins.channels import ChannelRegistry
from orchestrator.plugins.connectors import ConnectorRegistry
from orchestrator.runtime.gates import SessionGates
from orchestrator.runtime.pipeline import Runtime
from orchestrator.settings import AppSettings
from orchestrator.stores.base import SessionStore


async def test_the_first_turn_takes_the_gate_at_once_and_an_idle_session_leaves_no_entry() -> None:
    gates = SessionGates()
    assert await gates.acquire("a", 1.0)
    assert await gates.acquire("b", 1.0)  # another session: not queued behind "a"
    assert len(gates) == 2
    gates.release("a")
    gates.release("b")
    assert len(gates) == 0


async def test_waiters_get_the_gate_in_arrival_order() -> None:
    gates = SessionGates()
    order: list[int] = []
    await gates.acquire("s", 1.0)

    async def turn(n: int) -> None:
        assert await gates.acquire("s", 5.0)
        order.append(n)
        await asyncio.sleep(0)  # hold it across a loop iteration
        gates.release("s")

    tasks = [asyncio.create_task(turn(n)) for n in range(5)]
    await asyncio.sleep(0)
    assert order == []  # all queued behind the holder
    gates.release("s")
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2, 3, 4]
    assert len(gates) == 0


async def test_a_wait_that_runs_out_returns_false_and_leaves_the_queue_working() -> None:
    gates = SessionGates()
    await gates.acquire("s", 1.0)
    assert not await gates.acquire("s", 0.01)  # the holder kept it: not taken
    later = asyncio.create_task(gates.acquire("s", 5.0))
    await asyncio.sleep(0)
    gates.release("s")  # skips the expired waiter, hands over to the live one
    assert await later
    gates.release("s")
    assert len(gates) == 0


async def test_a_cancelled_waiter_never_keeps_the_gate() -> None:
    gates = SessionGates()
    await gates.acquire("s", 1.0)
    waiting = asyncio.create_task(gates.acquire("s", 5.0))
    await asyncio.sleep(0)
    gates.release("s")  # handed to `waiting`, which is cancelled before it runs
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert len(gates) == 0  # it passed the gate on (to nobody): free again
    assert await gates.acquire("s", 0.01)
    gates.release("s")


@pytest.fixture
async def runtime(store: SessionStore, tmp_path: Path) -> Runtime:
    (tmp_path / "intake.yaml").write_text(FLOW.format(tag="v1"))
    channels = ChannelRegistry()
    channels.register(FakeChannel("fake_sms", "sms", True))  # type: ignore[arg-type]
    settings = AppSettings(flows_dir=str(tmp_path), lock_wait_seconds=0.3)
    return await Runtime.create(settings, ConnectorRegistry(), channels, store=store, clock=Clock())


async def test_concurrent_turns_of_one_session_go_to_the_store_one_at_a_time_in_order(runtime: Runtime) -> None:
    await runtime.handle("fake_sms", inbound("hi", "SM0"))
    begins: list[str | None] = []
    inside = 0
    most_inside = 0
    begin = runtime.store.begin

    async def counted_begin(session_id: str, dedupe_id: str | None, **kwargs: Any) -> Any:
        nonlocal inside, most_inside
        begins.append(dedupe_id)
        inside += 1
        most_inside = max(most_inside, inside)
        try:
            return await begin(session_id, dedupe_id, **kwargs)
        finally:
            inside -= 1

    runtime.store.begin = counted_begin  # type: ignore[method-assign]
    replies = await asyncio.gather(*(runtime.handle("fake_sms", inbound(f"name {n}", f"SM{n}"))
                                     for n in range(1, 9)))
    assert begins == [f"SM{n}" for n in range(1, 9)]  # one store call each, no lock polling, in order
    assert most_inside == 1
    assert texts(replies[0]) == ["Favourite colour, name 1?"]
    assert (await session_of(runtime)).version == 9  # every turn saved, none refused as stale
    assert len(runtime._gates) == 0


async def test_a_turn_queued_longer_than_lock_wait_seconds_is_a_lock_timeout(runtime: Runtime) -> None:
    await runtime.handle("fake_sms", inbound("hi", "SM0"))
    assert await runtime._gates.acquire(SID, 1.0)  # a slow turn of this process holds the session
    try:
        with pytest.raises(LockTimeout, match="ORCHESTRATOR_LOCK_WAIT_SECONDS"):
            await runtime.handle("fake_sms", inbound("Ann", "SM1"))
    finally:
        runtime._gates.release(SID)
    assert texts(await runtime.handle("fake_sms", inbound("Ann", "SM1"))) == ["Favourite colour, Ann?"]
