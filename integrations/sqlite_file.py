"""One SQLite file shared by processes: the embedded connectors' storage (calendar, CRM).

WAL journal, a 30 s busy timeout, the schema created on first use (never at construction:
an unused connector makes no file). Writes run in `BEGIN IMMEDIATE` transactions, which take
SQLite's write lock before the first read, so a check-then-write is atomic across processes.
Every operation runs in a worker thread; a storage failure is logged and raised as the
subclass's `storage_error` (a ConnectorError: the flow takes its `error` route).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from orchestrator.errors import ConnectorError

log = logging.getLogger("integrations.sqlite_file")
T = TypeVar("T")


class SqliteFile:
    schema: ClassVar[str] = ""
    label: ClassVar[str] = "sqlite"  # names the connector in errors: "calendar book: storage failed"
    storage_error: ClassVar[type[ConnectorError]] = ConnectorError
    path: Path
    _ready: bool = False

    def _connect(self) -> sqlite3.Connection:
        if not self._ready:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA busy_timeout = 30000")
        if not self._ready:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.executescript(self.schema)
            self._ready = True
        return conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction holding SQLite's write lock from its first statement."""
        conn = self._connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        finally:
            conn.close()

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        conn = self._connect()
        try:
            yield conn
        finally:
            conn.close()

    async def _thread(self, op: str, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` in a worker thread; a storage failure is logged and raised as `storage_error`."""
        try:
            return await asyncio.to_thread(fn, *args)
        except (sqlite3.Error, OSError) as exc:  # OSError: the file's folder cannot be made
            log.error("embedded %s %s: %s failed: %s", self.label, self.path, op, exc)
            raise self.storage_error(f"{self.label} {op}: storage failed ({type(exc).__name__}: {exc})") from None
