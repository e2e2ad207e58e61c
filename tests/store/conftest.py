"""Fixtures: one `store` fixture parametrised over the in-memory and the real Redis store."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from orchestrator.store import SessionStore
from orchestrator.store_memory import MemoryStore
from orchestrator.store_redis import RedisStore

REDIS_URL = "redis://127.0.0.1:6379/0"


def unique_prefix() -> str:
    return f"test-{uuid.uuid4().hex[:10]}"


async def drop_prefix(prefix: str) -> None:
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        keys = [k async for k in client.scan_iter(match=f"{prefix}:*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    prefix = unique_prefix()
    yield prefix
    await drop_prefix(prefix)


@pytest.fixture
async def redis_store(redis_prefix: str) -> AsyncIterator[RedisStore]:
    store = await RedisStore.connect(REDIS_URL, redis_prefix)
    yield store
    await store.close()


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[SessionStore]:
    if request.param == "memory":
        yield MemoryStore()
        return
    prefix = unique_prefix()
    redis_store = await RedisStore.connect(REDIS_URL, prefix)
    try:
        yield redis_store
    finally:
        await redis_store.close()
        await drop_prefix(prefix)
