"""Slot arithmetic: opening hours, closures, notice, buffer, preference order, DST and far zones."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from conn_helpers import NY, WEEKDAYS_8_TO_6, at

from integrations.slots import (
    SlotError,
    SlotRules,
    coerce_slot,
    day_slots,
    find_free,
    is_bookable,
    label,
    parse_ranges,
    slot_value,
    zone,
)
from orchestrator.flow.schema import BusinessHours, Settings


def rules(tz: str = NY, **kw: object) -> SlotRules:
    kw.setdefault("business_hours", WEEKDAYS_8_TO_6)
    return SlotRules.from_settings(Settings(timezone=tz, **kw))  # type: ignore[arg-type]


def starts(slots: list[tuple[datetime, datetime]], tz: str = NY) -> list[str]:
    return [s.astimezone(zone(tz)).strftime("%a %d %H:%M") for s, _ in slots]


def test_same_day_at_or_after_the_wanted_time_comes_first() -> None:
    found = find_free(rules(), [], at("2026-11-25 12:00"), at("2026-11-26 15:00"), 3)
    assert starts(found) == ["Thu 26 15:00", "Thu 26 15:30", "Thu 26 16:00"]
    assert slot_value(found[0], zone(NY)) == {
        "start": "2026-11-26T15:00:00-05:00", "end": "2026-11-26T15:30:00-05:00", "label": "Thu 26 Nov, 3:00 PM",
    }


def test_late_wanted_time_is_filled_with_the_nearest_slots() -> None:
    found = find_free(rules(), [], at("2026-11-25 12:00"), at("2026-11-26 17:15"), 3)
    assert starts(found) == ["Thu 26 16:30", "Thu 26 17:00", "Thu 26 17:30"]


def test_no_wanted_time_gives_the_earliest_after_min_notice() -> None:
    found = find_free(rules(min_notice="1h"), [], at("2026-11-25 09:10"), None, 2)
    assert starts(found) == ["Wed 25 10:30", "Wed 25 11:00"]


def test_wanted_time_in_the_past_falls_back_to_the_earliest() -> None:
    found = find_free(rules(min_notice="2h"), [], at("2026-11-25 12:00"), at("2026-11-20 10:00"), 1)
    assert starts(found) == ["Wed 25 14:00"]


def test_weekend_and_closed_dates_are_skipped() -> None:
    after_close = find_free(rules(), [], at("2026-11-27 12:00"), at("2026-11-28 14:00"), 3)  # Sat closes 13:00
    assert starts(after_close) == ["Sat 28 11:30", "Sat 28 12:00", "Sat 28 12:30"]
    r = rules(closed_dates=["2026-11-28", "2026-11-30"])
    # Sunday 14:00 wanted: Tue 08:00 is 42 h away, Fri 17:30 is 44.5 h away
    found = find_free(r, [], at("2026-11-27 12:00"), at("2026-11-29 14:00"), 3)
    assert starts(found) == ["Tue 01 08:00", "Tue 01 08:30", "Tue 01 09:00"]
    assert list(day_slots(r, at("2026-11-30 00:00").date())) == []
    assert list(day_slots(r, at("2026-11-29 00:00").date())) == []  # Sunday: no hours


def test_saturday_hours_are_shorter() -> None:
    sat = list(day_slots(rules(), at("2026-11-28 00:00").date()))
    assert starts(sat)[0] == "Sat 28 09:00" and starts(sat)[-1] == "Sat 28 12:30" and len(sat) == 8


def test_buffer_keeps_a_gap_around_bookings() -> None:
    busy = [(at("2026-11-26 10:00"), at("2026-11-26 10:30"))]
    plain = find_free(rules(), busy, at("2026-11-25 12:00"), at("2026-11-26 09:30"), 3)
    assert starts(plain) == ["Thu 26 09:30", "Thu 26 10:30", "Thu 26 11:00"]
    buffered = find_free(rules(buffer="15m"), busy, at("2026-11-25 12:00"), at("2026-11-26 09:30"), 3)
    assert starts(buffered) == ["Thu 26 11:00", "Thu 26 11:30", "Thu 26 12:00"]


def test_longer_visits_must_end_before_closing() -> None:
    r = SlotRules.from_settings(Settings(timezone=NY, business_hours=WEEKDAYS_8_TO_6), NY, 3600)
    last = list(day_slots(r, at("2026-11-26 00:00").date()))[-1]
    assert starts([last]) == ["Thu 26 17:00"] and last[1] - last[0] == timedelta(hours=1)


def test_everything_closed_gives_no_slot() -> None:
    closed = BusinessHours(mon=None, tue=None, wed=None, thu=None, fri=None)
    assert find_free(rules(business_hours=closed), [], at("2026-11-25 12:00"), None, 3) == []


def test_split_hours_and_bad_ranges() -> None:
    assert len(parse_ranges("mon", "08:00-12:00, 13:00-17:00")) == 2
    assert parse_ranges("sun", "closed") == []
    with pytest.raises(SlotError, match=r"business_hours.mon: bad range '8am-5pm'"):
        parse_ranges("mon", "8am-5pm")
    with pytest.raises(SlotError, match="closes before it opens"):
        parse_ranges("tue", "17:00-09:00")


# -- DST: America/New_York falls back on Sun 2026-11-01 and springs forward on Sun 2026-03-08 --
def test_dst_fall_back_week_keeps_wall_clock_hours() -> None:
    r = rules()
    fri = next(iter(day_slots(r, at("2026-10-30 00:00").date())))[0]
    mon = next(iter(day_slots(r, at("2026-11-02 00:00").date())))[0]
    assert fri.astimezone(UTC).hour == 12 and mon.astimezone(UTC).hour == 13  # EDT, then EST
    # Sunday 10:00 wanted (closed): Mon 08:00 is 22 h away; Sat 12:30 EDT is 22.5 h away (25 h of wall clock
    # minus nothing: the night is 25 h long), tied with Mon 08:30 and earlier, so it wins the tie.
    found = find_free(r, [], at("2026-10-30 12:00"), at("2026-11-01 10:00"), 3)
    assert [slot_value(s, zone(NY))["start"] for s in found] == [
        "2026-10-31T12:30:00-04:00", "2026-11-02T08:00:00-05:00", "2026-11-02T08:30:00-05:00",
    ]


def test_dst_nights_have_the_real_number_of_slots() -> None:
    night = BusinessHours(sun="00:00-04:00")
    r = rules(business_hours=night)
    fall = list(day_slots(r, at("2026-11-01 00:00").date()))  # 5 real hours
    spring = list(day_slots(r, at("2026-03-08 00:00").date()))  # 3 real hours
    assert len(fall) == 10 and len(spring) == 6
    assert all(e - s == timedelta(minutes=30) for s, e in fall + spring)
    assert not any(s.astimezone(zone(NY)).hour == 2 for s, _ in spring)
    assert [label(s, zone(NY)) for s, _ in fall].count("Sun 1 Nov, 1:30 AM") == 2


def test_spring_forward_week() -> None:
    r = rules()
    found = find_free(r, [], at("2026-03-06 12:00"), at("2026-03-09 08:00"), 2)
    assert [slot_value(s, zone(NY))["start"] for s in found] == [
        "2026-03-09T08:00:00-04:00", "2026-03-09T08:30:00-04:00",
    ]


@pytest.mark.parametrize(
    ("tz", "day", "utc_first"),
    [
        ("Asia/Kolkata", "2026-11-26", "2026-11-26T02:30:00+00:00"),
        ("Pacific/Auckland", "2026-04-03", "2026-04-02T19:00:00+00:00"),  # NZDT, +13
        ("Pacific/Auckland", "2026-04-06", "2026-04-05T20:00:00+00:00"),  # NZST, +12 after 5 Apr
    ],
)
def test_far_timezones_open_at_local_eight(tz: str, day: str, utc_first: str) -> None:
    first = next(iter(day_slots(rules(tz), datetime.fromisoformat(day).date())))[0]
    assert first.astimezone(UTC).isoformat() == utc_first
    assert label(first, zone(tz)).endswith("8:00 AM")


def test_kolkata_preference_uses_the_local_day() -> None:
    kol = "Asia/Kolkata"
    found = find_free(rules(kol), [], at("2026-11-25 12:00", kol), at("2026-11-26 17:00", kol), 3)
    assert starts(found, kol) == ["Thu 26 16:30", "Thu 26 17:00", "Thu 26 17:30"]
    assert all(slot_value(s, zone(kol))["start"].endswith("+05:30") for s in found)


def test_is_bookable_and_coerce_slot() -> None:
    r = rules()
    tz = zone(NY)
    slot = coerce_slot({"start": "2026-11-26T10:00:00-05:00", "end": "2026-11-26T10:30:00-05:00"}, tz, r.duration)
    assert is_bookable(r, slot, at("2026-11-25 12:00")) is None
    assert coerce_slot(str({"start": "2026-11-26T10:00:00-05:00"}), tz, r.duration) == slot
    assert coerce_slot("2026-11-26T10:00", tz, r.duration) == slot
    assert is_bookable(r, coerce_slot("2026-11-26T19:00", tz, r.duration), at("2026-11-25 12:00")) == (
        "the slot is outside opening hours"
    )
    assert is_bookable(r, slot, at("2026-11-27 12:00")) == "the slot has already started"
    with pytest.raises(SlotError, match="not an ISO date"):
        coerce_slot("next tuesday", tz, r.duration)
