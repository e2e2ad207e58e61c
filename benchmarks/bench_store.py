"""Store benchmark: Redis round trips per turn, bytes per live conversation, turns/s.

    .venv/bin/python benchmarks/bench_store.py [--redis redis://127.0.0.1:6379/0] [--conversations 200]

Runs the shipped dental_booking flow through the real Runtime (engine + Redis store) with
an in-process SMS-like channel, and prints a table. Round trips are counted from Redis'
INFO commandstats (run it on a quiet Redis for exact figures). Bytes are MEMORY USAGE of the
conversation's keys `<prefix>:{<sid>}:*` by part, for 4 turns of a booking and for bench_full's
SMS walk (7 turns, two restarts), and its share of the global indexes (sessions, timers, records
zsets: MEMORY USAGE over their members once the throughput phase filled them; its contact set).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from orchestrator.model import Event
from orchestrator.plugins.channels import Address, Capabilities, ChannelRegistry, Inbound, Outbound, ReplyContext
from orchestrator.plugins.connectors import ConnectorRegistry
from orchestrator.runtime.pipeline import Runtime
from orchestrator.settings import AppSettings
from orchestrator.stores.redis import RedisStore

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ["hi", "1", "Alex Morgan", "cleaning", "tomorrow at 10am", "1"]
SMS_WALK = ["hi", "1", "Alex Morgan", "restart", "1", "Sam Lee", "restart"]  # loadgen.py's sms scenario
PARTS = {"s": "session", "t": "transcript", "d": "dedupe", "r": "record"}
BUSINESS = "+15551230000"


class BenchChannel:
    name = "bench_sms"
    capabilities = Capabilities(idiom="sms", sync_reply=True)

    def verify(self, request: object) -> None: ...
    def parse(self, request: object) -> list[Inbound]: return []
    def render(self, messages: list[Outbound], ctx: ReplyContext) -> object: return None
    async def send(self, to: Address, messages: list[Outbound], ctx: ReplyContext) -> list[str]: return []


class RoundTrips:
    """Counts client round trips of one Redis client: each command, or each pipeline, is one."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.count = 0
        original = client.execute_command

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.count += 1
            return await original(*args, **kwargs)

        client.execute_command = counted  # type: ignore[method-assign]
        pipeline = client.pipeline

        def counted_pipeline(*args: Any, **kwargs: Any) -> Any:
            pipe = pipeline(*args, **kwargs)
            execute = pipe.execute

            async def run(*a: Any, **k: Any) -> Any:
                self.count += 1
                return await execute(*a, **k)

            pipe.execute = run  # type: ignore[method-assign]
            return pipe

        client.pipeline = counted_pipeline  # type: ignore[method-assign]

    def count_lean(self, store: RedisStore) -> RoundTrips:
        """Also count the store's lean hot-path transport (_resp.LeanRedis): each command is one."""
        lean: Any = getattr(store, "_lean", None)
        if lean is not None:
            execute = lean.execute

            async def counted(*args: Any) -> Any:
                self.count += 1
                return await execute(*args)

            lean.execute = counted
        return self


async def script_calls(client: aioredis.Redis) -> int:
    stats = await client.info("commandstats")
    return sum(int(v["calls"]) for k, v in stats.items() if k in ("cmdstat_evalsha", "cmdstat_eval"))


async def conversation_bytes(client: aioredis.Redis, prefix: str, sid: str) -> dict[str, int]:
    """MEMORY USAGE of a conversation's keys by part (session, transcript, dedupe, record, other)."""
    sizes = dict.fromkeys([*PARTS.values(), "other"], 0)
    async for key in client.scan_iter(match=f"{prefix}:{{{sid}}}:*"):
        part = bytes(key).decode().rpartition("}:")[2].split(":", 1)[0]
        sizes[PARTS.get(part, "other")] += int(await client.memory_usage(key) or 0)
    return sizes


async def index_bytes(client: aioredis.Redis, prefix: str, contacts: list[str]) -> dict[str, float]:
    """A conversation's share of the global indexes: each zset's MEMORY USAGE over its members,
    and the mean MEMORY USAGE of a contact's set."""
    out: dict[str, float] = {}
    keys = ["sessions", "timers"] + [bytes(k).decode()[len(prefix) + 1:]
                                     async for k in client.scan_iter(match=f"{prefix}:records*")]
    for name in keys:
        members = int(await client.zcard(f"{prefix}:{name}") or 0)
        if members:
            out[f"{name} ({members} members)"] = int(await client.memory_usage(f"{prefix}:{name}") or 0) / members
    sets = [int(await client.memory_usage(f"{prefix}:c:{c}") or 0) for c in contacts]
    out["contact set c:<contact>"] = sum(sets) / max(1, len(sets))
    return out


def split(sizes: dict[str, int]) -> str:
    return " / ".join(str(sizes[p]) for p in (*PARTS.values(), "other"))


async def main(url: str, conversations: int) -> None:
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    client = aioredis.Redis.from_url(url)
    store = await RedisStore.connect(url, prefix)
    connectors = ConnectorRegistry()
    # the embedded calendar in a throw-away file: never the developer's var/calendar.sqlite3
    calendar_dir = tempfile.TemporaryDirectory(prefix="bench-store-")
    connectors.load_entry_points(env={**os.environ, "ORCHESTRATOR_CALENDAR_DB":
                                      os.path.join(calendar_dir.name, "calendar.sqlite3")})
    channels = ChannelRegistry()
    channels.register(BenchChannel())  # type: ignore[arg-type]
    rt = await Runtime.create(AppSettings(flows_dir=str(ROOT / "flows"), key_prefix=prefix,
                                          default_flow="dental_booking"), connectors, channels, store=store)
    try:
        async def turn(contact: str, text: str, n: int) -> None:
            await rt.handle("bench_sms", Inbound(
                kind="event", address=Address(business=BUSINESS, contact=contact), route_key=BUSINESS,
                event=Event(kind="text", channel="sms", text=text, provider_id=f"SM{contact}{n}")))

        # warm up (scripts loaded, flow compiled, dateparser warmed)
        for n, text in enumerate(SCRIPT):
            await turn("+15550000000", text, n)

        # round trips per turn (2 turns mid-conversation, no connector I/O against Redis)
        await turn("+15550000001", SCRIPT[0], 0)
        counter = RoundTrips(store._r).count_lean(store)
        scripts_before = await script_calls(client)
        await turn("+15550000001", SCRIPT[1], 1)
        await turn("+15550000001", SCRIPT[2], 2)
        rtt = counter.count / 2
        scripts = (await script_calls(client) - scripts_before) / 2  # other clients may add to it

        # bytes per live conversation (mid-flow, after 4 turns)
        for n, text in enumerate(SCRIPT[:4]):
            await turn("+15550000002", text, n)
        keys = [k async for k in client.scan_iter(match=f"{prefix}:{{{BUSINESS}:+15550000002}}:*")]
        sizes = await conversation_bytes(client, prefix, f"{BUSINESS}:+15550000002")
        session_bytes = len(await store.load(f"{BUSINESS}:+15550000002") or b"")
        for n, text in enumerate(SMS_WALK):
            await turn("+15550000003", text, n)
        walk = await conversation_bytes(client, prefix, f"{BUSINESS}:+15550000003")

        # throughput: whole conversations, one process, sequential turns
        started = time.perf_counter()
        turns = 0
        for c in range(conversations):
            contact = f"+1556{c:07d}"
            for n, text in enumerate(SCRIPT):
                await turn(contact, text, n)
                turns += 1
        elapsed = time.perf_counter() - started
        contacts = [f"+1556{c:07d}" for c in range(conversations)]
        shares = await index_bytes(client, prefix, contacts)

        rows = [
            ("Redis round trips per turn (target <= 2-3)", f"{rtt:.1f}"),
            ("Lua scripts run per turn (INFO commandstats)", f"{scripts:.1f}"),
            ("live conversation: keys", str(len(keys))),
            ("live conversation, 4 booking turns: MEMORY USAGE bytes (target < 2 KB)", str(sum(sizes.values()))),
            ("  of which session / transcript / dedupe / record / other", split(sizes)),
            ("live conversation, SMS walk of bench_full (7 turns): MEMORY USAGE bytes", str(sum(walk.values()))),
            ("  of which session / transcript / dedupe / record / other", split(walk)),
            ("live conversation: session msgpack bytes", str(session_bytes)),
            ("its share of the global indexes, bytes", f"{sum(shares.values()):.0f}"),
            *((f"  {name}", f"{value:.0f}") for name, value in shares.items()),
            ("turns/s, engine + Redis store, one process", f"{turns / elapsed:,.0f}"),
            ("mean turn latency ms", f"{elapsed / turns * 1000:.2f}"),
        ]
        width = max(len(r[0]) for r in rows)
        print(f"{'measure'.ljust(width)} | value")
        print(f"{'-' * width}-|-------")
        for name, value in rows:
            print(f"{name.ljust(width)} | {value}")
    finally:
        keys = [k async for k in client.scan_iter(match=f"{prefix}:*", count=1000)]
        for i in range(0, len(keys), 500):
            await client.delete(*keys[i:i + 500])
        await client.aclose()
        await rt.close()
        calendar_dir.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--conversations", type=int, default=200)
    args = parser.parse_args()
    asyncio.run(main(args.redis, args.conversations))
