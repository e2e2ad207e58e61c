"""A server that dies (exit 137, as `kill -9` leaves it) at one point of a turn: the test seam of
the crash rows (test_processes.py). Production code has no fault hooks; this factory wraps the
Redis store's `commit` before building the normal app.

    ServerProcess(env | {"KILL_AT": "before_save"}, app=faultkit.KILL_APP)   # or "after_save"
"""

from __future__ import annotations

import os
from typing import Any

from litestar import Litestar

from orchestrator.stores.base import Commit
from orchestrator.stores.redis import RedisStore
from orchestrator.web.app import create_app as create_product_app

POINTS = ("before_save", "after_save")


def create_app() -> Litestar:
    point = os.environ.get("KILL_AT", "")
    if point not in POINTS:
        raise SystemExit(f"KILL_AT={point!r}: set it to one of {', '.join(POINTS)}")
    commit = RedisStore.commit

    async def dying_commit(self: RedisStore, session_id: str, token: str, change: Commit) -> Any:
        if point == "before_save":
            os._exit(137)
        await commit(self, session_id, token, change)
        os._exit(137)

    RedisStore.commit = dying_commit  # type: ignore[method-assign]
    return create_product_app()
