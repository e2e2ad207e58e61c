"""The embedded SQLite calendar: find, book (atomic, idempotent), cancel, reschedule, list."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conn_helpers import CtxFactory

from integrations.calendar_base import BookArgs, CancelArgs, FindSlotsArgs, ListArgs, RescheduleArgs
from integrations.embedded_calendar import EmbeddedCalendar
from orchestrator.plugins.connectors import ConnectorRegistry

SLOT = {"start": "2026-11-26T10:00:00-05:00", "end": "2026-11-26T10:30:00-05:00", "label": "Thu 26 Nov, 10:00 AM"}


async def test_find_book_and_find_again(calendar: EmbeddedCalendar, ctx_factory: CtxFactory) -> None:
    ctx = ctx_factory()
    found = await calendar.find_slots(FindSlotsArgs(around="2026-11-26T10:00:00-05:00"), ctx)
    assert found.outcome == "ok" and found.value[0] == SLOT
    booked = await calendar.book(BookArgs(slot=found.value[0], title="Cleaning - Ann"), ctx)
    assert booked.outcome == "ok"
    assert {k: booked.value[k] for k in ("start", "end", "label", "calendar")} == {**SLOT, "calendar": "embedded"}
    again = await calendar.find_slots(FindSlotsArgs(around="2026-11-26T10:00:00-05:00"), ctx)
    assert [s["label"] for s in again.value] == ["Thu 26 Nov, 10:30 AM", "Thu 26 Nov, 11:00 AM", "Thu 26 Nov, 11:30 AM"]


async def test_same_conversation_booking_twice_gets_the_same_booking(
    calendar: EmbeddedCalendar, ctx_factory: CtxFactory
) -> None:
    ctx = ctx_factory()
    first = await calendar.book(BookArgs(slot=SLOT), ctx)
    second = await calendar.book(BookArgs(slot=str(SLOT)), ctx)  # as a template renders a mapping
    assert first.outcome == second.outcome == "ok" and first.value["id"] == second.value["id"]
    listed = await calendar.list_bookings(ListArgs(), ctx)
    assert [b["id"] for b in listed.value] == [first.value["id"]]


async def test_another_conversation_gets_conflict(calendar: EmbeddedCalendar, ctx_factory: CtxFactory) -> None:
    assert (await calendar.book(BookArgs(slot=SLOT), ctx_factory())).outcome == "ok"
    other = ctx_factory(session_id="biz:+15550002222", contact="+15550002222")
    result = await calendar.book(BookArgs(slot=SLOT["start"]), other)
    assert result.outcome == "conflict"
    overlapping = await calendar.book(BookArgs(slot="2026-11-26T10:15:00-05:00"), other)  # off-grid overlap
    assert overlapping.outcome == "conflict"


async def test_buffer_applies_to_booking(calendar: EmbeddedCalendar, ctx_factory: CtxFactory) -> None:
    assert (await calendar.book(BookArgs(slot=SLOT), ctx_factory(buffer="15m"))).outcome == "ok"
    other = ctx_factory(session_id="b", contact="+15550002222", buffer="15m")
    assert (await calendar.book(BookArgs(slot="2026-11-26T10:30:00-05:00"), other)).outcome == "conflict"
    assert (await calendar.book(BookArgs(slot="2026-11-26T11:00:00-05:00"), other)).outcome == "ok"


async def test_outside_hours_or_past_is_refused(calendar: EmbeddedCalendar, ctx_factory: CtxFactory) -> None:
    ctx = ctx_factory()
    assert (await calendar.book(BookArgs(slot="2026-11-26T19:00:00-05:00"), ctx)).outcome == "conflict"
    assert (await calendar.book(BookArgs(slot="2026-11-24T10:00:00-05:00"), ctx)).outcome == "conflict"
    bad = await calendar.book(BookArgs(slot="thursday"), ctx)
    assert bad.outcome == "error" and "not an ISO" in (bad.detail or "")


async def test_cancel_reschedule_list(calendar: EmbeddedCalendar, ctx_factory: CtxFactory) -> None:
    ctx = ctx_factory()
    assert (await calendar.list_bookings(ListArgs(), ctx)).outcome == "empty"
    booking = (await calendar.book(BookArgs(slot=SLOT), ctx)).value
    blocker = ctx_factory(session_id="b", contact="+15550002222")
    assert (await calendar.book(BookArgs(slot="2026-11-26T11:00:00-05:00"), blocker)).outcome == "ok"

    # another contact can neither cancel nor move it
    assert (await calendar.cancel(CancelArgs(booking_id=booking["id"]), blocker)).outcome == "empty"
    taken = await calendar.reschedule(RescheduleArgs(booking_id=booking, slot="2026-11-26T11:00:00-05:00"), ctx)
    assert taken.outcome == "conflict"
    moved = await calendar.reschedule(RescheduleArgs(booking_id=booking["id"], slot="2026-11-27T09:00"), ctx)
    assert moved.outcome == "ok" and moved.value["id"] == booking["id"]
    assert moved.value["label"] == "Fri 27 Nov, 9:00 AM"
    assert [b["label"] for b in (await calendar.list_bookings(ListArgs(), ctx)).value] == ["Fri 27 Nov, 9:00 AM"]

    assert (await calendar.cancel(CancelArgs(booking_id=booking["id"]), ctx)).outcome == "ok"
    assert (await calendar.list_bookings(ListArgs(), ctx)).outcome == "empty"
    # the freed slot is bookable by someone else
    assert (await calendar.book(BookArgs(slot="2026-11-27T09:00"), blocker)).outcome == "ok"


async def test_no_slot_in_horizon_is_empty(calendar: EmbeddedCalendar, ctx_factory: CtxFactory) -> None:
    from orchestrator.flow.schema import BusinessHours

    closed = BusinessHours(mon=None, tue=None, wed=None, thu=None, fri=None)
    result = await calendar.find_slots(FindSlotsArgs(), ctx_factory(business_hours=closed))
    assert result.outcome == "empty"


async def test_registry_call_and_entry_point(
    tmp_path: Path, ctx_factory: CtxFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORCHESTRATOR_CALENDAR_DB", str(tmp_path / "ep" / "cal.sqlite3"))
    registry = ConnectorRegistry()
    registry.load_entry_points()
    assert isinstance(registry.get("calendar"), EmbeddedCalendar)
    result = await registry.call("calendar.find_slots", {"around": "2026-11-26T10:00", "count": "2"},
                                 ctx_factory(), 5.0)
    assert [s["label"] for s in result.value] == ["Thu 26 Nov, 10:00 AM", "Thu 26 Nov, 10:30 AM"]
    assert (tmp_path / "ep" / "cal.sqlite3").exists()


_RACER = """
import asyncio, json, sys, time
sys.path[:0] = [{tests!r}]
from conn_helpers import make_ctx
from integrations.calendar_base import BookArgs
from integrations.embedded_calendar import EmbeddedCalendar
cal = EmbeddedCalendar(path={db!r})
ctx = make_ctx(session_id="racer-" + sys.argv[1], contact="+1555000" + sys.argv[1].zfill(4))
cal._connect().close()
while time.time() < {go}:
    time.sleep(0.001)
result = asyncio.run(cal.book(BookArgs(slot={slot!r}), ctx))
print(json.dumps({{"outcome": result.outcome, "id": (result.value or {{}}).get("id")}}))
"""


def test_processes_racing_for_one_slot_exactly_one_wins(tmp_path: Path) -> None:
    db = str(tmp_path / "race.sqlite3")
    EmbeddedCalendar(path=db)._connect().close()  # schema first, so racers only race on the booking
    n = 6
    code = _RACER.format(tests=str(Path(__file__).parent), db=db, go=time.time() + 2.0, slot=SLOT)
    procs = [subprocess.Popen([sys.executable, "-c", code, str(i)], stdout=subprocess.PIPE, text=True)
             for i in range(n)]
    results = [json.loads(p.communicate(timeout=60)[0]) for p in procs]
    outcomes = sorted(r["outcome"] for r in results)
    assert outcomes == ["conflict"] * (n - 1) + ["ok"], results
    rows = EmbeddedCalendar(path=db)._list_sync("+15550000000", 0) + [
        r for i in range(1, n) for r in EmbeddedCalendar(path=db)._list_sync(f"+1555000{i:04d}", 0)
    ]
    assert len(rows) == 1


async def test_storage_failures_are_the_error_outcome_with_a_log_line(
    tmp_path: Path, ctx_factory: CtxFactory, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "not-a-folder").write_text("")
    broken = EmbeddedCalendar(path=tmp_path / "not-a-folder" / "cal.sqlite3")
    ctx = ctx_factory()
    results = {
        "find_slots": await broken.find_slots(FindSlotsArgs(), ctx),
        "book": await broken.book(BookArgs(slot=SLOT), ctx),
        "cancel": await broken.cancel(CancelArgs(booking_id="b1"), ctx),
        "reschedule": await broken.reschedule(RescheduleArgs(booking_id="b1", slot=SLOT), ctx),
        "list_bookings": await broken.list_bookings(ListArgs(), ctx),
    }
    for op, result in results.items():
        assert result.outcome == "error" and f"calendar {op}: storage failed" in (result.detail or ""), op
        assert f"{op} failed" in caplog.text
    assert ctx.contact not in caplog.text


async def test_find_slots_on_a_closed_day_says_so(calendar: EmbeddedCalendar, ctx_factory: CtxFactory) -> None:
    from orchestrator.flow.schema import BusinessHours

    only_saturday = BusinessHours(mon=None, tue=None, wed=None, thu=None, fri=None, sat="09:00-13:00", sun=None)
    ctx = ctx_factory(business_hours=only_saturday, closed_dates=["2026-12-05"])
    monday = await calendar.find_slots(FindSlotsArgs(around="2026-11-30T10:00:00-05:00"), ctx)
    assert monday.outcome == "ok" and monday.closed == "2026-11-30"
    assert all(s["start"].startswith(("2026-11-28", "2026-12-12")) for s in monday.value)  # Saturdays only
    holiday = await calendar.find_slots(FindSlotsArgs(around="2026-12-05T10:00:00-05:00"), ctx)
    assert holiday.closed == "2026-12-05" and not any(s["start"].startswith("2026-12-05") for s in holiday.value)
    open_day = await calendar.find_slots(FindSlotsArgs(around="2026-11-28T10:00:00-05:00"), ctx)
    assert open_day.closed is None
    earliest = await calendar.find_slots(FindSlotsArgs(), ctx)  # no wanted time: nothing to say
    assert earliest.closed is None
