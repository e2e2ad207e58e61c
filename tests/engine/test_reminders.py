"""When an appointment reminder is due (`engine.reminders.plan`): `before` the start, moved
earlier into the sending hours, none for a booking made closer than `before`."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from orchestrator.engine.reminders import plan, sending_window
from orchestrator.flow import schema

TZ = ZoneInfo("Europe/Madrid")
NOW = dt.datetime(2026, 12, 3, 12, 0, tzinfo=TZ).timestamp()  # Thursday noon


def settings(*rules: tuple[str, str], hours: str = "09:00-20:00") -> schema.Settings:
    return schema.Settings(timezone="Europe/Madrid", sending_hours=hours,
                           reminders=[schema.ReminderRule(before=b, flow=f) for b, f in rules])


def booking(start: str) -> dict[str, str]:
    return {"id": "bk1", "start": start, "label": "x"}


@pytest.mark.parametrize(("start", "before", "due"), [
    ("2026-12-07T10:00:00+01:00", "24h", "2026-12-06T10:00"),  # within hours: exactly a day before
    ("2026-12-07T08:30:00+01:00", "24h", "2026-12-05T20:00"),  # 08:30 the day before is too early: the evening before
    ("2026-12-07T21:30:00+01:00", "24h", "2026-12-06T20:00"),  # 21:30 is too late: the end of that day's window
    ("2026-12-07T10:00:00+01:00", "2h", "2026-12-06T20:00"),   # 08:00 the same day: the evening before
    ("2026-12-04T15:00:00+01:00", "24h", "2026-12-03T15:00"),  # booked 27 h ahead: due this afternoon
    ("2026-12-04T10:00:00+01:00", "24h", None),                # due 10:00 today: already past, none
])
def test_due_times(start: str, before: str, due: str | None) -> None:
    found = plan(settings((before, "appointment_reminder")), booking(start), now=NOW, channel="voice")
    assert [dt.datetime.fromtimestamp(r.due, TZ).strftime("%Y-%m-%dT%H:%M") for r in found] == ([due] if due else [])
    assert all(r.channel == "sms" and r.booking_id == "bk1" for r in found)  # a call's reminder goes by SMS


def test_one_reminder_per_rule_and_the_channel_kept() -> None:
    found = plan(settings(("24h", "a"), ("2h", "b")), booking("2026-12-09T12:00:00+01:00"), now=NOW,
                 channel="whatsapp")
    assert [(r.flow, r.channel) for r in found] == [("a", "whatsapp"), ("b", "whatsapp")]


def test_no_rules_or_no_booking_plans_nothing() -> None:
    assert plan(settings(), booking("2026-12-09T12:00:00+01:00"), now=NOW, channel="sms") == []
    assert plan(settings(("24h", "a")), {"id": "x"}, now=NOW, channel="sms") == []
    assert plan(settings(("24h", "a")), "not a booking", now=NOW, channel="sms") == []


@pytest.mark.parametrize("text", ["9-20", "20:00-09:00", "09:00-25:00", "nine to five"])
def test_bad_sending_hours_say_the_form(text: str) -> None:
    with pytest.raises(ValueError, match="bad sending_hours"):
        sending_window(text)
