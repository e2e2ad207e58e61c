"""One turn per session at a time inside a process (`SessionGates`), the others queued in order."""

from __future__ import annotations

import asyncio
import collections


class SessionGates:
    """One turn per session at a time inside this process, the others queued in arrival order.

    Without it, every concurrent turn of a busy conversation polls the store's lock (Redis:
    a script call every 2-50 ms), costing CPU and round trips while one turn holds it; with
    it, only one turn per session per process contends for the store's lock and the rest
    wait here for a direct hand-over. An entry lives while its session has a turn running,
    so memory stays flat whatever the number of conversations."""

    def __init__(self) -> None:
        self._queues: dict[str, collections.deque[asyncio.Future[None]]] = {}

    async def acquire(self, key: str, timeout: float) -> bool:
        """Take `key`'s gate, waiting at most `timeout` s; False when the wait ran out (the
        gate is then not held). The caller must `release(key)` after a True."""
        waiters = self._queues.get(key)
        if waiters is None:  # nobody holds it: the usual case, no await
            self._queues[key] = collections.deque()
            return True
        loop = asyncio.get_running_loop()
        gate = loop.create_future()
        waiters.append(gate)
        expiry = loop.call_later(max(0.0, timeout), _expire, gate)
        try:
            await gate
        except TimeoutError:
            return False
        except BaseException:
            if gate.done() and not gate.cancelled() and gate.exception() is None:
                self.release(key)  # handed over just as this task was cancelled: pass it on
            raise
        finally:
            expiry.cancel()
        return True

    def release(self, key: str) -> None:
        """Hand the gate to the longest waiter still waiting, or drop the entry."""
        waiters = self._queues.get(key)
        if waiters is None:
            return
        while waiters:
            gate = waiters.popleft()
            if not gate.done():
                gate.set_result(None)
                return
        del self._queues[key]

    def __len__(self) -> int:
        return len(self._queues)


def _expire(gate: asyncio.Future[None]) -> None:
    if not gate.done():
        gate.set_exception(TimeoutError())
