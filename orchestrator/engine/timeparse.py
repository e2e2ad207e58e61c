"""Dates and times as people text and say them, read the way a receptionist would.

A thin layer over dateparser. Our own rules run first, because dateparser reads bare
hours badly ("thursday at 4" -> 2027-04-25 00:00, "tomorrow at 10" drops the 10; see the
team's FIELD-NOTES):

- a bare hour is read against the business's opening hours ("at 4" -> 16:00, "at 10" ->
  10:00), also beside a day ("next tuesday 3", "10 tomorrow"); "4pm", "16:00", "half past
  3", "half 3", "four thirty", "2ish" as said; "before 10": the opening time (or an hour
  before, when the business opens later);
- "first thing" / "end of the day" (`eod`, "close of business") -> that day's opening /
  closing time; "after lunch" 13:00, "mid morning" 10:30, "after work" 17:30;
- a weekday is the next such day (today's weekday: next week once the time has passed);
  "next friday" said while this week's Friday is still ahead asks which one is meant;
- "morning" / "afternoon" / "evening" -> 9:00 / 14:00 / 17:00, "noon", "midnight";
- "asap", "now", "as soon as possible", "earliest"... -> the earliest moment (now + the
  minimum notice, moved to the next opening time) with `preference="asap"`; "any time",
  "whenever", "no preference"... -> the same moment with `preference="any"`: the contact
  named no time, so nothing may be promised as if they had (see inputs `_when`);
- "next week" -> next Monday at opening; a date alone -> that date at opening time;
- "in 2 hours", "2 hours from now", "in an hour and a half" (exactly that long from now),
  "in 3 days", "a week from today", "two weeks from friday", "a week on friday", "this time
  next week"; abbreviations ("tmrw", "2moro", "arvo", "2hrs"); "12/3" (month/day for US English, else day/month),
  "december 3rd", "3 dec", "the 5th", ISO dates.

Anything our rules do not recognise goes to dateparser (`languages=[flow language]`,
future dates preferred, relative to now in the flow's timezone). dateparser is only ever
called for free text that is not already understood; pay its start-up cost with `warm_up`.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal
from zoneinfo import ZoneInfo

from orchestrator.flow import schema
from orchestrator.languages import canonical
from orchestrator.languages.en import MONTHS as _MONTHS
from orchestrator.languages.en import WEEKDAYS as _WEEKDAYS
from orchestrator.languages.rules import RULES_BY_TAG as _RULES

__all__ = ["ParsedTime", "Want", "parse_when", "warm_up"]

Kind = Literal["exact", "earliest", "ambiguous", "none"]
Want = Literal["datetime", "date", "time"]
Preference = Literal["asap", "any"]

UTC = dt.UTC


@dataclass(frozen=True, slots=True)
class ParsedTime:
    """`value` is an aware datetime in the flow's timezone (for `want="date"` the date at
    opening time; for `want="time"` today's date at that time). `clarify` is a question
    to ask back when `kind` is "ambiguous" (value then holds the likeliest reading) or
    "none"."""

    value: dt.datetime | None
    kind: Kind
    clarify: str | None = None
    has_time: bool = False  # the answer named a time of day (not only a day)
    # "asap": as soon as possible; "any": no preference. Set with kind "earliest" only.
    preference: Preference | None = None


# ------------------------------------------------------------------ vocabulary

_DAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTH_NAMES = ("January", "February", "March", "April", "May", "June", "July", "August",
                "September", "October", "November", "December")

_ASAP = re.compile(
    r"\b(asap|a\s?s\s?a\s?p|as soon as (possible|you can)|soonest|earliest|first available|next available"
    r"|right (now|away)|now|immediately|first (slot|opening))\b"
)
_ANY_TIME = re.compile(
    r"\b(any ?time|whenever|whatever (is|works)|doesn'?t matter|don'?t mind|no preference|either|any day"
    r"|up to you|you (choose|pick|decide))\b"
)
# Hour -1: the day's opening time; -2: its closing time ("end of the day").
_OPENING, _CLOSING = -1, -2
_PERIODS: dict[str, tuple[int, int]] = {
    "first thing": (_OPENING, 0), "early morning": (_OPENING, 0), "start of the day": (_OPENING, 0),
    "end of the day": (_CLOSING, 0), "end of day": (_CLOSING, 0), "eod": (_CLOSING, 0),
    "close of business": (_CLOSING, 0), "cob": (_CLOSING, 0), "closing time": (_CLOSING, 0),
    "last thing": (_CLOSING, 0), "before lunch": (11, 0), "after lunch": (13, 0), "after school": (15, 30),
    "after work": (17, 30), "mid morning": (10, 30), "mid afternoon": (15, 0),
    "late morning": (11, 0), "morning": (9, 0), "early afternoon": (13, 0),
    "late afternoon": (16, 0), "afternoon": (14, 0), "lunchtime": (12, 0), "lunch": (12, 0),
    "evening": (17, 0), "tonight": (17, 0), "night": (17, 0), "noon": (12, 0), "midday": (12, 0),
    "midnight": (0, 0),
}
_PM_PERIODS = frozenset({"afternoon", "early afternoon", "late afternoon", "mid afternoon", "after lunch",
                         "after school", "after work", "evening", "tonight", "night"})
_AM_PERIODS = frozenset({"morning", "early morning", "late morning", "mid morning", "before lunch", "first thing"})

_NUMBER_WORDS: dict[str, int] = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
    "ten": 10, "eleven": 11, "twelve": 12,
}
_MINUTE_WORDS: dict[str, int] = {
    "oh five": 5, "o five": 5, "ten": 10, "fifteen": 15, "twenty": 20, "thirty": 30, "forty five": 45,
    "forty": 40, "fifty": 50,
}
_ORDINAL_WORDS: dict[str, int] = {
    "first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7, "eighth": 8,
    "ninth": 9, "tenth": 10, "eleventh": 11, "twelfth": 12, "thirteenth": 13, "fourteenth": 14,
    "fifteenth": 15, "sixteenth": 16, "seventeenth": 17, "eighteenth": 18, "nineteenth": 19,
    "twentieth": 20, "thirtieth": 30,
}
_ABBREVIATIONS: dict[str, str] = {
    "tmrw": "tomorrow", "tmr": "tomorrow", "tmrow": "tomorrow", "tmw": "tomorrow", "tomoz": "tomorrow",
    "tomo": "tomorrow", "2moro": "tomorrow", "2morrow": "tomorrow", "tommorow": "tomorrow",
    "tomorow": "tomorrow", "tommorrow": "tomorrow", "2mrw": "tomorrow", "2mro": "tomorrow", "2morro": "tomorrow",
    "tmro": "tomorrow", "tmrrw": "tomorrow", "tmoro": "tomorrow", "tomm": "tomorrow", "tomorro": "tomorrow",
    "tmorrow": "tomorrow", "2mor": "tomorrow", "2day": "today", "tday": "today", "2nite": "tonight",
    "tonite": "tonight", "nxt": "next", "wk": "week", "hr": "hour", "hrs": "hours", "min": "minute",
    "mins": "minutes", "arvo": "afternoon", "eve": "evening", "wks": "weeks",
    "mornin": "morning", "morn": "morning", "aft": "afternoon", "avo": "afternoon", "nite": "night",
}

_WEEKDAY_RE = "|".join(sorted(_WEEKDAYS, key=len, reverse=True))
_MONTH_RE = "|".join(sorted(_MONTHS, key=len, reverse=True))
_SUFFIX = r"(?:st|nd|rd|th)"

# Times (tried in this order; each match is cut out of the text before looking for a day).
_T_AMPM = re.compile(r"\b(?P<h>\d{1,2})(?:[:.](?P<m>\d{2}))?\s*(?P<ap>am|pm|a|p)\b")
_T_CLOCK = re.compile(r"\b(?P<h>\d{1,2}):(?P<m>\d{2})\b")
_NOT_AN_HOUR = rf"(?!\s*(?:{_SUFFIX}|/|-|\.\d|days?|weeks?|hours?|minutes?|people|of|(?:{_MONTH_RE})\b))"
_T_AT = re.compile(
    r"\b(?P<pre>at|around|about|by|for|after|before|until|till|til|@)\s+(?P<h>\d{1,2})(?:\s+(?P<m>[0-5]\d))?\b"
    + _NOT_AN_HOUR
)
# A bare hour beside a day: "next tuesday 3", "tomorrow 10", "10 tomorrow", "3 on friday".
_DAY_WORD = rf"(?:tomorrow|today|tonight|{_WEEKDAY_RE})"
_T_DAY_HOUR = re.compile(
    rf"\b{_DAY_WORD}\s+(?P<hm>(?P<h>\d{{1,2}})(?:[:.\s](?P<m>[0-5]\d))?)\b" + _NOT_AN_HOUR
)
_T_HOUR_DAY = re.compile(
    rf"(?:^|(?<=\s))(?P<h>\d{{1,2}})(?:[:.](?P<m>[0-5]\d))?\s+(?=(?:on\s+|this\s+|next\s+|coming\s+)?{_DAY_WORD}\b)"
)
_BEFORE = re.compile(r"(?:^|\s)(?:before|until|till|til|no later than|not after)\s*$")
_PERIOD_NAMES = "|".join(sorted(_PERIODS, key=len, reverse=True))
_T_PERIOD = re.compile(
    rf"\b(?P<pre>before\s+)?(?:(?:in|this|the|tomorrow|today)\s+)*(?P<p>{_PERIOD_NAMES})\b"
)
_T_ISO = re.compile(r"\b(?P<y>\d{4})-(?P<mo>\d{2})-(?P<d>\d{2})(?:[t ](?P<h>\d{2}):(?P<m>\d{2})(?::\d{2})?)?\b")

# Days.
_D_REL = re.compile(
    r"\b(?:(?P<dat>(?:the\s+)?day after tomorrow)|(?P<tomorrow>tomorrow)|(?P<today>today))\b"
)
_D_WEEKDAY = re.compile(rf"\b(?:(?P<mod>this|next|coming|upcoming|on|this coming)\s+)?(?P<wd>{_WEEKDAY_RE})\b")
_D_NEXT_WEEK = re.compile(r"\b(?:next|the following) week\b")
# "a week from today", "two weeks from friday", "a week today", "a week on tuesday" (British)
_D_WEEKS_FROM = re.compile(
    rf"\b(?:(?P<n>a|one|two|three|four|\d)\s+weeks?|(?P<fortnight>a\s+fortnight))\s+(?:(?:from|after|on)\s+)?"
    rf"(?:(?P<today>today|now)|(?P<tomorrow>tomorrow)|(?:this\s+|next\s+)?(?P<wd>{_WEEKDAY_RE}))\b"
)
_D_THIS_TIME = re.compile(r"\b(?:this|same) time (?P<when>tomorrow|next week)\b")
_D_IN = re.compile(
    r"\bin\s+(?P<n>\d+|half an?|an?|one|two|three|four|five|six|seven|ten|(?:a\s+)?couple(?:\s+of)?)\s*"
    r"(?P<unit>minutes?|hours?|days?|weeks?|fortnights?)(?P<half>\s+and\s+a\s+half)?\b"
)
# "2 hours from now", "20 minutes from now": an offset, not "now" the earliest
_D_FROM_NOW = re.compile(
    r"\b(?P<n>\d+|an?|one|two|three|four|five|six|half an?)\s*(?P<unit>minutes?|hours?)"
    r"(?P<half>\s+and\s+a\s+half)?\s+from\s+now\b"
)
_D_MONTHNAME = re.compile(
    rf"\b(?:(?P<d1>\d{{1,2}}){_SUFFIX}?\s+(?:of\s+)?(?P<m1>{_MONTH_RE})\.?"
    rf"|(?P<m2>{_MONTH_RE})\.?\s+(?:the\s+)?(?P<d2>\d{{1,2}}){_SUFFIX}?(?!\s*(?::|am|pm|a\b|p\b)))"
    rf"(?:,?\s+(?P<y>\d{{4}}))?\b"
)
_D_NUMERIC = re.compile(r"\b(?P<a>\d{1,2})[/.-](?P<b>\d{1,2})(?:[/.-](?P<y>\d{2}|\d{4}))?\b")
_D_ORDINAL = re.compile(rf"\b(?:the\s+)?(?P<d>\d{{1,2}}){_SUFFIX}\b")
_BARE_NUMBER = re.compile(r"^\s*(?:at\s+)?(?P<h>\d{1,2})(?:[:.\s](?P<m>[0-5]\d))?\s*$")


# ------------------------------------------------------------------ normalising


@lru_cache(maxsize=2048)
def _normalise(text: str) -> str:
    s = text.lower().strip()
    s = s.replace("a.m.", "am").replace("p.m.", "pm").replace("a.m", "am").replace("p.m", "pm")
    s = re.sub(r"o'?\s?clock", "", s)
    s = s.replace("@", " at ").replace("\u2019", "'")
    s = re.sub(r"[,!?;\"()]", " ", s)
    s = re.sub(r"\.(?=\s|$)", " ", s)  # a full stop, not the dot of "4.30"
    s = re.sub(r"\bmid-", "mid ", s)
    s = re.sub(r"(?<=\d)\s*(hrs?|h)\b", " hours", s)
    s = re.sub(r"(?<=\d)\s*(mins?)\b", " minutes", s)
    s = re.sub(r"(?<=\d|n)\s*-?\s*ish\b", "", s)  # "9ish", "10am-ish", "noonish": about that time
    words = s.split()
    s = " ".join(_ABBREVIATIONS.get(w, w) for w in words)
    # Spoken times: "half past four", "quarter to five", "four thirty", "ten am".
    s = re.sub(
        r"\b(half|quarter) (past|after|to|til|till) (\w+)\b",
        lambda m: _spoken_relative(m.group(1), m.group(2), m.group(3)),
        s,
    )
    minutes = "|".join(sorted(_MINUTE_WORDS, key=len, reverse=True))
    hours = "|".join(_NUMBER_WORDS)
    # British "half 3" is 3:30 ("half an hour", "half past" are not)
    s = re.sub(
        rf"\bhalf (\d{{1,2}}|{hours})\b(?!\s*(?:hours?|minutes?|days?|weeks?|:))",
        lambda m: f"{_NUMBER_WORDS.get(m.group(1)) or int(m.group(1))}:30", s,
    )
    s = re.sub(
        rf"\b({hours}) ({minutes})\b(?!\s*(?:minutes?|hours?|days?))",
        lambda m: f"{_NUMBER_WORDS[m.group(1)]}:{_MINUTE_WORDS[m.group(2)]:02d}",
        s,
    )
    s = re.sub(
        rf"\b({hours})\b(?=\s*(?:am|pm|a\b|p\b|in the|tomorrow|today|on\b|this\b|$))",
        lambda m: str(_NUMBER_WORDS[m.group(1)]), s,
    )
    s = re.sub(rf"\b(at|around|by) ({hours})\b", lambda m: f"{m.group(1)} {_NUMBER_WORDS[m.group(2)]}", s)
    # Spoken dates: "december third", "the twenty first".
    s = re.sub(
        r"\b(?:(twenty|thirty)[ -])?(" + "|".join(_ORDINAL_WORDS) + r")\b",
        lambda m: _ordinal(m.group(1), m.group(2)),
        s,
    )
    return " ".join(s.split())


def _spoken_relative(kind: str, rel: str, hour_word: str) -> str:
    hour = _NUMBER_WORDS.get(hour_word) or (int(hour_word) if hour_word.isdigit() else None)
    if hour is None:
        return f"{kind} {rel} {hour_word}"
    minutes = 30 if kind == "half" else 15
    if rel in ("to", "til", "till"):
        hour, minutes = (hour - 1) or 12, 60 - minutes
    return f"{hour}:{minutes:02d}"


def _ordinal(tens: str | None, unit: str) -> str:
    value = _ORDINAL_WORDS[unit] + {"twenty": 20, "thirty": 30}.get(tens or "", 0)
    if value > 31 or (unit in ("first", "second") and tens is None):
        return f"{tens + ' ' if tens else ''}{unit}"  # "first available", "a second": not dates
    return f"{value}th"


# ------------------------------------------------------------------ business hours


_DAY_KEYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@lru_cache(maxsize=64)
def _hours_table(specs: tuple[str | None, ...]) -> tuple[tuple[tuple[int, int], ...], ...]:
    """Per weekday (Mon=0), the open ranges in minutes since midnight."""
    table: list[tuple[tuple[int, int], ...]] = []
    for spec in specs:
        ranges: list[tuple[int, int]] = []
        if spec and spec.strip().lower() != "closed":
            for part in spec.split(","):
                match = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*", part)
                if match:
                    a, b, c, d = (int(g) for g in match.groups())
                    ranges.append((a * 60 + b, c * 60 + d))
        table.append(tuple(ranges))
    return tuple(table)


class _Hours:
    def __init__(self, hours: schema.BusinessHours | None) -> None:
        hours = hours or _DEFAULT_HOURS
        self.table = _hours_table(tuple(getattr(hours, day) for day in _DAY_KEYS))
        every = [r for day in self.table for r in day]
        self.any_open = bool(every)
        self.union = tuple(every) or ((9 * 60, 17 * 60),)

    def opening(self, day: dt.date) -> tuple[int, int]:
        ranges = self.table[day.weekday()] or self.union
        start = min(r[0] for r in ranges)
        return divmod(start, 60)

    def closing(self, day: dt.date) -> tuple[int, int]:
        """The day's last closing time (a closed day: the latest closing of the week, 17:00 without hours)."""
        ranges = self.table[day.weekday()] or self.union
        return divmod(max(r[1] for r in ranges), 60)

    def edge(self, day: dt.date, marker: int) -> tuple[int, int]:
        return self.opening(day) if marker == _OPENING else self.closing(day)

    def is_open(self, day: dt.date | None, minutes: int) -> bool:
        ranges = self.table[day.weekday()] if day is not None else self.union
        return any(a <= minutes < b for a, b in ranges)

    def next_open(self, when: dt.datetime) -> dt.datetime:
        """The first open moment at or after `when` (unchanged when nothing is ever open)."""
        if not self.any_open:
            return when
        for offset in range(0, 15):
            day = when.date() + dt.timedelta(days=offset)
            for a, b in sorted(self.table[day.weekday()]):
                start = _local(day, *divmod(a, 60), when.tzinfo)
                end = _local(day, *divmod(b, 60), when.tzinfo)
                if when < end:
                    return max(when, start)
        return when


_DEFAULT_HOURS = schema.default_business_hours()


def _local(day: dt.date, hour: int, minute: int, tz: Any) -> dt.datetime:
    """A wall-clock time on a day in `tz`; a time skipped by DST moves forward (2:30 -> 3:30)."""
    naive = dt.datetime(day.year, day.month, day.day, hour % 24, minute)
    aware = naive.replace(tzinfo=tz)
    return aware.astimezone(UTC).astimezone(tz)


# ------------------------------------------------------------------ parsing


@dataclass(slots=True)
class _Found:
    day: dt.date | None = None
    hour: int | None = None
    minute: int = 0
    meridiem: str | None = None  # "am" | "pm" | None (bare)
    exact: dt.datetime | None = None  # "in 2 hours", ISO datetimes
    clarify: str | None = None
    alternative: dt.date | None = None  # "next friday": the other reading
    weekday_today: bool = False  # the day came from a weekday name that is today
    before: bool = False  # "before 10": some time earlier than the hour named


def _cut(text: str, match: re.Match[str]) -> str:
    return f"{text[: match.start()]} {text[match.end():]}"


def _find_time(s: str, found: _Found) -> str:
    period: str | None = None
    m = _T_ISO.search(s)
    if m and m.group("h"):
        found.hour, found.minute, found.meridiem = int(m.group("h")), int(m.group("m")), "24h"
    m_period = _T_PERIOD.search(s)
    if m_period:
        period = m_period.group("p")
    if found.hour is None and (m := _T_AMPM.search(s)):
        found.hour, found.minute = int(m.group("h")), int(m.group("m") or 0)
        found.meridiem = "am" if m.group("ap").startswith("a") else "pm"
        found.before = _BEFORE.search(s, 0, m.start()) is not None
        s = _cut(s, m)
    elif found.hour is None and (m := _T_CLOCK.search(s)):
        found.hour, found.minute = int(m.group("h")), int(m.group("m"))
        found.before = _BEFORE.search(s, 0, m.start()) is not None
        s = _cut(s, m)
    elif found.hour is None and (m := _T_AT.search(s)):
        found.hour, found.minute = int(m.group("h")), int(m.group("m") or 0)
        found.before = m.group("pre") in ("before", "until", "till", "til")
        s = _cut(s, m)
    elif found.hour is None and (m := _T_DAY_HOUR.search(s)):
        found.hour, found.minute = int(m.group("h")), int(m.group("m") or 0)
        s = f"{s[: m.start('hm')]} {s[m.end('hm'):]}"  # the day word stays for _find_day
    elif found.hour is None and (m := _T_HOUR_DAY.search(s)) and not _after_month(s, m.start()):
        found.hour, found.minute = int(m.group("h")), int(m.group("m") or 0)
        s = _cut(s, m)
    if period is not None and m_period is not None:
        if found.hour is None:
            found.hour, found.minute = _PERIODS[period]
            found.meridiem = "24h"
            found.before = m_period.group("pre") is not None
        elif found.meridiem is None:
            found.meridiem = "pm" if period in _PM_PERIODS else "am" if period in _AM_PERIODS else None
        if period in ("tonight",) and found.day is None:
            found.day = dt.date.min  # marker: today, set by the caller
        s = s.replace(period, " ")
    if found.hour is not None and (found.hour > 23 or found.minute > 59):
        found.hour = None  # "at 45": not a time
    return s


def _after_month(s: str, at: int) -> bool:
    """True when the number at `at` follows a month name ("dec 3 friday": a date, not an hour)."""
    before = s[:at].split()
    return bool(before) and before[-1].rstrip(".") in _MONTHS


_COUNTS = {"a": 1, "an": 1, "half an": 0.5, "half a": 0.5, "one": 1, "two": 2, "three": 3, "four": 4,
           "five": 5, "six": 6, "seven": 7, "ten": 10}


def _count(raw: str) -> float:
    if "couple" in raw:
        return 2.0
    n = _COUNTS.get(raw)
    return float(raw) if n is None else float(n)


def _offset(found: _Found, amount: float, unit: str) -> None:
    """An offset from now ("in 2 hours"), resolved by the caller against the turn's clock."""
    found.exact = dt.datetime.min.replace(tzinfo=UTC) + dt.timedelta(
        seconds=amount * (60 if unit == "minute" else 3600)
    )


def _find_day(s: str, found: _Found, today: dt.date, us_order: bool) -> str:
    if found.day == dt.date.min:
        found.day = today
    if (m := _T_ISO.search(s)) is not None:
        try:
            found.day = dt.date(int(m.group("y")), int(m.group("mo")), int(m.group("d")))
        except ValueError:
            found.clarify = "That date doesn't exist. Which day did you mean?"
        return _cut(s, m)
    if (m := _D_WEEKS_FROM.search(s)) is not None:
        weeks = 2 if m.group("fortnight") else _count(m.group("n"))
        if m.group("wd"):
            base = today + dt.timedelta(days=(_WEEKDAYS[m.group("wd")] - today.weekday()) % 7)
        else:
            base = today + dt.timedelta(days=1 if m.group("tomorrow") else 0)
        found.day = base + dt.timedelta(days=round(7 * weeks))
        return _cut(s, m)
    if (m := _D_THIS_TIME.search(s)) is not None:
        _offset(found, 24 if m.group("when") == "tomorrow" else 24 * 7, "hour")
        return _cut(s, m)
    if (m := _D_FROM_NOW.search(s) or _D_IN.search(s)) is not None:
        amount = _count(m.group("n")) + (0.5 if m.group("half") else 0)
        unit = m.group("unit").rstrip("s")
        if unit in ("minute", "hour"):
            _offset(found, amount, unit)
        else:
            days = {"week": 7, "fortnight": 14}.get(unit, 1)
            found.day = today + dt.timedelta(days=round(amount * days))
        return _cut(s, m)
    if (m := _D_NEXT_WEEK.search(s)) is not None:
        monday = today + dt.timedelta(days=7 - today.weekday())
        s = _cut(s, m)
        if (w := _D_WEEKDAY.search(s)) is not None:  # "tuesday next week": that day of next week
            found.day = monday + dt.timedelta(days=_WEEKDAYS[w.group("wd")])
            return _cut(s, w)
        found.day = monday
        return s
    if (m := _D_MONTHNAME.search(s)) is not None:
        month = _MONTHS[m.group("m1") or m.group("m2")]
        day = int(m.group("d1") or m.group("d2"))
        found.day = _future_date(today, month, day, m.group("y"), found)
        return _cut(s, m)
    if (m := _D_NUMERIC.search(s)) is not None:
        a, b = int(m.group("a")), int(m.group("b"))
        month, day = (a, b) if us_order else (b, a)
        found.day = _future_date(today, month, day, m.group("y"), found)
        return _cut(s, m)
    if (m := _D_REL.search(s)) is not None:
        found.day = today + dt.timedelta(days=2 if m.group("dat") else 1 if m.group("tomorrow") else 0)
        s = _cut(s, m)
    if (m := _D_WEEKDAY.search(s)) is not None:
        weekday = _WEEKDAYS[m.group("wd")]
        ahead = (weekday - today.weekday()) % 7
        coming = today + dt.timedelta(days=ahead)
        found.weekday_today = ahead == 0
        mod = m.group("mod") or ""
        if mod == "upcoming" and ahead == 0:  # "upcoming thursday" said on a Thursday: next week's
            coming += dt.timedelta(days=7)
            found.weekday_today = False
        elif mod == "next":
            if ahead == 0:
                coming += dt.timedelta(days=7)
                found.weekday_today = False
            elif coming.isocalendar()[1] == today.isocalendar()[1]:
                found.alternative = coming + dt.timedelta(days=7)  # this week's or next week's?
        if found.day is None or found.day != coming:
            found.day = coming
        return _cut(s, m)
    if (m := _D_ORDINAL.search(s)) is not None:
        day = int(m.group("d"))
        month, year = today.month, today.year
        if day < today.day:
            month, year = (1, year + 1) if month == 12 else (month + 1, year)
        found.day = _safe_date(year, month, day, found)
        return _cut(s, m)
    return s


def _safe_date(year: int, month: int, day: int, found: _Found) -> dt.date | None:
    try:
        return dt.date(year, month, day)
    except ValueError:
        found.clarify = "That date doesn't exist. Which day did you mean?"
        return None


def _future_date(today: dt.date, month: int, day: int, year: str | None, found: _Found) -> dt.date | None:
    if year:
        y = int(year)
        return _safe_date(y + 2000 if y < 100 else y, month, day, found)
    when = _safe_date(today.year, month, day, found)
    if when is not None and when < today:
        when = _safe_date(today.year + 1, month, day, found)
    return when


def _resolve_hour(found: _Found, hours: _Hours, day: dt.date | None) -> int:
    """The 24 h hour for what was said: "4" -> 16 when 16:00 is open and 4:00 is not."""
    h = found.hour or 0
    if found.meridiem == "am":
        return 0 if h == 12 else h
    if found.meridiem == "pm":
        return h if h == 12 else h + 12
    if found.meridiem == "24h" or h == 0 or h > 12:
        return h
    if h == 12:
        return 12
    minutes = found.minute
    am_open = hours.is_open(day, h * 60 + minutes)
    pm_open = hours.is_open(day, (h + 12) * 60 + minutes)
    if am_open != pm_open:
        return h if am_open else h + 12
    return h if 7 <= h <= 11 else h + 12  # both or neither open: what people usually mean


def _before(found: _Found, hours: _Hours, day: dt.date, limit: dt.datetime) -> dt.datetime:
    """"before 10": the day's opening when it is earlier, else an hour before the limit."""
    if not found.before:
        return limit
    opening = _local(day, *hours.opening(day), limit.tzinfo)
    return opening if opening < limit else limit - dt.timedelta(hours=1)


def _fmt_day(day: dt.date) -> str:
    return f"{_DAY_NAMES[day.weekday()]}, {_MONTH_NAMES[day.month - 1]} {day.day}"


def _fmt_time(hour: int, minute: int) -> str:
    return f"{hour % 12 or 12}:{minute:02d} {'AM' if hour < 12 else 'PM'}"


_EXAMPLES = {
    "datetime": "You can say things like 'tomorrow at 10am' or 'Friday afternoon'.",
    "date": "You can say things like 'tomorrow', 'next Tuesday' or 'December 3'.",
    "time": "You can say things like '10am' or '3:30pm'.",
}


def parse_when(
    text: str,
    *,
    now: dt.datetime,
    tz: str,
    language: str = "en",
    business_hours: schema.BusinessHours | None = None,
    min_notice_seconds: float = 3600,
    want: Want = "datetime",
) -> ParsedTime:
    """Read a date/time answer relative to `now` in the flow's timezone `tz`.

    `language` may carry a country (`"en-US"`): US-style numeric dates read month/day."""
    zone = _zone(tz)
    local_now = now.astimezone(zone) if now.tzinfo else now.replace(tzinfo=zone)
    today = local_now.date()
    hours = _Hours(business_hours)
    lang, _, region = language.replace("_", "-").partition("-")
    us_order = region.upper() in ("", "US", "CA", "PH") and lang.lower() == "en"
    rules = _RULES[language]
    s = _normalise(text if rules.canonical else canonical.time_text(rules, text))

    if not s:
        return ParsedTime(None, "none", _EXAMPLES[want])
    found = _Found()
    rest = _find_time(s, found)
    _find_day(rest, found, today, us_order)
    if found.day == dt.date.min:
        found.day = today
    earliest = hours.next_open(local_now + dt.timedelta(seconds=min_notice_seconds)).astimezone(zone)
    asap = _ASAP.search(s) is not None
    anytime = not asap and _ANY_TIME.search(s) is not None
    if found.day is not None and found.day > today and found.hour is None and (asap or anytime):
        # "any time tomorrow": the day's opening time
        return ParsedTime(hours.next_open(_local(found.day, *hours.opening(found.day), zone)), "exact")
    named = found.hour is not None or found.exact is not None or (found.day is not None and found.day != today)
    if ((asap or anytime) and not named) or s in ("today", "today please", "this week"):
        if s.startswith("today") and earliest.date() != today:
            return ParsedTime(earliest, "ambiguous",
                              f"We're fully closed for today. The earliest is {_fmt_day(earliest.date())} "
                              f"at {_fmt_time(earliest.hour, earliest.minute)}. Does another day work?")
        preference: Preference | None = "asap" if asap else "any" if anytime else None
        return ParsedTime(earliest, "earliest", preference=preference)

    if found.clarify:
        return ParsedTime(None, "none", f"{found.clarify} {_EXAMPLES[want]}")
    if found.exact is not None:
        offset = found.exact - dt.datetime.min.replace(tzinfo=UTC)
        value = (local_now.astimezone(UTC) + offset).astimezone(zone)
        return ParsedTime(value, "exact", has_time=True)

    if found.day is None and found.hour is None:
        bare = _BARE_NUMBER.match(s)
        if bare:  # "4": an hour? a day of the month? a menu digit?
            found.hour, found.minute = int(bare.group("h")), int(bare.group("m") or 0)
            if found.hour > 23 or found.minute > 59:
                return ParsedTime(None, "none", f"Sorry, I didn't catch a day or time. {_EXAMPLES[want]}")
            hour = _resolve_hour(found, hours, today)
            guess = _local(today, hour, found.minute, zone)
            if guess <= local_now:
                guess = _local(today + dt.timedelta(days=1), hour, found.minute, zone)
            if want == "time":
                return ParsedTime(guess, "exact", has_time=True)
            return ParsedTime(
                guess, "ambiguous",
                f"Did you mean {_fmt_day(guess.date())} at {_fmt_time(guess.hour, guess.minute)}? "
                f"Please say the day and the time, like 'tomorrow at 10am'.",
                has_time=True,
            )
        return _fallback(text, local_now, zone, lang or "en", hours, want)

    has_time = found.hour is not None
    day = found.day
    if want == "time" and not has_time:
        return ParsedTime(None, "none", f"What time would suit you? {_EXAMPLES['time']}")
    if day is None and found.hour in (_OPENING, _CLOSING):
        marker = found.hour
        day = today if _local(today, *hours.edge(today, marker), zone) > local_now else today + dt.timedelta(days=1)
        found.day = day
        return ParsedTime(_local(day, *hours.edge(day, marker), zone), "exact", has_time=True)
    if day is None:
        hour = _resolve_hour(found, hours, None)
        value = _before(found, hours, today, _local(today, hour, found.minute, zone))
        if value <= local_now:
            tomorrow = today + dt.timedelta(days=1)
            value = _before(found, hours, tomorrow, _local(tomorrow, hour, found.minute, zone))
        if want == "time":
            value = _before(found, hours, today, _local(today, hour, found.minute, zone))
        return ParsedTime(value, "exact", has_time=True)

    if found.hour in (_OPENING, _CLOSING):
        value = _local(day, *hours.edge(day, found.hour), zone)
    elif has_time:
        hour = _resolve_hour(found, hours, day)
        value = _before(found, hours, day, _local(day, hour, found.minute, zone))
    else:
        value = _local(day, *hours.opening(day), zone)
    if found.weekday_today and value <= local_now:
        day = day + dt.timedelta(days=7)  # "wednesday" on a Wednesday after the time: next week
        value = _local(day, value.hour, value.minute, zone)
    if found.alternative is not None and want != "time":
        other = found.alternative
        return ParsedTime(
            value, "ambiguous",
            f"Do you mean this {_DAY_NAMES[day.weekday()]}, {_MONTH_NAMES[day.month - 1]} {day.day}, "
            f"or {_fmt_day(other)}?",
            has_time=has_time,
        )
    return ParsedTime(value, "exact", has_time=has_time)


# ------------------------------------------------------------------ dateparser


@lru_cache(maxsize=32)
def _zone(tz: str) -> ZoneInfo:
    return ZoneInfo(tz)


@lru_cache(maxsize=16)
def _parser(language: str) -> Any:
    from dateparser.date import DateDataParser  # ~70 ms import: only when first needed

    return DateDataParser(languages=[language], settings={"PREFER_DATES_FROM": "future"})


def _fallback(
    text: str, local_now: dt.datetime, zone: ZoneInfo, language: str, hours: _Hours, want: Want
) -> ParsedTime:
    if not re.search(r"[a-z0-9]", text.lower()):
        return ParsedTime(None, "none", f"Sorry, I didn't catch a day or time. {_EXAMPLES[want]}")
    import dateparser

    base = local_now.replace(tzinfo=None, second=0, microsecond=0)
    try:
        parsed = dateparser.parse(
            text,
            languages=[language],
            settings={
                "PREFER_DATES_FROM": "future",
                "RELATIVE_BASE": base,
                "TIMEZONE": zone.key,
                "RETURN_AS_TIMEZONE_AWARE": True,
            },
        )
    except Exception:  # dateparser raises assorted errors on odd input; treat as not understood
        parsed = None
    if parsed is None:
        return ParsedTime(None, "none", f"Sorry, I didn't catch a day or time. {_EXAMPLES[want]}")
    value = parsed.astimezone(zone)
    naive = value.replace(tzinfo=None)
    has_time = naive.time() not in (dt.time(0, 0), base.time())
    if want == "time" and not has_time:
        return ParsedTime(None, "none", f"What time would suit you? {_EXAMPLES['time']}")
    if not has_time:
        value = _local(value.date(), *hours.opening(value.date()), zone)
    return ParsedTime(value, "exact", has_time=has_time)


def warm_up(language: str = "en") -> None:
    """Pay dateparser's import and first-parse cost (~100+ ms) at start-up, not on a turn."""
    now = dt.datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    lang = language.replace("_", "-").partition("-")[0] or "en"
    rules = _RULES[language]
    if not rules.canonical:
        canonical.time_text(rules, "warm up")  # compiles the language's tables
    _fallback("the 3rd of next month", now, _zone("UTC"), lang, _Hours(None), "datetime")
