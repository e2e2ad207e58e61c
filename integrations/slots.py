"""Slot arithmetic shared by every calendar backend: pure functions, no I/O.

Times inside are UTC-aware `datetime`s: Python adds and compares two datetimes sharing
one ZoneInfo in *wall-clock* time, which is wrong across a DST change, so zone-aware
values appear only at the edges (parsing, labels). Opening hours and closures are
wall-clock times of the business (the flow's timezone); slots are stepped in absolute
time from each opening, so a DST change never stretches or shrinks a visit.

    rules = SlotRules.from_settings(settings, "America/New_York", duration_seconds=1800)
    slots = find_free(rules, busy=[(start, end), ...], now=now, around=wanted, count=3)
"""

from __future__ import annotations

import ast
import bisect
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from orchestrator.errors import ConnectorError
from orchestrator.flow.schema import BusinessHours, Settings, parse_duration

Interval = tuple[datetime, datetime]
WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
HORIZON_DAYS = 14
_RANGE = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


class SlotError(ConnectorError, ValueError):
    """A slot, time or opening-hours value cannot be understood."""


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise SlotError(f"unknown timezone {name!r}; use an IANA name such as America/New_York") from None


def parse_ranges(day: str, text: str | None) -> list[tuple[time, time | None]]:
    """`"08:00-12:00, 13:00-17:00"` -> [(08:00, 12:00), (13:00, 17:00)]; `None`/`closed` -> [].

    A closing time of `24:00` is returned as None (midnight at the end of the day)."""
    if text is None or text.strip().lower() in ("", "closed", "none", "off"):
        return []
    ranges: list[tuple[time, time | None]] = []
    for part in text.split(","):
        match = _RANGE.match(part)
        if not match:
            raise SlotError(
                f"business_hours.{day}: bad range {part.strip()!r}; write HH:MM-HH:MM, e.g. 09:00-17:00, or closed"
            )
        h1, m1, h2, m2 = (int(g) for g in match.groups())
        if h1 > 23 or m1 > 59 or h2 > 24 or m2 > 59 or (h2 == 24 and m2):
            raise SlotError(f"business_hours.{day}: {part.strip()!r} is not a valid time range")
        opens = time(h1, m1)
        closes = None if h2 == 24 else time(h2, m2)
        if closes is not None and closes <= opens:
            raise SlotError(f"business_hours.{day}: {part.strip()!r} closes before it opens")
        ranges.append((opens, closes))
    return ranges


def wall_time(day: date, at: time | None, tz: ZoneInfo) -> datetime:
    """The instant (UTC) of a wall-clock time on a day. None = midnight ending the day.

    A wall time skipped by a DST jump (02:30 on a spring-forward night) maps to the
    instant just after the jump; an ambiguous one (fall back) to its first occurrence."""
    if at is None:
        return wall_time(day + timedelta(days=1), time(0, 0), tz)
    naive = datetime.combine(day, at)
    aware = naive.replace(tzinfo=tz, fold=0)
    # A nonexistent wall time round-trips to another one; converting to UTC resolves it
    # to the instant after the jump, which is what we want, so the UTC value is returned as is.
    return aware.astimezone(UTC)


@dataclass(frozen=True)
class SlotRules:
    tz: ZoneInfo
    hours: dict[int, list[tuple[time, time | None]]]  # weekday (0 = Monday) -> ranges
    closed_dates: frozenset[str] = frozenset()
    min_notice: timedelta = timedelta(hours=1)
    buffer: timedelta = timedelta(0)
    step: timedelta = timedelta(minutes=30)  # grid of starting times from each opening
    duration: timedelta = timedelta(minutes=30)
    horizon: timedelta = timedelta(days=HORIZON_DAYS)  # searched either side of the wanted time
    max_ahead: timedelta | None = None  # how far ahead from now a visit may start (None: no limit)
    max_per_day: int | None = None  # visits one calendar takes on a local day
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_settings(
        cls, settings: Settings | None, timezone: str | None = None, duration_seconds: float | None = None
    ) -> SlotRules:
        s = settings if settings is not None else Settings()
        hours_src: BusinessHours = s.business_hours
        hours = {i: parse_ranges(day, getattr(hours_src, day)) for i, day in enumerate(WEEKDAYS)}
        step = timedelta(seconds=parse_duration(s.slot_length))
        duration = timedelta(seconds=duration_seconds) if duration_seconds else step
        if duration <= timedelta(0):
            raise SlotError(f"slot duration must be positive, got {duration_seconds!r}")
        return cls(
            tz=zone(timezone or s.timezone),
            hours=hours,
            closed_dates=iso_dates("settings.closed_dates", s.closed_dates),
            min_notice=timedelta(seconds=parse_duration(s.min_notice)),
            buffer=timedelta(seconds=parse_duration(s.buffer)),
            step=step,
            duration=duration,
            max_ahead=timedelta(seconds=parse_duration(s.max_ahead)) if s.max_ahead else None,
            max_per_day=s.max_per_day,
        )

    def for_member(self, hours: BusinessHours | None, days_off: Iterable[str], where: str) -> SlotRules:
        """The rules of one of settings.staff: their own weekly hours (unset: the business's)
        and their days off on top of the business's closures."""
        own = self.hours if hours is None else {
            i: parse_ranges(f"{where}.hours.{day}", getattr(hours, day)) for i, day in enumerate(WEEKDAYS)
        }
        off = iso_dates(f"{where}.days_off", days_off)
        if own is self.hours and not off:
            return self
        return replace(self, hours=own, closed_dates=self.closed_dates | off)


def iso_dates(where: str, values: Iterable[str]) -> frozenset[str]:
    for d in values:
        try:
            date.fromisoformat(d)
        except ValueError:
            raise SlotError(f"{where}: {d!r} is not an ISO date (YYYY-MM-DD)") from None
    return frozenset(values)


def day_slots(rules: SlotRules, day: date) -> Iterator[Interval]:
    """Every candidate slot of one local day (ignoring bookings and notice)."""
    if day.isoformat() in rules.closed_dates:
        return
    for opens, closes in rules.hours.get(day.weekday(), []):
        start = wall_time(day, opens, rules.tz)
        end_of_range = wall_time(day, closes, rules.tz)
        while start + rules.duration <= end_of_range:
            yield start, start + rules.duration
            start += rules.step


def is_closed_day(rules: SlotRules, day: date) -> bool:
    """The business does not open on `day`: a date in `closed_dates`, or a weekday without
    opening hours (whatever `business_hours` says; a missing day counts as no hours)."""
    return day.isoformat() in rules.closed_dates or not rules.hours.get(day.weekday())


def closed_on(rules: SlotRules, now: datetime, around: datetime | None) -> date | None:
    """The local day of a wanted time when the business is closed that day, else None: the
    nearest open times are still offered, but the contact must hear that the day they asked
    for is closed (never a silent move to another day)."""
    if around is None or around < earliest_start(rules, now.astimezone(UTC)) - timedelta(days=1):
        return None
    if beyond_horizon(rules, now, around) is not None:  # "too far ahead" is the answer then
        return None
    day = around.astimezone(rules.tz).date()
    return day if is_closed_day(rules, day) else None


def overlaps(slot: Interval, busy: Iterable[Interval], buffer: timedelta) -> bool:
    start, end = slot
    return any(b_start < end + buffer and b_end + buffer > start for b_start, b_end in busy)


class BusyIndex:
    """Busy intervals sorted by start, for O(log n) overlap checks (a clinic's calendar holds
    hundreds of visits; checking every candidate slot against every visit is quadratic).

    A slot clashes when some visit starts before the slot's end (+ buffer) and ends after its
    start (- buffer): among the visits starting early enough, the latest end decides."""

    def __init__(self, busy: Iterable[Interval]) -> None:
        ordered = sorted(busy)
        self._starts = [b_start for b_start, _ in ordered]
        self._max_end: list[datetime] = []
        for _, b_end in ordered:
            self._max_end.append(max(b_end, self._max_end[-1]) if self._max_end else b_end)

    def overlaps(self, slot: Interval, buffer: timedelta) -> bool:
        start, end = slot
        i = bisect.bisect_left(self._starts, end + buffer)
        return i > 0 and self._max_end[i - 1] + buffer > start


def earliest_start(rules: SlotRules, now: datetime) -> datetime:
    return now + rules.min_notice


def search_window(rules: SlotRules, now: datetime, around: datetime | None) -> Interval:
    """The absolute window a backend must read busy times for: from the earliest start
    (`min_notice`) to the latest (`max_ahead` from now), around the wanted time when given."""
    earliest = earliest_start(rules, now)
    latest = latest_start(rules, now)
    if around is None or around < earliest:
        start, end = earliest, earliest + rules.horizon + timedelta(days=1)
    else:
        wanted = around if latest is None else min(around, latest)
        start, end = max(earliest, wanted - rules.horizon), wanted + rules.horizon + timedelta(days=1)
    return start, end if latest is None else min(end, latest)


def latest_start(rules: SlotRules, now: datetime) -> datetime | None:
    return None if rules.max_ahead is None else now + rules.max_ahead


def beyond_horizon(rules: SlotRules, now: datetime, around: datetime | None) -> date | None:
    """The last local day bookable when a wanted time lies past it (`max_ahead`), else None."""
    latest = latest_start(rules, now.astimezone(UTC))
    if latest is None or around is None or around.astimezone(UTC) <= latest:
        return None
    return latest.astimezone(rules.tz).date()


def full_days(rules: SlotRules, visits: Iterable[Interval]) -> frozenset[date]:
    """The local days on which a calendar already holds `max_per_day` visits."""
    if rules.max_per_day is None:
        return frozenset()
    per_day: dict[date, int] = {}
    for start, _ in visits:
        day = start.astimezone(rules.tz).date()
        per_day[day] = per_day.get(day, 0) + 1
    return frozenset(day for day, n in per_day.items() if n >= rules.max_per_day)


def find_free(
    rules: SlotRules, busy: list[Interval], now: datetime, around: datetime | None, count: int = 3,
    full: frozenset[date] = frozenset(),
) -> list[Interval]:
    """Up to `count` free slots, chronological, none on a `full` day (`full_days`).

    With a wanted time: first the free slots of the same local day at or after it, then
    the nearest ones either side. Without one (or one already past): the earliest."""
    now = now.astimezone(UTC)
    around = around.astimezone(UTC) if around is not None else None
    busy = [(b_start.astimezone(UTC), b_end.astimezone(UTC)) for b_start, b_end in busy]
    earliest = earliest_start(rules, now)
    window_start, window_end = search_window(rules, now, around)
    index = BusyIndex(busy)
    free: list[Interval] = []
    day = window_start.astimezone(rules.tz).date() - timedelta(days=1)
    last_day = window_end.astimezone(rules.tz).date()
    while day <= last_day:
        if day in full:
            day += timedelta(days=1)
            continue
        for slot in day_slots(rules, day):
            if window_start <= slot[0] <= window_end and slot[0] >= earliest and not index.overlaps(slot, rules.buffer):
                free.append(slot)
        day += timedelta(days=1)
    return choose(rules, free, earliest, around, count)


def choose(rules: SlotRules, free: list[Interval], earliest: datetime, around: datetime | None,
           count: int) -> list[Interval]:
    """The `count` slots of `free` to offer, chronological: the same local day at or after
    `around` first, then the nearest either side; without `around` (or past): the earliest."""
    if around is None or around.astimezone(UTC) < earliest:
        return sorted(free)[: max(count, 0)]
    around = around.astimezone(UTC)
    wanted_day = around.astimezone(rules.tz).date()
    same_day = sorted(s for s in free if s[0] >= around and s[0].astimezone(rules.tz).date() == wanted_day)
    chosen = same_day[:count]
    if len(chosen) < count:
        rest = sorted((s for s in free if s not in chosen), key=lambda s: (abs(s[0] - around), s[0]))
        chosen += rest[: count - len(chosen)]
    return sorted(chosen)


def is_bookable(rules: SlotRules, slot: Interval, now: datetime) -> str | None:
    """None when `slot` lies inside opening hours and in the future; else the reason why not."""
    start, end = slot
    if start < now:
        return "the slot has already started"
    if rules.max_ahead is not None and start > now + rules.max_ahead:
        return f"the slot is more than {_span(rules.max_ahead)} ahead (settings.max_ahead)"
    local_day = start.astimezone(rules.tz).date()
    if local_day.isoformat() in rules.closed_dates:
        return f"the business is closed on {local_day.isoformat()}"
    for opens, closes in rules.hours.get(local_day.weekday(), []):
        if wall_time(local_day, opens, rules.tz) <= start and end <= wall_time(local_day, closes, rules.tz):
            return None
    return "the slot is outside opening hours"


def _span(delta: timedelta) -> str:
    days = delta.total_seconds() / 86400
    return f"{days:g} days" if days >= 1 else f"{delta.total_seconds() / 3600:g} hours"


def label(start: datetime, tz: ZoneInfo) -> str:
    """`Thu 26 Nov, 10:00 AM` in the business timezone (locale-independent)."""
    local = start.astimezone(tz)
    hour = local.hour % 12 or 12
    return f"{local:%a} {local.day} {local:%b}, {hour}:{local.minute:02d} {'AM' if local.hour < 12 else 'PM'}"


def slot_value(slot: Interval, tz: ZoneInfo) -> dict[str, str]:
    start, end = slot
    return {"start": start.astimezone(tz).isoformat(), "end": end.astimezone(tz).isoformat(), "label": label(start, tz)}


def parse_instant(text: str, tz: ZoneInfo, what: str = "time") -> datetime:
    """ISO datetime (offset optional: naive = business time) or ISO date (= its midnight)."""
    raw = text.strip()
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise SlotError(f"{what}: {text!r} is not an ISO date or datetime, e.g. 2026-11-26T10:00:00-05:00") from None
    if value.tzinfo is None:
        return wall_time(value.date(), value.time(), tz)
    return value.astimezone(UTC)


_EARLIEST_WORDS = frozenset({
    "", "none", "null", "any", "asap", "earliest", "as soon as possible", "any time", "anytime", "whenever",
})


def parse_around(value: Any, tz: ZoneInfo) -> datetime | None:
    """A wanted time: ISO text, a slot-like mapping (its `start`), or None / "asap" / an
    "as soon as possible" or "any time" answer (a mapping with `preference`): the earliest."""
    if value is None:
        return None
    if isinstance(value, Mapping):
        if value.get("preference") or not value.get("start"):
            return None
        value = value["start"]
    text = str(value).strip()
    if text.lower() in _EARLIEST_WORDS:
        return None
    return parse_instant(text, tz, "around")


def coerce_slot(value: Any, tz: ZoneInfo, default_duration: timedelta) -> Interval:
    """A slot mapping, its JSON/Python-literal rendering, or an ISO start -> (start, end)."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("{"):
            try:
                value = json.loads(text)
            except ValueError:
                try:
                    value = ast.literal_eval(text)
                except (ValueError, SyntaxError):
                    raise SlotError(f"slot: {text[:80]!r} is neither a slot mapping nor an ISO start") from None
        else:
            start = parse_instant(text, tz, "slot")
            return start, start + default_duration
    if isinstance(value, Mapping) and value.get("start"):
        start = parse_instant(str(value["start"]), tz, "slot.start")
        end = parse_instant(str(value["end"]), tz, "slot.end") if value.get("end") else start + default_duration
        if end <= start:
            raise SlotError(f"slot: ends ({end.isoformat()}) before it starts ({start.isoformat()})")
        return start, end
    raise SlotError(f"slot: expected a mapping with 'start' or an ISO datetime, got {type(value).__name__}")
