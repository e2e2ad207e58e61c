"""Which store backend a deployment gets: Redis when ORCHESTRATOR_REDIS_URL is set, else memory."""

from __future__ import annotations

from orchestrator.stores.base import SessionStore


async def open_store(
    redis_url: str | None, prefix: str = "orch", *, timeout_seconds: float = 1.0, wait_replicas: int = 0,
) -> SessionStore:
    """The Redis store when a URL is given (`redis://`, `rediss://`, `unix://`, `redis+cluster://`,
    `redis+sentinel://`), else the in-memory one (a single process)."""
    if not redis_url:
        from orchestrator.stores.memory import MemoryStore

        return MemoryStore()
    from orchestrator.stores.redis import RedisStore

    return await RedisStore.connect(redis_url, prefix, timeout_seconds=timeout_seconds, wait_replicas=wait_replicas)
