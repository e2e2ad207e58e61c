"""The embedded calendar: bookings in one SQLite file, safe across processes.

Never a lost or double booking: `book` and `reschedule` run their "is it still free?"
check and their write inside one `BEGIN IMMEDIATE` transaction, which takes SQLite's
write lock before reading, so two processes racing for a slot are serialised and the
second sees the first's row and gets `conflict`. A partial unique index on
(calendar, start) backs this up. Booking again from the same conversation (session id)
the same slot returns the existing booking: retries and duplicate webhooks are harmless.

    calendar = EmbeddedCalendar()                      # $ORCHESTRATOR_CALENDAR_DB or var/calendar.sqlite3
    calendar = EmbeddedCalendar(path="/tmp/x.sqlite3")
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import time as _time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from orchestrator.connectors import CallContext, ConnectorResult

from .calendar_base import (
    BookArgs,
    CalendarConnector,
    CancelArgs,
    FindSlotsArgs,
    ListArgs,
    RescheduleArgs,
    bad_args,
    booking_id_of,
    now_of,
    rules_for,
)
from .slots import (
    Interval,
    SlotError,
    coerce_slot,
    find_free,
    is_bookable,
    label,
    parse_around,
    search_window,
    slot_value,
)

log = logging.getLogger("integrations.embedded_calendar")

ENV_PATH = "ORCHESTRATOR_CALENDAR_DB"
DEFAULT_PATH = Path("var") / "calendar.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS bookings (
    id TEXT PRIMARY KEY,
    calendar TEXT NOT NULL,
    start_ts INTEGER NOT NULL,
    end_ts INTEGER NOT NULL,
    tz TEXT NOT NULL,
    title TEXT NOT NULL DEFAULT '',
    name TEXT,
    reason TEXT,
    phone TEXT,
    session_id TEXT,
    status TEXT NOT NULL DEFAULT 'confirmed',
    created_ts REAL NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS bookings_one_per_start ON bookings (calendar, start_ts) WHERE status = 'confirmed';
CREATE INDEX IF NOT EXISTS bookings_by_time ON bookings (calendar, status, start_ts);
CREATE INDEX IF NOT EXISTS bookings_by_phone ON bookings (phone, start_ts);
"""


class EmbeddedCalendar(CalendarConnector):
    name = "calendar"

    def __init__(self, path: str | os.PathLike[str] | None = None, calendar_id: str = "embedded", **_: Any) -> None:
        super().__init__()
        self.path = Path(path) if path is not None else Path(os.environ.get(ENV_PATH) or DEFAULT_PATH).absolute()
        self.calendar_id = calendar_id
        self._ready = False

    # -- storage ---------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        if not self._ready:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA busy_timeout = 30000")
        if not self._ready:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.executescript(_SCHEMA)
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

    def _busy(self, conn: sqlite3.Connection, window: Interval, exclude: str | None = None) -> list[Interval]:
        rows = conn.execute(
            "SELECT id, start_ts, end_ts FROM bookings WHERE calendar = ? AND status = 'confirmed'"
            " AND start_ts < ? AND end_ts > ?",
            (self.calendar_id, int(window[1].timestamp()), int(window[0].timestamp())),
        ).fetchall()
        return [
            (datetime.fromtimestamp(r["start_ts"], UTC), datetime.fromtimestamp(r["end_ts"], UTC))
            for r in rows
            if r["id"] != exclude
        ]

    def _value(self, row: Any) -> dict[str, Any]:
        tz = ZoneInfo(row["tz"])
        start = datetime.fromtimestamp(row["start_ts"], UTC).astimezone(tz)
        end = datetime.fromtimestamp(row["end_ts"], UTC).astimezone(tz)
        return {
            "id": row["id"],
            "start": start.isoformat(),
            "end": end.isoformat(),
            "label": label(start, tz),
            "calendar": self.calendar_id,
            "title": row["title"],
        }

    # -- actions ---------------------------------------------------------------------------
    async def find_slots(self, args: FindSlotsArgs, ctx: CallContext) -> ConnectorResult:
        try:
            rules = rules_for(ctx, args.duration)
            around = parse_around(args.around, rules.tz)
        except (SlotError, ValueError) as exc:
            return bad_args(exc)
        now = now_of(ctx)
        window = search_window(rules, now, around)
        pad = rules.buffer + rules.duration
        busy = await asyncio.to_thread(self._read_busy, (window[0] - pad, window[1] + pad))
        slots = find_free(rules, busy, now, around, args.count)
        if not slots:
            return ConnectorResult(outcome="empty", detail=f"no free slot within {rules.horizon.days} days")
        return ConnectorResult(outcome="ok", value=[slot_value(s, rules.tz) for s in slots])

    def _read_busy(self, window: Interval) -> list[Interval]:
        conn = self._connect()
        try:
            return self._busy(conn, window)
        finally:
            conn.close()

    async def book(self, args: BookArgs, ctx: CallContext) -> ConnectorResult:
        try:
            rules = rules_for(ctx, args.duration)
            slot = coerce_slot(args.slot, rules.tz, rules.duration)
        except (SlotError, ValueError) as exc:
            return bad_args(exc)
        why_not = is_bookable(rules, slot, now_of(ctx))
        if why_not:
            return ConnectorResult(outcome="conflict", detail=why_not)
        row = {
            "id": uuid.uuid4().hex,
            "calendar": self.calendar_id,
            "start_ts": int(slot[0].timestamp()),
            "end_ts": int(slot[1].timestamp()),
            "tz": rules.tz.key,
            "title": args.title,
            "name": args.name,
            "reason": args.reason,
            "phone": args.phone or ctx.contact,
            "session_id": ctx.session_id,
            "created_ts": _time.time(),
        }
        return await asyncio.to_thread(self._book_sync, row, slot, rules.buffer)

    def _book_sync(self, row: dict[str, Any], slot: Interval, buffer: timedelta) -> ConnectorResult:
        try:
            with self._write() as conn:
                mine = conn.execute(
                    "SELECT * FROM bookings WHERE calendar = ? AND status = 'confirmed' AND session_id = ?"
                    " AND start_ts = ?",
                    (self.calendar_id, row["session_id"], row["start_ts"]),
                ).fetchone()
                if mine is not None:  # the same conversation asking again: idempotent
                    return ConnectorResult(outcome="ok", value=self._value(mine), detail="already booked")
                if self._busy(conn, (slot[0] - buffer, slot[1] + buffer)):
                    return ConnectorResult(outcome="conflict", detail="the slot was just taken")
                conn.execute(
                    "INSERT INTO bookings (id, calendar, start_ts, end_ts, tz, title, name, reason, phone,"
                    " session_id, created_ts) VALUES (:id, :calendar, :start_ts, :end_ts, :tz, :title, :name,"
                    " :reason, :phone, :session_id, :created_ts)",
                    row,
                )
        except sqlite3.IntegrityError:  # the unique index caught a race the check did not
            return ConnectorResult(outcome="conflict", detail="the slot was just taken")
        except sqlite3.Error as exc:
            log.error("embedded calendar %s: booking failed: %s", self.path, exc)
            return ConnectorResult(outcome="error", detail=f"calendar storage failed: {exc}")
        log.info("embedded calendar: booked %s at %s", row["id"], slot[0].isoformat())
        return ConnectorResult(outcome="ok", value=self._value(row))

    async def cancel(self, args: CancelArgs, ctx: CallContext) -> ConnectorResult:
        try:
            booking_id = booking_id_of(args.booking_id)
        except SlotError as exc:
            return bad_args(exc)
        return await asyncio.to_thread(self._cancel_sync, booking_id, ctx.contact)

    def _owned(self, conn: sqlite3.Connection, booking_id: str, contact: str) -> sqlite3.Row | None:
        """The booking if it exists, belongs to this calendar and to this contact."""
        row: sqlite3.Row | None = conn.execute(
            "SELECT * FROM bookings WHERE id = ? AND calendar = ?", (booking_id, self.calendar_id)
        ).fetchone()
        if row is None or (row["phone"] and contact and row["phone"] != contact):
            return None
        return row

    def _cancel_sync(self, booking_id: str, contact: str) -> ConnectorResult:
        with self._write() as conn:
            row = self._owned(conn, booking_id, contact)
            if row is None:
                return ConnectorResult(outcome="empty", detail="no such booking for this contact")
            conn.execute("UPDATE bookings SET status = 'cancelled' WHERE id = ?", (booking_id,))
        return ConnectorResult(outcome="ok", value={**self._value(row), "status": "cancelled"})

    async def reschedule(self, args: RescheduleArgs, ctx: CallContext) -> ConnectorResult:
        try:
            booking_id = booking_id_of(args.booking_id)
            rules = rules_for(ctx)
            slot = coerce_slot(args.slot, rules.tz, rules.duration)
        except (SlotError, ValueError) as exc:
            return bad_args(exc)
        why_not = is_bookable(rules, slot, now_of(ctx))
        if why_not:
            return ConnectorResult(outcome="conflict", detail=why_not)
        return await asyncio.to_thread(self._reschedule_sync, booking_id, ctx.contact, slot, rules.buffer, rules.tz)

    def _reschedule_sync(
        self, booking_id: str, contact: str, slot: Interval, buffer: timedelta, tz: ZoneInfo
    ) -> ConnectorResult:
        try:
            with self._write() as conn:
                row = self._owned(conn, booking_id, contact)
                if row is None or row["status"] != "confirmed":
                    return ConnectorResult(outcome="empty", detail="no such booking for this contact")
                if self._busy(conn, (slot[0] - buffer, slot[1] + buffer), exclude=booking_id):
                    return ConnectorResult(outcome="conflict", detail="the new slot is taken")
                conn.execute(
                    "UPDATE bookings SET start_ts = ?, end_ts = ?, tz = ? WHERE id = ?",
                    (int(slot[0].timestamp()), int(slot[1].timestamp()), tz.key, booking_id),
                )
                updated = conn.execute("SELECT * FROM bookings WHERE id = ?", (booking_id,)).fetchone()
        except sqlite3.IntegrityError:
            return ConnectorResult(outcome="conflict", detail="the new slot is taken")
        return ConnectorResult(outcome="ok", value=self._value(updated))

    async def list_bookings(self, args: ListArgs, ctx: CallContext) -> ConnectorResult:
        phone = args.phone or ctx.contact
        rows = await asyncio.to_thread(self._list_sync, phone, int(ctx.now))
        if not rows:
            return ConnectorResult(outcome="empty", detail="no upcoming booking")
        return ConnectorResult(outcome="ok", value=[self._value(r) for r in rows])

    def _list_sync(self, phone: str, now_ts: int) -> list[sqlite3.Row]:
        conn = self._connect()
        try:
            return conn.execute(
                "SELECT * FROM bookings WHERE calendar = ? AND status = 'confirmed' AND phone = ? AND end_ts > ?"
                " ORDER BY start_ts",
                (self.calendar_id, phone, now_ts),
            ).fetchall()
        finally:
            conn.close()
