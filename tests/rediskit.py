"""Real-Redis helpers for tests (importable from any test directory: `from rediskit import ...`):
a unique key prefix per test, and the removal of every key under it afterwards."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as aioredis

from orchestrator.stores.redis import RedisStore

REDIS_URL = "redis://127.0.0.1:6379/0"


def unique_prefix(tag: str) -> str:
    return f"test-{tag}-{uuid.uuid4().hex[:10]}"


async def drop_prefix(prefix: str) -> None:
    """Delete every key under `prefix:`."""
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        keys = [k async for k in client.scan_iter(match=f"{prefix}:*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@asynccontextmanager
async def redis_stores(tag: str, count: int = 1) -> AsyncIterator[list[RedisStore]]:
    """`count` RedisStores sharing one fresh prefix (several processes of one deployment);
    closed and their keys dropped on exit."""
    prefix = unique_prefix(tag)
    stores = [await RedisStore.connect(REDIS_URL, prefix) for _ in range(count)]
    try:
        yield stores
    finally:
        for s in stores:
            await s.close()
        await drop_prefix(prefix)
