"""Staff with calendars of their own (settings.staff, issue #18): a salon with two stylists books
two clients at 10:00, one with each; `staff:` picks one; an unknown one is an error. The same on
the embedded calendar and on Google Calendar (one calendar per stylist on the fake server)."""

from __future__ import annotations

import json
from typing import Any

from conn_helpers import make_ctx

from integrations.calendar_base import BookArgs, CalendarConnector, CancelArgs, FindSlotsArgs, ListArgs
from orchestrator.flow.schema import StaffMember
from orchestrator.plugins.connectors import CallContext

STAFF = {"ana": StaffMember(name="Ana", calendar="ana@salon.test"),
         "luis": StaffMember(name="Luis", calendar="luis@salon.test")}
TEN = "2026-11-26T10:00:00-05:00"


def ctx(contact: str, **extra: Any) -> CallContext:
    return make_ctx(session_id=f"biz:{contact}", contact=contact, staff=STAFF, **extra)



async def book_at_ten(calendar: CalendarConnector, contact: str, staff: str | None = None) -> dict[str, Any]:
    found = await calendar.find_slots(FindSlotsArgs(around=TEN, count=3, staff=staff), ctx(contact))
    assert found.outcome == "ok", found
    first = found.value[0]
    assert first["start"] == TEN
    made = await calendar.book(BookArgs(slot=json.dumps(first), name=contact), ctx(contact))
    assert made.outcome == "ok", made
    return {"offered": found.value, "booking": made.value}


async def test_two_stylists_take_two_clients_at_ten_then_ten_is_gone(salon: tuple[CalendarConnector, Any]) -> None:
    calendar, fake = salon
    ann = await book_at_ten(calendar, "+15550000001")
    assert [s["label"] for s in ann["offered"]] == [
        "Thu 26 Nov, 10:00 AM · Ana", "Thu 26 Nov, 10:30 AM · Ana", "Thu 26 Nov, 11:00 AM · Ana"]
    assert ann["booking"]["staff"] == "ana" and ann["booking"]["label"] == "Thu 26 Nov, 10:00 AM · Ana"
    bob = await book_at_ten(calendar, "+15550000002")
    assert bob["offered"][0]["label"] == "Thu 26 Nov, 10:00 AM · Luis"  # Ana is taken at 10:00, Luis is not
    assert bob["booking"]["staff"] == "luis"
    third = await calendar.find_slots(FindSlotsArgs(around=TEN, count=2), ctx("+15550000003"))
    assert [s["label"] for s in third.value] == ["Thu 26 Nov, 10:30 AM · Ana", "Thu 26 Nov, 11:00 AM · Ana"]
    if fake is not None:  # each stylist's booking is in their own Google calendar
        assert len(fake.events("ana@salon.test")) == 1 and len(fake.events("luis@salon.test")) == 1
        assert fake.events("front@salon.test") == []
    # the contact's own bookings are found, cancelled and moved in whichever calendar holds them
    [listed] = (await calendar.list_bookings(ListArgs(), ctx("+15550000002"))).value
    assert listed["id"] == bob["booking"]["id"]
    cancelled = await calendar.cancel(CancelArgs(booking_id=bob["booking"]["id"]), ctx("+15550000002"))
    assert cancelled.outcome == "ok"
    again = await calendar.find_slots(FindSlotsArgs(around=TEN, count=1, staff="luis"), ctx("+15550000004"))
    assert again.value[0]["label"] == "Thu 26 Nov, 10:00 AM · Luis"  # free again


async def test_a_named_stylist_only_and_an_unknown_one_is_an_error(salon: tuple[CalendarConnector, Any]) -> None:
    calendar, _ = salon
    await book_at_ten(calendar, "+15550000001", staff="luis")
    only_luis = await calendar.find_slots(FindSlotsArgs(around=TEN, count=2, staff="Luis"), ctx("+15550000002"))
    assert [s["label"] for s in only_luis.value] == ["Thu 26 Nov, 10:30 AM · Luis", "Thu 26 Nov, 11:00 AM · Luis"]
    unknown = await calendar.find_slots(FindSlotsArgs(around=TEN, staff="maria"), ctx("+15550000002"))
    assert unknown.outcome == "error" and "not one of settings.staff (ana, luis)" in (unknown.detail or "")
    no_staff = await calendar.find_slots(FindSlotsArgs(around=TEN, staff="ana"), make_ctx())
    assert no_staff.outcome == "error" and "declares no settings.staff" in (no_staff.detail or "")
