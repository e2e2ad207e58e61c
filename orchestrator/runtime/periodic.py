"""One loop for every periodic job (timer poller, outbox sender, flows reload, retention): run the
job, pause, again until cancelled; a failing run is logged and retried after the pause."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger("orchestrator.runtime.periodic")


async def every(
    seconds: float, job: Callable[[], Awaitable[Any]], *, what: str, wake: asyncio.Event | None = None,
    again: Callable[[Any], bool] | None = None, pause_first: bool = False,
) -> None:
    """`job()` every `seconds` until cancelled. `wake` set: the pause ends at once (new work);
    `again(result)` true: no pause (a full batch, more may be ready); `pause_first`: the first run
    waits a pause too. A run that raises is logged as "<what> failed (will retry)"."""
    if pause_first:
        await _pause(seconds, wake)
    while True:
        try:
            result = await job()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("%s failed (will retry): %s", what, exc)
        else:
            if again is not None and again(result):
                continue
        await _pause(seconds, wake)


async def _pause(seconds: float, wake: asyncio.Event | None) -> None:
    if wake is None:
        await asyncio.sleep(seconds)
        return
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(wake.wait(), seconds)
    wake.clear()
