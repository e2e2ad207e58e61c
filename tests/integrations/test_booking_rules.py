"""Booking rules owners set (issue #18): each person's own hours and days off, how far ahead
the diary is open (`max_ahead`), visits a day (`max_per_day`), the `resource:` name for
staff. The same on the embedded calendar and on Google Calendar (the real client against the
fake server); "now" is Wednesday 25 November 2026, 12:00 in New York."""

from __future__ import annotations

import json
from typing import Any

from conn_helpers import make_ctx

from integrations.calendar_base import BookArgs, CalendarConnector, FindSlotsArgs
from orchestrator.flow.schema import BusinessHours, StaffMember
from orchestrator.plugins.connectors import CallContext

THU_TEN = "2026-11-26T10:00:00-05:00"
ANA_AFTERNOONS = StaffMember(name="Ana", calendar="ana@salon.test",
                             hours=BusinessHours(tue="12:00-18:00", wed="12:00-18:00", thu="12:00-18:00"))
LUIS = StaffMember(name="Luis", calendar="luis@salon.test")



def ctx(contact: str, **settings: Any) -> CallContext:
    return make_ctx(session_id=f"biz:{contact}", contact=contact, **settings)


def starts(result: Any) -> list[str]:
    return [s["start"] for s in result.value]


async def test_a_person_is_offered_and_booked_only_within_their_own_hours(
        salon: tuple[CalendarConnector, Any]) -> None:
    calendar, _ = salon
    staff = {"ana": ANA_AFTERNOONS, "luis": LUIS}
    ana = await calendar.find_slots(FindSlotsArgs(around=THU_TEN, count=2, staff="ana"), ctx("+1555", staff=staff))
    assert ana.outcome == "ok" and ana.closed is None  # she works Thursdays, from noon
    assert [s["label"] for s in ana.value] == ["Thu 26 Nov, 12:00 PM · Ana", "Thu 26 Nov, 12:30 PM · Ana"]
    anyone = await calendar.find_slots(FindSlotsArgs(around=THU_TEN, count=1), ctx("+1555", staff=staff))
    assert anyone.value[0]["label"] == "Thu 26 Nov, 10:00 AM · Luis"  # the business opens at 8, Luis with it
    refused = await calendar.book(BookArgs(slot=THU_TEN, resource="Ana"), ctx("+1555", staff=staff))
    assert refused.outcome == "conflict" and "Ana" in str(refused.detail) and "opening hours" in str(refused.detail)
    made = await calendar.book(BookArgs(slot=json.dumps(ana.value[0])), ctx("+1555", staff=staff))
    assert made.outcome == "ok" and made.value["staff"] == "ana"


async def test_a_day_off_is_said_when_that_person_is_asked_for(salon: tuple[CalendarConnector, Any]) -> None:
    calendar, _ = salon
    staff = {"ana": StaffMember(name="Ana", calendar="ana@salon.test", days_off=["2026-11-26"]), "luis": LUIS}
    ana = await calendar.find_slots(FindSlotsArgs(around=THU_TEN, count=3, resource="ana"), ctx("+1555", staff=staff))
    assert ana.outcome == "ok" and (ana.closed, ana.closed_for) == ("2026-11-26", "Ana")
    assert all(not s.startswith("2026-11-26") for s in starts(ana)) and {s["staff"] for s in ana.value} == {"ana"}
    anyone = await calendar.find_slots(FindSlotsArgs(around=THU_TEN, count=1), ctx("+1555", staff=staff))
    assert anyone.closed is None and anyone.value[0]["label"] == "Thu 26 Nov, 10:00 AM · Luis"
    refused = await calendar.book(BookArgs(slot=THU_TEN, staff="ana"), ctx("+1555", staff=staff))
    assert refused.outcome == "conflict" and "closed on 2026-11-26" in str(refused.detail)


async def test_nothing_past_max_ahead_is_offered_or_booked(salon: tuple[CalendarConnector, Any]) -> None:
    calendar, _ = salon
    far = await calendar.find_slots(FindSlotsArgs(around="2026-12-20T10:00:00-05:00", count=2),
                                    ctx("+1555", max_ahead="7d"))
    assert far.outcome == "ok" and far.too_far == "2026-12-02" and far.closed is None
    assert starts(far) == ["2026-12-02T11:30:00-05:00", "2026-12-02T12:00:00-05:00"]  # the latest: now + 7 days
    near = await calendar.find_slots(FindSlotsArgs(around=THU_TEN, count=1), ctx("+1555", max_ahead="7d"))
    assert near.too_far is None and starts(near) == [THU_TEN]
    refused = await calendar.book(BookArgs(slot="2026-12-10T10:00:00-05:00"), ctx("+1555", max_ahead="7d"))
    assert refused.outcome == "conflict" and "max_ahead" in str(refused.detail)
    unlimited = await calendar.find_slots(FindSlotsArgs(around="2026-12-20T10:00:00-05:00", count=1), ctx("+1555"))
    assert unlimited.too_far is None and unlimited.closed == "2026-12-20"  # no limit: a Sunday, so closed
    assert starts(unlimited)[0].startswith("2026-12-19")


async def test_a_day_holding_max_per_day_visits_is_full(salon: tuple[CalendarConnector, Any]) -> None:
    calendar, fake = salon
    rules = {"max_per_day": 2}
    for contact, at in (("+1551", THU_TEN), ("+1552", "2026-11-26T15:00:00-05:00")):
        made = await calendar.book(BookArgs(slot=at), ctx(contact, **rules))
        assert made.outcome == "ok", made
    again = await calendar.book(BookArgs(slot=THU_TEN), ctx("+1551", **rules))
    assert again.outcome == "ok"  # the same conversation booking its own slot again is not a third visit
    found = await calendar.find_slots(FindSlotsArgs(around=THU_TEN, count=3), ctx("+1553", **rules))
    assert found.outcome == "ok" and not any(s.startswith("2026-11-26") for s in starts(found))
    refused = await calendar.book(BookArgs(slot="2026-11-26T12:00:00-05:00"), ctx("+1553", **rules))
    assert refused.outcome == "conflict" and "fully booked" in str(refused.detail)
    friday = await calendar.find_slots(FindSlotsArgs(around="2026-11-27T10:00:00-05:00", count=1),
                                       ctx("+1553", **rules))
    assert starts(friday) == ["2026-11-27T10:00:00-05:00"]
    if fake is not None:  # on Google the owner's own events that day are visits too
        fake.add_event("front@salon.test", "2026-11-27T08:00:00-05:00", "2026-11-27T08:30:00-05:00")
        fake.add_event("front@salon.test", "2026-11-27T08:30:00-05:00", "2026-11-27T09:00:00-05:00")
        full = await calendar.find_slots(FindSlotsArgs(around="2026-11-27T10:00:00-05:00", count=1),
                                         ctx("+1553", **rules))
        assert not starts(full)[0].startswith("2026-11-27")


async def test_max_per_day_counts_each_persons_visits(salon: tuple[CalendarConnector, Any]) -> None:
    calendar, _ = salon
    rules: dict[str, Any] = {"max_per_day": 1, "staff": {"ana": StaffMember(name="Ana", calendar="ana@salon.test"),
                                                         "luis": LUIS}}
    made = await calendar.book(BookArgs(slot=THU_TEN, staff="ana"), ctx("+1551", **rules))
    assert made.outcome == "ok"
    found = await calendar.find_slots(FindSlotsArgs(around="2026-11-26T14:00:00-05:00", count=2),
                                      ctx("+1552", **rules))
    assert [s["label"] for s in found.value] == ["Thu 26 Nov, 2:00 PM · Luis", "Thu 26 Nov, 2:30 PM · Luis"]
