"""A lean Redis transport for the turn's two hot-path scripts (PERFORMANCE.md).

One persistent connection per event loop (per process), RESP2 encoded directly on bytes,
replies parsed by `hiredis.Reader`, and auto-pipelining: every command issued in one
event-loop tick goes out in one write, replies are matched to callers first in, first out.
A command costs a few µs of CPU here against ~130-180 µs through redis-py's asyncio client
(connection pool, retry wrapper, Script object, generic packing and parsing).

    lean = LeanRedis.from_pool_kwargs(client.connection_pool.connection_kwargs)  # or None
    await lean.evalsha(sha, text, keys, args)     # EVALSHA; on NOSCRIPT, EVAL (loads it)
    await lean.execute("PING")

Errors are redis-py's own classes, so callers map them as before: `ConnectionError` when
Redis cannot be reached or the connection broke, `TimeoutError` when the oldest command
waited longer than `timeout` seconds (the connection is then dropped: its reply order is
unknown), `ResponseError` & co. for error replies (`BaseParser.parse_error`). A broken
connection is replaced at the next command; commands in flight on it fail (never resent:
a commit must not run twice). A command that never left this process (the connection could not
be made, or broke before the command was written) fails with `NotSent`, a `ConnectionError`: it
cannot have run. Any other failure after sending leaves its outcome unknown (it may still run
when Redis reads it): the caller finds out (store_redis.py settles a commit).

Every `execute` is one request/response exchange with Redis: `round_trips` counts them
(tests and benchmarks count through it; pipelining several callers' commands into one
write still counts one per command).
"""

from __future__ import annotations

import asyncio
import collections
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import hiredis
from hiredis import pack_command as _pack_command
from redis._parsers.base import BaseParser
from redis.crc import key_slot
from redis.exceptions import (
    AskError,
    ClusterDownError,
    MovedError,
    NoScriptError,
    ReadOnlyError,
    RedisError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

__all__ = ["LeanCluster", "LeanRedis", "NotSent", "encode_command"]


class NotSent(RedisConnectionError):
    """The command was never written to Redis, so it cannot have run (safe to treat as not applied)."""


def encode_command(args: Sequence[Any]) -> bytes:
    """One command in RESP2 (an array of bulk strings); str as UTF-8, int/float as text.
    hiredis's C packer does it for str, bytes, int and float (half the CPU of the loop below,
    which gives the same bytes: tests/faults/test_lean_transport.py); the rest (bytearray,
    memoryview, subclasses) or a wrong type (bool, None: TypeError) goes through the loop."""
    try:
        return _pack_command(args if type(args) is tuple else tuple(args))
    except TypeError:
        return _encode_command(args)


def _encode_command(args: Sequence[Any]) -> bytes:
    parts: list[bytes] = [b"*%d\r\n" % len(args)]
    add = parts.append
    for arg in args:
        kind = type(arg)
        if kind is str:
            data = arg.encode()
        elif kind is bytes:
            data = arg
        elif kind is int:
            data = b"%d" % arg
        elif kind is float:
            data = repr(arg).encode()
        elif isinstance(arg, (bytes, bytearray, memoryview)):
            data = bytes(arg)
        elif isinstance(arg, str):
            data = arg.encode()
        elif isinstance(arg, int) and not isinstance(arg, bool):
            data = b"%d" % arg
        else:
            raise TypeError(f"redis command argument {arg!r} ({kind.__name__}): give bytes, str, int or float")
        add(b"$%d\r\n%b\r\n" % (len(data), data))
    return b"".join(parts)


class _Connection(asyncio.Protocol):
    """One socket: writes batched per loop tick, replies handed out in order."""

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float, where: str) -> None:
        self.loop = loop
        self.timeout = timeout
        self.where = where
        self.reader = hiredis.Reader()
        self.waiting: collections.deque[tuple[asyncio.Future[Any], float]] = collections.deque()
        self.out: list[bytes] = []
        self.transport: asyncio.Transport | None = None
        self.broken: RedisError | None = None
        self.flush_scheduled = False
        self.watchdog: asyncio.TimerHandle | None = None

    # asyncio.Protocol ---------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        reader = self.reader
        reader.feed(data)
        waiting = self.waiting
        try:
            while True:
                reply = reader.gets()
                if reply is False:
                    return
                future = waiting.popleft()[0]
                if not future.done():  # a cancelled caller's reply is read and dropped
                    future.set_result(reply)
        except (hiredis.ProtocolError, IndexError) as exc:
            self.fail(RedisConnectionError(f"{self.where}: unreadable reply from Redis ({exc}); reconnecting"))

    def connection_lost(self, exc: Exception | None) -> None:
        reason = f"{type(exc).__name__}: {exc}" if exc else "closed by Redis"
        self.fail(RedisConnectionError(f"{self.where}: connection to Redis lost ({reason})"))

    # sending ------------------------------------------------------------------------
    def send(self, command: bytes) -> asyncio.Future[Any]:
        loop = self.loop
        future = loop.create_future()
        self.waiting.append((future, loop.time()))
        self.out.append(command)
        if not self.flush_scheduled:
            self.flush_scheduled = True
            loop.call_soon(self.flush)
        if self.watchdog is None:
            self.watchdog = loop.call_later(self.timeout, self.check)
        return future

    def flush(self) -> None:
        self.flush_scheduled = False
        out = self.out
        if not out or self.transport is None or self.broken is not None:
            return
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        self.transport.write(data)

    def check(self) -> None:
        """The watchdog: fail the connection when its oldest command waited `timeout` s."""
        self.watchdog = None
        if not self.waiting or self.broken is not None:
            return
        overdue = self.waiting[0][1] + self.timeout - self.loop.time()
        if overdue <= 0:
            self.fail(RedisTimeoutError(
                f"{self.where}: no reply from Redis within {self.timeout} s; dropped the connection"))
        else:
            self.watchdog = self.loop.call_later(overdue, self.check)

    def fail(self, exc: RedisError) -> None:
        if self.broken is None:
            self.broken = exc
        if self.watchdog is not None:
            self.watchdog.cancel()
            self.watchdog = None
        # the newest len(out) commands were never written: they cannot have run
        sent = len(self.waiting) - len(self.out)
        self.out.clear()
        while self.waiting:
            future = self.waiting.popleft()[0]
            if not future.done():
                future.set_exception(exc if sent > 0 else NotSent(f"{exc} (the command was not sent)"))
            sent -= 1
        if self.transport is not None:
            self.transport.abort()


def run_script(lean: LeanRedis | LeanCluster | None, script: Any, keys: Sequence[Any], args: Sequence[Any]) -> Any:
    """Run a registered redis-py `Script`: EVALSHA through `lean` (~10x less CPU than redis-py's
    client), or the Script itself when there is no lean transport (a URL that needs TLS).
    Returns the awaitable."""
    if lean is not None:
        return lean.evalsha(script.sha, script.script, keys, args)
    return script(keys=keys, args=args)


class LeanRedis:
    """A persistent, auto-pipelined RESP2 connection (see the module doc)."""

    def __init__(
        self, *, host: str = "127.0.0.1", port: int = 6379, path: str | None = None, db: int = 0,
        username: str | None = None, password: str | None = None, timeout: float = 1.0,
        connect_timeout: float | None = None, resolve: Callable[[], Awaitable[tuple[str, int]]] | None = None,
    ) -> None:
        self.host, self.port, self.path, self.db = host, port, path, db
        # where the primary is now (Sentinel): asked at every (re)connect, so after a failover the
        # next command reaches the new primary
        self.resolve = resolve
        self.username, self.password = username, password
        self.timeout = timeout
        self.connect_timeout = connect_timeout or timeout
        self.where = f"redis at {path}" if path else f"redis at {host}:{port}"
        self.round_trips = 0
        self._conn: _Connection | None = None
        self._connecting: asyncio.Task[_Connection] | None = None

    @classmethod
    def from_pool_kwargs(cls, kwargs: Mapping[str, Any], *, plain: bool = True) -> LeanRedis | None:
        """From a redis-py pool's `connection_kwargs`; None when the connection needs what this
        transport does not do (TLS: `plain` False, a custom credential provider)."""
        if not plain or kwargs.get("credential_provider") is not None:
            return None
        timeout = float(kwargs.get("socket_timeout") or 5.0)
        return cls(
            host=str(kwargs.get("host") or "127.0.0.1"), port=int(kwargs.get("port") or 6379),
            path=kwargs.get("path"), db=int(kwargs.get("db") or 0), username=kwargs.get("username"),
            password=kwargs.get("password"), timeout=timeout,
            connect_timeout=float(kwargs.get("socket_connect_timeout") or timeout),
        )

    # commands -----------------------------------------------------------------------
    async def execute(self, *args: Any) -> Any:
        """One command, one round trip: its reply, or redis-py's exception for an error reply."""
        conn = self._conn
        if conn is None or conn.broken is not None or conn.loop is not asyncio.get_running_loop():
            conn = await self._reconnected()
        self.round_trips += 1
        reply = await conn.send(encode_command(args))
        if type(reply) is hiredis.ReplyError:
            raise self._error(conn, reply)
        return reply

    def _error(self, conn: _Connection, reply: Any) -> RedisError:
        exc: RedisError = BaseParser.parse_error(str(reply))
        if isinstance(exc, ReadOnlyError) and self.resolve is not None:
            # a demoted primary (failover): the next command asks Sentinel where the primary is now
            conn.fail(RedisConnectionError(f"{self.where}: is a replica now; reconnecting to the primary"))
        return exc

    async def execute_asking(self, *args: Any) -> Any:
        """ASKING then the command, written together (a cluster's slot being imported here)."""
        conn = self._conn
        if conn is None or conn.broken is not None or conn.loop is not asyncio.get_running_loop():
            conn = await self._reconnected()
        self.round_trips += 1
        asking = conn.send(b"*1\r\n$6\r\nASKING\r\n")
        future = conn.send(encode_command(args))
        await asking
        reply = await future
        if type(reply) is hiredis.ReplyError:
            raise self._error(conn, reply)
        return reply

    async def evalsha(self, sha: str, script: str, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """EVALSHA; after a NOSCRIPT (Redis restarted or flushed) the script runs by EVAL, which
        also caches it: one extra round trip, once."""
        try:
            return await self.execute("EVALSHA", sha, len(keys), *keys, *args)
        except NoScriptError:
            return await self.execute("EVAL", script, len(keys), *keys, *args)

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and conn.transport is not None:
            conn.transport.close()

    # connecting ---------------------------------------------------------------------
    async def _reconnected(self) -> _Connection:
        """A connection for a command whose own was missing, broken or of another loop; a
        failure to connect is NotSent (nothing was written)."""
        try:
            return await self._connection()
        except NotSent:
            raise
        except (RedisConnectionError, RedisTimeoutError) as exc:
            raise NotSent(str(exc)) from None

    async def _connection(self) -> _Connection:
        """The live connection, or a new one (concurrent callers share one attempt)."""
        loop = asyncio.get_running_loop()
        task = self._connecting
        if task is None or task.done() or task.get_loop() is not loop:
            task = self._connecting = loop.create_task(self._connect(loop))
        return await asyncio.shield(task)

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> _Connection:
        old, self._conn = self._conn, None
        if old is not None and old.transport is not None and old.loop is loop:
            old.transport.abort()

        def factory() -> _Connection:
            return _Connection(loop, self.timeout, self.where)

        try:
            async with asyncio.timeout(self.connect_timeout):
                if self.resolve is not None:
                    self.host, self.port = await self.resolve()
                    self.where = f"redis at {self.host}:{self.port}"
                if self.path:
                    _, conn = await loop.create_unix_connection(factory, self.path)
                else:
                    _, conn = await loop.create_connection(factory, self.host, self.port)
        except TimeoutError:
            raise RedisTimeoutError(f"{self.where}: connect timed out after {self.connect_timeout} s") from None
        except RedisError as exc:  # Sentinel knows no primary
            raise RedisConnectionError(f"{self.where}: {exc}") from None
        except OSError as exc:
            raise RedisConnectionError(f"{self.where}: cannot connect ({exc})") from None
        setup: list[list[Any]] = []
        if self.password:
            setup.append(["AUTH", self.username, self.password] if self.username else ["AUTH", self.password])
        if self.db:
            setup.append(["SELECT", self.db])
        for command in setup:
            reply = await conn.send(encode_command(command))
            if type(reply) is hiredis.ReplyError:
                conn.fail(RedisConnectionError(f"{self.where}: {command[0]} refused"))
                raise BaseParser.parse_error(str(reply))
        self._conn = conn
        return conn


# a redirect chain longer than this (slots moving again and again) gives up: the caller answers 503
MAX_REDIRECTS = 8


def command_key(args: Sequence[Any]) -> Any:
    """The key a command is routed by: EVAL / EVALSHA's first key, else the first argument."""
    name = args[0]
    if name in ("EVALSHA", "EVAL", "evalsha", "eval"):
        return args[3] if int(args[2]) > 0 else None
    return args[1] if len(args) > 1 else None


class LeanCluster:
    """The lean transport on a Redis Cluster: one `LeanRedis` (one auto-pipelined connection) per
    node, commands routed by their key's slot from the slot map (CLUSTER SLOTS), MOVED (the map is
    refreshed) and ASK (ASKING + the command) followed, TRYAGAIN and CLUSTERDOWN retried briefly.
    A redirect or TRYAGAIN is an error reply: the command did not run there, so following it can
    neither lose nor double a write. Same interface as `LeanRedis`."""

    def __init__(
        self, seeds: Sequence[tuple[str, int]], *, username: str | None = None, password: str | None = None,
        timeout: float = 1.0, connect_timeout: float | None = None,
    ) -> None:
        self.seeds = list(seeds)
        self.username, self.password = username, password
        self.timeout = timeout
        self.connect_timeout = connect_timeout or timeout
        self._nodes: dict[tuple[str, int], LeanRedis] = {}
        self._slots: list[tuple[str, int] | None] = [None] * 16384
        self._mapped = False
        self._refreshing: asyncio.Task[None] | None = None
        self.refreshes = 0
        self.redirects = {"moved": 0, "ask": 0, "tryagain": 0}  # followed so far (tests, metrics)

    @property
    def round_trips(self) -> int:
        return sum(n.round_trips for n in self._nodes.values())

    def node(self, addr: tuple[str, int]) -> LeanRedis:
        lean = self._nodes.get(addr)
        if lean is None:
            lean = self._nodes[addr] = LeanRedis(host=addr[0], port=addr[1], username=self.username,
                                                 password=self.password, timeout=self.timeout,
                                                 connect_timeout=self.connect_timeout)
        return lean

    def owner(self, key: Any) -> tuple[str, int] | None:
        """The node serving `key`'s slot in the current map (None before the map is read)."""
        data = key if isinstance(key, bytes) else str(key).encode()
        return self._slots[key_slot(data)]

    async def refresh(self) -> None:
        """Read the slot map (concurrent callers share one read)."""
        loop = asyncio.get_running_loop()
        task = self._refreshing
        if task is None or task.done() or task.get_loop() is not loop:
            task = self._refreshing = loop.create_task(self._refresh())
        await asyncio.shield(task)

    async def _refresh(self) -> None:
        last: Exception | None = None
        for addr in dict.fromkeys([*self._nodes, *self.seeds]):
            try:
                ranges = await self.node(addr).execute("CLUSTER", "SLOTS")
            except (RedisError, OSError) as exc:
                last = exc
                continue
            slots: list[tuple[str, int] | None] = [None] * 16384
            for low, high, primary, *_ in ranges:
                host = bytes(primary[0]).decode() or addr[0]
                owner = (host, int(primary[1]))
                for slot in range(int(low), int(high) + 1):
                    slots[slot] = owner
            self._slots = slots
            self._mapped = True
            self.refreshes += 1
            return
        raise RedisConnectionError(f"redis cluster: no node answered CLUSTER SLOTS ({last})")

    async def execute(self, *args: Any) -> Any:
        """One command on the node serving its key (any node for a keyless one)."""
        if not self._mapped:
            try:
                await self.refresh()
            except RedisError as exc:
                raise NotSent(str(exc)) from None
        key = command_key(args)
        addr = self.owner(key) if key is not None else None
        if addr is None:
            addr = random.choice([a for a in self._slots if a is not None] or self.seeds)
        asking = False
        redirects = 0
        loop = asyncio.get_running_loop()
        # TRYAGAIN (a multi-key script meeting a slot half moved) and CLUSTERDOWN (a shard lost, the
        # cluster deciding) are waited out for up to the timeout, then raised (the caller's 503)
        patience = loop.time() + self.timeout
        delay = 0.005
        while True:
            lean = self.node(addr)
            try:
                return await (lean.execute_asking(*args) if asking else lean.execute(*args))
            except MovedError as exc:  # the slot has moved for good: a new map
                addr, asking = (exc.host, int(exc.port)), False
                self._slots[exc.slot_id] = addr
                self._schedule_refresh()
                redirects += 1
                self.redirects["moved"] += 1
            except AskError as exc:  # the slot is being moved and this key is on the other node already
                addr, asking = (exc.host, int(exc.port)), True
                redirects += 1
                self.redirects["ask"] += 1
            except RedisConnectionError:  # the node is gone: maybe a replica took its slots
                self._schedule_refresh()
                raise
            except (TryAgainError, ClusterDownError):
                self.redirects["tryagain"] += 1
                if loop.time() + delay > patience:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.1)
                if key is not None:  # start again from the slot's owner (the move may have ended)
                    addr, asking = self.owner(key) or addr, False
            if redirects > MAX_REDIRECTS:
                raise RedisConnectionError(f"redis cluster: more than {MAX_REDIRECTS} redirects for one command")

    def _schedule_refresh(self) -> None:
        task = self._refreshing
        if task is None or task.done():
            self._refreshing = asyncio.get_running_loop().create_task(self._refresh_quietly())

    async def _refresh_quietly(self) -> None:
        try:
            await self._refresh()
        except RedisError:
            pass  # the next MOVED asks again

    async def evalsha(self, sha: str, script: str, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        try:
            return await self.execute("EVALSHA", sha, len(keys), *keys, *args)
        except NoScriptError:
            return await self.execute("EVAL", script, len(keys), *keys, *args)

    async def close(self) -> None:
        for lean in self._nodes.values():
            await lean.close()
