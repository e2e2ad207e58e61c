"""The business's opening hours, as flow conditions ask them (`open_now`, `next_open`).

`settings.business_hours` lists ranges per weekday (`"08:00-12:00, 13:00-18:00"`); a day
not listed is closed, and so is every date in `settings.closed_dates`. A range may end at
24:00. Times are wall-clock times in the flow's timezone.
"""

from __future__ import annotations

import datetime as dt
import re
from zoneinfo import ZoneInfo

from orchestrator.flow import schema

DAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_RANGE = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")
_LOOKAHEAD_DAYS = 400  # closed_dates may close weeks in a row; a year and a bit is enough


def day_ranges(spec: str | None) -> tuple[tuple[int, int], ...]:
    """`"09:00-12:00, 13:00-17:00"` -> ((540, 720), (780, 1020)) in minutes; `closed`/None -> ().
    Malformed parts are skipped (validate reports them at their line)."""
    if spec is None or spec.strip().lower() == "closed":
        return ()
    out = []
    for part in spec.split(","):
        m = _RANGE.match(part)
        if m:
            h1, m1, h2, m2 = (int(g) for g in m.groups())
            if h1 * 60 + m1 < h2 * 60 + m2 <= 1440:
                out.append((h1 * 60 + m1, h2 * 60 + m2))
    return tuple(sorted(out))


class OpeningHours:
    def __init__(self, hours: schema.BusinessHours, closed_dates: list[str], tz: ZoneInfo) -> None:
        self.tz = tz
        self.table = tuple(day_ranges(getattr(hours, day)) for day in DAYS)
        self.closed = frozenset(closed_dates)

    @classmethod
    def from_settings(cls, settings: schema.Settings, tz: ZoneInfo) -> OpeningHours:
        return cls(settings.business_hours, settings.closed_dates, tz)

    def ranges(self, day: dt.date) -> tuple[tuple[int, int], ...]:
        return () if day.isoformat() in self.closed else self.table[day.weekday()]

    def is_open(self, when: dt.datetime) -> bool:
        local = when.astimezone(self.tz)
        minutes = local.hour * 60 + local.minute
        return any(a <= minutes < b for a, b in self.ranges(local.date()))

    def next_open(self, when: dt.datetime) -> dt.datetime | None:
        """`when` itself when open, else the next opening; None when nothing opens within a year."""
        local = when.astimezone(self.tz)
        if self.is_open(local):
            return local
        minutes = local.hour * 60 + local.minute
        for offset in range(_LOOKAHEAD_DAYS):
            day = local.date() + dt.timedelta(days=offset)
            for start, _end in self.ranges(day):
                if offset or start > minutes:
                    naive = dt.datetime.combine(day, dt.time(start // 60, start % 60))
                    return naive.replace(tzinfo=self.tz)
        return None
