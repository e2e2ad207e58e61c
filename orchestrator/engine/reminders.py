"""Appointment reminders (`settings.reminders`): when a reminder of a booking is due.

    settings:
      reminders: [{before: 24h, flow: appointment_reminder}]
      sending_hours: "09:00-20:00"

A booking (`*.book` or `*.reschedule` answering `ok` with an `id` and a `start`) schedules one
reminder per rule, `before` its start, moved earlier into the business's sending hours (a
reminder for a 08:30 visit goes out the evening before, not at 08:30 the day before). A
booking made closer to its start than `before` gets none: the contact has just heard the
time. Nothing here sends: the reminders ride with the turn's
commit as durable timers, and the runtime checks at firing time that the booking still starts
then (a cancelled or moved booking has no reminder; a moved one scheduled its own).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import Any
from zoneinfo import ZoneInfo

from orchestrator.flow import schema
from orchestrator.model import ReminderDue

BOOKING_ACTIONS = ("book", "reschedule")
_HOURS = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


def sending_window(text: str) -> tuple[dt.time, dt.time]:
    """`"09:00-20:00"` -> (09:00, 20:00). ValueError saying the form when it is not one."""
    m = _HOURS.match(text)
    if not m:
        raise ValueError(f"bad sending_hours {text!r}: write the local hours as HH:MM-HH:MM, e.g. 09:00-20:00")
    h1, m1, h2, m2 = (int(g) for g in m.groups())
    if h1 > 23 or h2 > 24 or m1 > 59 or m2 > 59 or (h2, m2) > (24, 0):
        raise ValueError(f"bad sending_hours {text!r}: hours are 00:00 to 24:00")
    start, end = dt.time(h1, m1), dt.time(min(h2, 23), 59 if h2 == 24 else m2)
    if end <= start:
        raise ValueError(f"bad sending_hours {text!r}: the end must be after the start")
    return start, end


def within_window(when: dt.datetime, window: tuple[dt.time, dt.time]) -> dt.datetime:
    """`when` moved earlier into the window: the same day's end when it is past it, the day
    before's end when it is before the start."""
    start, end = window
    if when.time() > end:
        return when.replace(hour=end.hour, minute=end.minute, second=0, microsecond=0)
    if when.time() < start:
        before = when - dt.timedelta(days=1)
        return before.replace(hour=end.hour, minute=end.minute, second=0, microsecond=0)
    return when


def is_booking(action: str) -> bool:
    return action.rpartition(".")[2] in BOOKING_ACTIONS


def plan(settings: schema.Settings, booking: Any, *, now: float, channel: str) -> list[ReminderDue]:
    """The reminders of `booking` (a connector's booking value), each with its due time."""
    if not settings.reminders or not isinstance(booking, Mapping):
        return []
    booking_id, start_text = str(booking.get("id") or ""), str(booking.get("start") or "")
    if not booking_id or not start_text:
        return []
    tz = ZoneInfo(settings.timezone)
    try:
        start = dt.datetime.fromisoformat(start_text)
    except ValueError:
        return []
    start = start.replace(tzinfo=tz) if start.tzinfo is None else start.astimezone(tz)
    window = sending_window(settings.sending_hours)
    current = dt.datetime.fromtimestamp(now, tz)
    out: list[ReminderDue] = []
    for rule in settings.reminders:
        due = within_window(start - dt.timedelta(seconds=schema.parse_duration(rule.before)), window)
        if due <= current:  # booked closer than `before`: the contact has just heard the time
            continue
        via = rule.channel if rule.channel != "same" else (channel if channel in ("sms", "whatsapp") else "sms")
        out.append(ReminderDue(due=due.timestamp(), flow=rule.flow, booking_id=booking_id, start=start_text,
                               channel=via))
    return out
