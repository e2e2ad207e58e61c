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

import logging
import os
import sqlite3
import time as _time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from orchestrator.errors import ConnectorError
from orchestrator.plugins.connectors import ERASED_TITLE, CallContext, ConnectorResult, ErasureContext

from .calendar_base import (
    AGENDA_LIMIT,
    NO_SHOW,
    BookArgs,
    CalendarConnector,
    booking_value,
    no_booking,
    no_show_check,
)
from .slots import Interval, SlotRules
from .sqlite_file import SqliteFile

log = logging.getLogger("integrations.embedded_calendar")

ENV_PATH = "ORCHESTRATOR_CALENDAR_DB"
DEFAULT_PATH = Path("var") / "calendar.sqlite3"


class CalendarStorageError(ConnectorError):
    """The SQLite file could not be read or written; the flow takes its `error` route."""

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


MINE = "(calendar = ? OR calendar LIKE ?)"  # a calendar's bookings and its staff's: `EmbeddedCalendar._mine`
# a booking that holds its time: confirmed, or a no-show (staff marked it once its start had passed)
HELD = "status IN ('confirmed', 'no_show')"


class EmbeddedCalendar(SqliteFile, CalendarConnector):
    name = "calendar"
    schema = _SCHEMA
    label = "calendar"
    storage_error = CalendarStorageError

    def __init__(self, path: str | os.PathLike[str] | None = None, calendar_id: str = "embedded", **_: Any) -> None:
        super().__init__()
        self.path = Path(path) if path is not None else Path(os.environ.get(ENV_PATH) or DEFAULT_PATH).absolute()
        self.calendar_id = calendar_id

    # -- storage ---------------------------------------------------------------------------
    @property
    def _mine(self) -> tuple[str, str]:
        """The parameters of `MINE`: this calendar and its staff's (`<calendar id>/<staff id>`)."""
        return self.calendar_id, self.calendar_id + "/%"

    def staff_calendar(self, staff_id: str, member: Any) -> str:
        return f"{self.calendar_id}/{staff_id}"

    def _busy(self, conn: sqlite3.Connection, window: Interval, exclude: str | None = None,
              calendar: str | None = None) -> list[Interval]:
        rows = conn.execute(
            f"SELECT id, start_ts, end_ts FROM bookings WHERE calendar = ? AND {HELD}"
            " AND start_ts < ? AND end_ts > ?",
            (calendar or self.calendar_id, int(window[1].timestamp()), int(window[0].timestamp())),
        ).fetchall()
        return [
            (datetime.fromtimestamp(r["start_ts"], UTC), datetime.fromtimestamp(r["end_ts"], UTC))
            for r in rows
            if r["id"] != exclude
        ]

    def _value(self, row: Any) -> dict[str, Any]:
        value = booking_value(row["id"], datetime.fromtimestamp(row["start_ts"], UTC),
                              datetime.fromtimestamp(row["end_ts"], UTC), ZoneInfo(row["tz"]), self.calendar_id,
                              row["title"])
        _, slash, staff = str(row["calendar"] or "").partition("/")
        return {**value, "staff": staff} if slash else value

    # -- storage hooks -----------------------------------------------------------------------
    async def busy_in(self, window: Interval, calendar: str | None = None) -> list[Interval]:
        return await self._thread("find_slots", self._read_busy, window, calendar)

    def _read_busy(self, window: Interval, calendar: str | None) -> list[Interval]:
        conn = self._connect()
        try:
            return self._busy(conn, window, calendar=calendar)
        finally:
            conn.close()

    async def insert_booking(
        self, args: BookArgs, ctx: CallContext, slot: Interval, rules: SlotRules, calendar: str | None = None
    ) -> ConnectorResult:
        row = {
            "id": uuid.uuid4().hex,
            "calendar": calendar or self.calendar_id,
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
        return await self._thread("book", self._book_sync, row, slot, rules.buffer)

    def _book_sync(self, row: dict[str, Any], slot: Interval, buffer: timedelta) -> ConnectorResult:
        try:
            with self._write() as conn:
                mine = conn.execute(
                    "SELECT * FROM bookings WHERE calendar = ? AND status = 'confirmed' AND session_id = ?"
                    " AND start_ts = ?",
                    (row["calendar"], row["session_id"], row["start_ts"]),
                ).fetchone()
                if mine is not None:  # the same conversation asking again: idempotent
                    return ConnectorResult(outcome="ok", value=self._value(mine), detail="already booked")
                if self._busy(conn, (slot[0] - buffer, slot[1] + buffer), calendar=row["calendar"]):
                    return ConnectorResult(outcome="conflict", detail="the slot was just taken")
                conn.execute(
                    "INSERT INTO bookings (id, calendar, start_ts, end_ts, tz, title, name, reason, phone,"
                    " session_id, created_ts) VALUES (:id, :calendar, :start_ts, :end_ts, :tz, :title, :name,"
                    " :reason, :phone, :session_id, :created_ts)",
                    row,
                )
        except sqlite3.IntegrityError:  # the unique index caught a race the check did not
            return ConnectorResult(outcome="conflict", detail="the slot was just taken")
        log.info("embedded calendar: booked %s at %s", row["id"], slot[0].isoformat())
        return ConnectorResult(outcome="ok", value=self._value(row))

    async def cancel_booking(self, booking_id: str, ctx: CallContext) -> ConnectorResult:
        return await self._thread("cancel", self._cancel_sync, booking_id, ctx.contact)

    def _owned(self, conn: sqlite3.Connection, booking_id: str, contact: str) -> sqlite3.Row | None:
        """The booking if it exists, belongs to this calendar and to this contact, and is not a
        no-show (staff's record that the visit was missed: the contact cannot cancel it away)."""
        row: sqlite3.Row | None = conn.execute(
            f"SELECT * FROM bookings WHERE id = ? AND {MINE}", (booking_id, *self._mine)
        ).fetchone()
        if row is None or (row["phone"] and contact and row["phone"] != contact) or row["status"] == NO_SHOW:
            return None
        return row

    def _cancel_sync(self, booking_id: str, contact: str) -> ConnectorResult:
        with self._write() as conn:
            row = self._owned(conn, booking_id, contact)
            if row is None:
                return no_booking()
            conn.execute("UPDATE bookings SET status = 'cancelled' WHERE id = ?", (booking_id,))
        return ConnectorResult(outcome="ok", value={**self._value(row), "status": "cancelled"})

    async def move_booking(
        self, booking_id: str, ctx: CallContext, slot: Interval, rules: SlotRules
    ) -> ConnectorResult:
        return await self._thread("reschedule", self._reschedule_sync, booking_id, ctx.contact, slot, rules.buffer,
                                  rules.tz)

    def _reschedule_sync(
        self, booking_id: str, contact: str, slot: Interval, buffer: timedelta, tz: ZoneInfo
    ) -> ConnectorResult:
        try:
            with self._write() as conn:
                row = self._owned(conn, booking_id, contact)
                if row is None or row["status"] != "confirmed":
                    return no_booking()
                if self._busy(conn, (slot[0] - buffer, slot[1] + buffer), exclude=booking_id,
                              calendar=row["calendar"]):
                    return ConnectorResult(outcome="conflict", detail="the new slot is taken")
                conn.execute(
                    "UPDATE bookings SET start_ts = ?, end_ts = ?, tz = ? WHERE id = ?",
                    (int(slot[0].timestamp()), int(slot[1].timestamp()), tz.key, booking_id),
                )
                updated = conn.execute("SELECT * FROM bookings WHERE id = ?", (booking_id,)).fetchone()
        except sqlite3.IntegrityError:
            return ConnectorResult(outcome="conflict", detail="the new slot is taken")
        return ConnectorResult(outcome="ok", value=self._value(updated))

    async def agenda(self, window: Interval, limit: int = AGENDA_LIMIT) -> list[dict[str, Any]]:
        rows = await self._thread("agenda", self._agenda_sync, int(window[0].timestamp()),
                                  int(window[1].timestamp()), limit)
        return [{**self._value(r), "status": r["status"], "name": r["name"], "phone": r["phone"],
                 "reason": r["reason"], "session_id": r["session_id"]} for r in rows]

    def _agenda_sync(self, since: int, until: int, limit: int) -> list[sqlite3.Row]:
        conn = self._connect()
        try:
            return conn.execute(
                f"SELECT * FROM bookings WHERE {MINE} AND {HELD} AND start_ts >= ? AND start_ts < ?"
                " ORDER BY start_ts LIMIT ?",
                (*self._mine, since, until, limit),
            ).fetchall()
        finally:
            conn.close()

    async def mark_no_show(self, booking_id: str, now: float | None = None) -> dict[str, Any] | None:
        return await self._thread("mark_no_show", self._no_show_sync, booking_id,
                                  _time.time() if now is None else now)

    def _no_show_sync(self, booking_id: str, now: float) -> dict[str, Any] | None:
        with self._write() as conn:
            row = conn.execute(f"SELECT * FROM bookings WHERE id = ? AND {MINE}", (booking_id, *self._mine)).fetchone()
            if row is None:
                return None
            no_show_check(booking_id, row["status"], datetime.fromtimestamp(row["start_ts"], UTC),
                          datetime.fromtimestamp(now, UTC))
            if row["status"] != NO_SHOW:
                conn.execute("UPDATE bookings SET status = ? WHERE id = ?", (NO_SHOW, booking_id))
                log.info("embedded calendar: booking %s marked a no-show", booking_id)
        return {**self._value(row), "status": NO_SHOW, "session_id": row["session_id"]}

    async def upcoming(self, phone: str, ctx: CallContext) -> list[dict[str, Any]]:
        rows = await self._thread("list_bookings", self._list_sync, phone, int(ctx.now))
        return [self._value(r) for r in rows]

    def _list_sync(self, phone: str, now_ts: int) -> list[sqlite3.Row]:
        conn = self._connect()
        try:
            return conn.execute(
                f"SELECT * FROM bookings WHERE {MINE} AND status = 'confirmed' AND phone = ? AND end_ts > ?"
                " ORDER BY start_ts",
                (*self._mine, phone, now_ts),
            ).fetchall()
        finally:
            conn.close()

    # -- erasure (admin DELETE / GET /api/contacts/{phone}) ----------------------------------
    async def erase_contact(self, phone: str, ctx: ErasureContext) -> int:
        """Pseudonymise this calendar's bookings of `phone`: the slot stays taken (time, status),
        the title, name, reason, phone and session id (which holds the phone) are cleared."""
        return await self._thread("erase_contact", self._erase_sync, phone)

    def _erase_sync(self, phone: str) -> int:
        with self._write() as conn:
            changed = conn.execute(
                "UPDATE bookings SET title = ?, name = NULL, reason = NULL, phone = NULL, session_id = NULL"
                f" WHERE {MINE} AND (phone = ? OR session_id LIKE '%:' || ?)",
                (ERASED_TITLE, *self._mine, phone, phone),
            ).rowcount
        return int(changed)

    async def export_contact(self, phone: str, ctx: ErasureContext) -> list[dict[str, Any]]:
        rows = await self._thread("export_contact", self._export_sync, phone)
        return [{**self._value(r), "status": r["status"], "name": r["name"], "reason": r["reason"],
                 "phone": r["phone"]} for r in rows]

    def _export_sync(self, phone: str) -> list[sqlite3.Row]:
        conn = self._connect()
        try:
            return conn.execute(
                f"SELECT * FROM bookings WHERE {MINE} AND (phone = ? OR session_id LIKE '%:' || ?)"
                " ORDER BY start_ts", (*self._mine, phone, phone),
            ).fetchall()
        finally:
            conn.close()
