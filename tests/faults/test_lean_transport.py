"""The lean hot-path Redis transport (orchestrator/stores/resp.py) against a private redis-server:
auto-pipelined replies matched in order, NOSCRIPT fallback, error replies, a paused Redis
timing out fast, a killed one refusing fast, and recovery afterwards."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Iterator

import pytest
import redis
from faultkit import RedisServer
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from orchestrator.stores.resp import LeanRedis, _encode_command, encode_command

pytestmark = pytest.mark.redis
ECHO = "return {KEYS[1], ARGV[1]}"
ECHO_SHA = hashlib.sha1(ECHO.encode()).hexdigest()


@pytest.fixture
def server() -> Iterator[RedisServer]:
    with RedisServer() as rs:
        yield rs


def test_encoding_is_resp2_bulk_strings() -> None:
    assert encode_command(["SET", "k", b"\x00v", 12, 1.5]) == (
        b"*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\n\x00v\r\n$2\r\n12\r\n$3\r\n1.5\r\n")
    with pytest.raises(TypeError, match="give bytes, str, int or float"):
        encode_command(["SET", "k", True])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.text(), st.binary(), st.integers(), st.floats()), max_size=30))
def test_the_c_packer_gives_the_bytes_of_the_python_encoder(args: list[object]) -> None:
    assert encode_command(args) == _encode_command(args)


def test_what_the_c_packer_refuses_is_still_encoded() -> None:
    assert encode_command(["SET", bytearray(b"k"), memoryview(b"v")]) == b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n"


async def test_concurrent_commands_share_writes_and_get_their_own_replies(server: RedisServer) -> None:
    lean = LeanRedis(port=server.port, db=3, timeout=1.0)
    try:
        await asyncio.gather(*(lean.execute("SET", f"k{i}", f"v{i}") for i in range(200)))
        replies = await asyncio.gather(*(lean.execute("GET", f"k{i}") for i in range(200)))
        assert replies == [f"v{i}".encode() for i in range(200)]
        assert lean.round_trips == 400
    finally:
        await lean.close()
    assert redis.Redis(port=server.port, db=3).get("k7") == b"v7"  # SELECT reached the right db


async def test_noscript_falls_back_to_eval_once_then_evalsha(server: RedisServer) -> None:
    lean = LeanRedis(port=server.port)
    try:
        assert await lean.evalsha(ECHO_SHA, ECHO, ["a"], [1]) == [b"a", b"1"]
        assert lean.round_trips == 2  # EVALSHA (NOSCRIPT) + EVAL
        assert await lean.evalsha(ECHO_SHA, ECHO, ["b"], ["x"]) == [b"b", b"x"]
        assert lean.round_trips == 3  # cached now: one
        with pytest.raises(ResponseError, match="wrong number of arguments"):
            await lean.execute("GET")
        assert await lean.execute("PING") == b"PONG"  # an error reply leaves the stream in step
    finally:
        await lean.close()


async def test_a_cancelled_caller_does_not_shift_the_replies(server: RedisServer) -> None:
    lean = LeanRedis(port=server.port)
    try:
        await lean.execute("MSET", "a", "1", "b", "2")
        first = asyncio.ensure_future(lean.execute("GET", "a"))
        await asyncio.sleep(0)  # its command is queued for the next write
        first.cancel()
        assert await lean.execute("GET", "b") == b"2"
        assert first.cancelled()
    finally:
        await lean.close()


async def test_paused_redis_times_out_within_the_timeout_then_recovers(server: RedisServer) -> None:
    lean = LeanRedis(port=server.port, timeout=0.5)
    try:
        await lean.execute("PING")
        server.pause()
        t = time.monotonic()
        with pytest.raises(RedisTimeoutError, match=r"no reply from Redis within 0\.5 s"):
            await lean.execute("PING")
        assert time.monotonic() - t < 1.0
        server.resume()
        assert await lean.execute("PING") == b"PONG"
    finally:
        server.resume()
        await lean.close()


async def test_killed_redis_refuses_fast_and_a_restarted_one_serves_again(server: RedisServer) -> None:
    lean = LeanRedis(port=server.port, timeout=1.0)
    try:
        assert await lean.evalsha(ECHO_SHA, ECHO, ["k"], ["v"]) == [b"k", b"v"]
        server.kill()
        t = time.monotonic()
        for _ in range(3):
            with pytest.raises((RedisConnectionError, RedisTimeoutError)):
                await lean.execute("PING")
        assert time.monotonic() - t < 1.0
        server.start()
        assert await lean.evalsha(ECHO_SHA, ECHO, ["k"], ["v"]) == [b"k", b"v"]  # script cache was lost
    finally:
        await lean.close()
