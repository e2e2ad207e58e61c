"""Storage beside the session store for what is written rarely: conversation records, the
audit log, leases of periodic jobs. Never on a turn's hot path (a write at a conversation's
start and end, one per admin action).

    side = runtime.store.side              # each store backend brings its own flavour
    await side.hset("{sid}:r:17000", {"start": data}, ttl_seconds=86400)
    await side.zadd("records", "conv-id", score=1700000000.0, ttl_seconds=86400)

Keys are given without the store's prefix. Keys of one conversation are written as
`{<session id>}:...` so they share the session's keys' slot and its erasure (the Redis
store's `erase_contact` removes every key of the session). With the bucketed layout of a
Redis Cluster (`layout.py`) such a key goes to its session's bucket, and so do the indexes a
`put_indexed` writes beside it: the indexes of conversation records (`SPLIT_INDEXES`) are one
sorted set per bucket, read together (`zrange` merges them); every other key is a single key.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping, Sequence
from typing import Any

from orchestrator.stores.base import SidePut
from orchestrator.stores.layout import Layout
from orchestrator.stores.resp import run_script
from orchestrator.stores.scripts import lua


class MemorySide:
    """One process: dicts with deadlines, checked on read."""

    def __init__(self, clock: Any = time.time) -> None:
        self._clock = clock
        self._hashes: dict[str, tuple[dict[str, bytes], float]] = {}
        self._zsets: dict[str, tuple[dict[str, float], float]] = {}
        self._leases: dict[str, tuple[str, float]] = {}

    def _live(self, table: dict[str, Any], key: str) -> Any:
        item = table.get(key)
        if item is None:
            return None
        if item[1] <= self._clock():
            del table[key]
            return None
        return item[0]

    async def hset(
        self, key: str, fields: Mapping[str, bytes], *, ttl_seconds: int, drop: Sequence[str] = ()
    ) -> None:
        self.put(SidePut(key=key, fields=dict(fields), ttl_seconds=ttl_seconds, drop=list(drop)))

    async def hgetall(self, key: str) -> dict[str, bytes]:
        return dict(self._live(self._hashes, key) or {})

    async def hincrby(self, key: str, field: str, amount: int, *, ttl_seconds: int) -> int:
        current = self._live(self._hashes, key) or {}
        value = int(current.get(field, b"0")) + amount
        current[field] = str(value).encode()
        self._hashes[key] = (current, self._clock() + ttl_seconds)
        return value

    async def hgetall_many(self, keys: list[str]) -> list[dict[str, bytes]]:
        return [await self.hgetall(k) for k in keys]

    async def zadd(self, key: str, member: str, score: float, *, ttl_seconds: int) -> None:
        self._zadd(key, member, score, ttl_seconds)

    def _zadd(self, key: str, member: str, score: float, ttl_seconds: int) -> None:
        current = self._live(self._zsets, key) or {}
        current[member] = score
        self._zsets[key] = (current, self._clock() + ttl_seconds)

    async def put_indexed(
        self, key: str, fields: Mapping[str, bytes], indexes: list[str], member: str, score: float, *,
        ttl_seconds: int, drop: Sequence[str] = (),
    ) -> None:
        self.put(SidePut(key=key, fields=dict(fields), ttl_seconds=ttl_seconds, drop=list(drop), indexes=indexes,
                         member=member, score=score))

    def put(self, put: SidePut) -> None:
        """`put_indexed` without an await: the memory store applies a commit's side writes with it,
        in the commit's one step of the event loop."""
        current = self._live(self._hashes, put.key) or {}
        current.update(put.fields)
        for field in put.drop:
            current.pop(field, None)
        self._hashes[put.key] = (current, self._clock() + put.ttl_seconds)
        for index in put.indexes:
            self._zadd(index, put.member, put.score, put.ttl_seconds)

    async def zrange(
        self, key: str, *, low: float = float("-inf"), high: float = float("inf"), desc: bool = False,
        offset: int = 0, limit: int = 1000,
    ) -> list[tuple[str, float]]:
        items = sorted(((s, m) for m, s in (self._live(self._zsets, key) or {}).items() if low <= s <= high),
                       reverse=desc)
        return [(m, s) for s, m in items[offset : offset + limit]]

    async def zrem(self, key: str, members: list[str]) -> int:
        current = self._live(self._zsets, key) or {}
        return sum(current.pop(m, None) is not None for m in members)

    async def zremrangebyscore(self, key: str, high: float) -> int:
        current = self._live(self._zsets, key) or {}
        gone = [m for m, s in current.items() if s <= high]
        for m in gone:
            del current[m]
        return len(gone)

    async def zcard(self, key: str) -> int:
        return len(self._live(self._zsets, key) or {})

    async def delete(self, keys: list[str]) -> int:
        removed = 0
        for key in keys:
            removed += self._hashes.pop(key, None) is not None
            removed += self._zsets.pop(key, None) is not None
        return removed

    async def acquire(self, name: str, ttl_seconds: float) -> str | None:
        if self._live(self._leases, name) is not None:
            return None
        token = secrets.token_hex(8)
        self._leases[name] = (token, self._clock() + ttl_seconds)
        return token

    async def release(self, name: str, token: str) -> None:
        if self._live(self._leases, name) == token:
            del self._leases[name]

    def keys_for_test(self) -> list[str]:
        return [k for k in [*self._hashes, *self._zsets] if self._live(self._hashes, k) is not None
                or self._live(self._zsets, k) is not None]


# release only our own lease: a run that outlived its lease must not free the next holder's
_RELEASE_LUA = lua("release.lua")
# put: a hash's fields, its dropped fields and its index entries in one script call (one call costs
# ~10x less CPU through the lean transport than redis-py's pipeline of the same commands); the
# Redis store's commit script includes the same function for the side writes riding in a turn.
_PUT_LUA = lua("put.lua", "lib_put.lua")


# indexes split by bucket on a cluster (records.analytics' `records` and `records:<flow>`): written
# beside a conversation's hash in its bucket, read from every bucket
SPLIT_INDEXES = ("records",)


def _split(key: str) -> bool:
    return any(key == name or key.startswith(name + ":") for name in SPLIT_INDEXES)


def put_script_args(layout: Layout | str, put: SidePut) -> tuple[list[str], list[Any]]:
    """The KEYS and ARGV of `put` (lua/lib_put.lua), keys under the layout (or a bare prefix)."""
    if isinstance(layout, str):
        layout = Layout(layout)
    args: list[Any] = [max(1, int(put.ttl_seconds)), len(put.fields)]
    for name, value in put.fields.items():
        args += (name, value)
    args.append(len(put.drop))
    args += put.drop
    if put.indexes:
        args += (put.member, put.score)
    return [layout.side(put.key), *[layout.side_index(i, put.key) for i in put.indexes]], args


class RedisSide:
    """The same Redis as the session store, under its prefix. Every key gets a TTL. Writes go
    through the store's lean transport (`lean`, `_resp.LeanRedis`) when it has one (not with TLS)."""

    def __init__(self, client: Any, prefix: str | Layout, lean: Any = None, *, cluster: bool = False) -> None:
        self._r = client
        self.layout = prefix if isinstance(prefix, Layout) else Layout(prefix)
        self.prefix = self.layout.prefix
        self._lean = lean
        self._cluster = cluster
        self._release = client.register_script(_RELEASE_LUA)
        self._put = client.register_script(_PUT_LUA)

    def _eval(self, script: Any, keys: list[Any], args: list[Any]) -> Any:
        return run_script(self._lean, script, keys, args)

    async def _write(self, put: SidePut) -> None:
        """`put` (fields, drops, indexes) in one script call: a reader never sees half of it."""
        await self._do(self._eval(self._put, *put_script_args(self.layout, put)))

    def _k(self, key: str) -> str:
        return self.layout.side(key)

    def _every(self, key: str) -> list[str]:
        """The keys of a split index (one per bucket), else the one key."""
        if self.layout.n and _split(key):
            return self.layout.every(key)
        return [self._k(key)]

    def _pipeline(self) -> Any:
        """commands on one key in order: a MULTI on one Redis; a cluster pipeline has no MULTI"""
        return self._r.pipeline(transaction=not self._cluster)

    async def _each(self, calls: list[Any]) -> list[Any]:
        import asyncio

        return list(await asyncio.gather(*(self._do(c) for c in calls)))

    async def _do(self, awaitable: Any) -> Any:
        from redis.exceptions import ClusterDownError, ClusterError, RedisClusterException, TryAgainError
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError

        from orchestrator.errors import StoreUnavailable

        try:
            return await awaitable
        except (RedisConnectionError, RedisTimeoutError, OSError, ClusterDownError, ClusterError, TryAgainError,
                RedisClusterException) as exc:
            raise StoreUnavailable(
                f"side store ({self.prefix}): cannot reach Redis ({type(exc).__name__}); "
                "check ORCHESTRATOR_REDIS_URL and that Redis is running"
            ) from None

    async def hset(
        self, key: str, fields: Mapping[str, bytes], *, ttl_seconds: int, drop: Sequence[str] = ()
    ) -> None:
        """Set `fields` and delete `drop` together."""
        await self._write(SidePut(key=key, fields=dict(fields), ttl_seconds=ttl_seconds, drop=list(drop)))

    async def hgetall(self, key: str) -> dict[str, bytes]:
        raw = await self._do(self._r.hgetall(self._k(key)))
        return {bytes(k).decode(): bytes(v) for k, v in raw.items()}

    async def hincrby(self, key: str, field: str, amount: int, *, ttl_seconds: int) -> int:
        pipe = self._pipeline()
        pipe.hincrby(self._k(key), field, amount)
        pipe.expire(self._k(key), max(1, int(ttl_seconds)))
        value, _ = await self._do(pipe.execute())
        return int(value)

    async def hgetall_many(self, keys: list[str]) -> list[dict[str, bytes]]:
        if not keys:
            return []
        pipe = self._r.pipeline(transaction=False)
        for key in keys:
            pipe.hgetall(self._k(key))
        rows = await self._do(pipe.execute())
        return [{bytes(k).decode(): bytes(v) for k, v in row.items()} for row in rows]

    async def zadd(self, key: str, member: str, score: float, *, ttl_seconds: int) -> None:
        pipe = self._pipeline()
        pipe.zadd(self._k(key), {member: score})
        pipe.expire(self._k(key), max(1, int(ttl_seconds)))
        await self._do(pipe.execute())

    async def put_indexed(
        self, key: str, fields: Mapping[str, bytes], indexes: list[str], member: str, score: float, *,
        ttl_seconds: int, drop: Sequence[str] = (),
    ) -> None:
        """One script call: the hash fields, `drop` deleted, and the index entries, atomically (a
        record at start or end: written once, so no reader can catch a stale field between the two)."""
        await self._write(SidePut(key=key, fields=dict(fields), ttl_seconds=ttl_seconds, drop=list(drop),
                                  indexes=list(indexes), member=member, score=score))

    async def zrange(
        self, key: str, *, low: float = float("-inf"), high: float = float("inf"), desc: bool = False,
        offset: int = 0, limit: int = 1000,
    ) -> list[tuple[str, float]]:
        lo = "-inf" if low == float("-inf") else low
        hi = "+inf" if high == float("inf") else high
        names = self._every(key)
        # a split index: each bucket's first offset + limit, merged
        first, count = (offset, limit) if len(names) == 1 else (0, offset + limit)
        if desc:
            calls = [self._r.zrevrangebyscore(k, hi, lo, start=first, num=count, withscores=True) for k in names]
        else:
            calls = [self._r.zrangebyscore(k, lo, hi, start=first, num=count, withscores=True) for k in names]
        rows = [(bytes(m).decode(), float(s)) for raw in await self._each(calls) for m, s in raw]
        if len(names) == 1:
            return rows
        rows.sort(key=lambda row: (row[1], row[0]), reverse=desc)
        return rows[offset : offset + limit]

    async def zrem(self, key: str, members: list[str]) -> int:
        if not members:
            return 0
        return sum(int(n) for n in await self._each([self._r.zrem(k, *members) for k in self._every(key)]))

    async def zremrangebyscore(self, key: str, high: float) -> int:
        return sum(int(n) for n in await self._each([self._r.zremrangebyscore(k, "-inf", high)
                                                     for k in self._every(key)]))

    async def zcard(self, key: str) -> int:
        return sum(int(n) for n in await self._each([self._r.zcard(k) for k in self._every(key)]))

    async def delete(self, keys: list[str]) -> int:
        if not keys:
            return 0
        names = [name for k in keys for name in self._every(k)]
        if self._cluster:  # one DEL per key: they may be on different slots
            return sum(int(n) for n in await self._each([self._r.delete(name) for name in names]))
        return int(await self._do(self._r.delete(*names)))

    async def acquire(self, name: str, ttl_seconds: float) -> str | None:
        token = secrets.token_hex(8)
        ok = await self._do(self._r.set(self._k(f"lease:{name}"), token, nx=True,
                                        px=max(1, int(ttl_seconds * 1000))))
        return token if ok else None

    async def release(self, name: str, token: str) -> None:
        await self._do(self._release(keys=[self._k(f"lease:{name}")], args=[token]))

    def keys_for_test(self) -> list[str]:  # pragma: no cover - Redis tests scan instead
        return []
