"""Fixtures: one `store` fixture parametrised over the in-memory and the real Redis store (through the lean transport,
and through redis-py alone as with a TLS URL)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from rediskit import REDIS_URL, drop_prefix, unique_prefix

from orchestrator.stores.base import SessionStore
from orchestrator.stores.memory import MemoryStore
from orchestrator.stores.redis import RedisStore


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    prefix = unique_prefix("store")
    yield prefix
    await drop_prefix(prefix)


@pytest.fixture
async def redis_store(redis_prefix: str) -> AsyncIterator[RedisStore]:
    store = await RedisStore.connect(REDIS_URL, redis_prefix)
    yield store
    await store.close()


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis),
                        pytest.param("redis-py", marks=pytest.mark.redis),
                        pytest.param("redis-buckets", marks=pytest.mark.redis),
                        pytest.param("cluster", marks=pytest.mark.cluster)])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[SessionStore]:
    """"memory", "redis" (the hot path through the lean transport), "redis-py" (every call through
    redis-py, as with a rediss:// URL: `RedisStore.lean` is None), "redis-buckets" (the cluster's
    bucketed layout on one Redis) or "cluster" (a private 3-master Redis Cluster)."""
    if request.param == "memory":
        yield MemoryStore()
        return
    if request.param == "cluster":
        cluster = request.getfixturevalue("redis_cluster")
        prefix = unique_prefix("store")
        cluster_store = await RedisStore.connect(cluster.url, prefix)
        try:
            yield cluster_store
        finally:
            await cluster_store.close()
            cluster.drop(f"{prefix}:*")
        return
    if request.param == "redis-buckets":
        import redis.asyncio as aioredis

        from orchestrator.stores.layout import BUCKETS

        prefix = unique_prefix("store")
        bucketed = RedisStore(aioredis.Redis.from_url(REDIS_URL, socket_timeout=1.0), prefix, buckets=BUCKETS)
        try:
            yield bucketed
        finally:
            await bucketed.close()
            await drop_prefix(prefix)
        return
    prefix = unique_prefix("store")
    redis_store = await RedisStore.connect(REDIS_URL, prefix)
    if request.param == "redis-py":
        redis_store._lean = None  # not connected yet: connect() checks through redis-py
    try:
        yield redis_store
    finally:
        await redis_store.close()
        await drop_prefix(prefix)
