"""Natural-language dates and times, relative to a fixed clock: Wed 2026-11-25 12:00 New York."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from orchestrator.engine.timeparse import ParsedTime, parse_when, warm_up
from orchestrator.flow.schema import BusinessHours

NY = "America/New_York"
NOW = dt.datetime(2026, 11, 25, 12, 0, tzinfo=ZoneInfo(NY))  # a Wednesday


def when(text: str, **kw: object) -> ParsedTime:
    args: dict[str, object] = {"now": NOW, "tz": NY, "language": "en-US"}
    args.update(kw)
    return parse_when(text, **args)  # type: ignore[arg-type]


# (phrase, expected local "YYYY-MM-DD HH:MM", kind)
TABLE = [
    # texted
    ("tmrw 10am", "2026-11-26 10:00", "exact"),
    ("tomorrow at 10", "2026-11-26 10:00", "exact"),  # dateparser alone: 12:00 (drops the 10)
    ("10am tomorrow", "2026-11-26 10:00", "exact"),
    ("thursday at 4", "2026-11-26 16:00", "exact"),  # dateparser alone: 2027-04-25
    ("thu 4pm", "2026-11-26 16:00", "exact"),
    ("next tues at 3pm", "2026-12-01 15:00", "exact"),
    ("Friday afternoon", "2026-11-27 14:00", "exact"),
    ("Monday morning", "2026-11-30 09:00", "exact"),
    ("tomorrow evening", "2026-11-26 17:00", "exact"),
    ("12/3", "2026-12-03 09:00", "exact"),  # US order: December 3, at opening time
    ("december 3rd at 9:30", "2026-12-03 09:30", "exact"),
    ("Dec 3, 2027", "2027-12-03 09:00", "exact"),
    ("3 dec", "2026-12-03 09:00", "exact"),
    ("11/20", "2027-11-20 09:00", "exact"),  # already past this year: next year
    ("2026-12-03", "2026-12-03 09:00", "exact"),
    ("2026-12-03T10:00", "2026-12-03 10:00", "exact"),
    ("the 5th", "2026-12-05 09:00", "exact"),
    ("in 2 hours", "2026-11-25 14:00", "exact"),
    ("in half an hour", "2026-11-25 12:30", "exact"),
    ("in 3 days", "2026-11-28 09:00", "exact"),
    ("at 2", "2026-11-25 14:00", "exact"),
    ("at 10", "2026-11-26 10:00", "exact"),  # 10:00 today has passed
    ("10:30", "2026-11-26 10:30", "exact"),
    ("noon tomorrow", "2026-11-26 12:00", "exact"),
    ("next week", "2026-11-30 09:00", "exact"),
    ("sometime next week", "2026-11-30 09:00", "exact"),
    ("wednesday at 4", "2026-11-25 16:00", "exact"),  # today, still ahead
    ("wednesday at 10", "2026-12-02 10:00", "exact"),  # today's passed: next week
    ("wednesday", "2026-12-02 09:00", "exact"),
    ("the day after tomorrow at 11", "2026-11-27 11:00", "exact"),
    ("tonight", "2026-11-25 17:00", "exact"),
    ("first thing monday", "2026-11-30 09:00", "exact"),
    ("any time tomorrow", "2026-11-26 09:00", "exact"),
    ("I'd like Tuesday at 8", "2026-12-01 08:00", "exact"),
    ("can I come in thursday around 2?", "2026-11-26 14:00", "exact"),
    ("4.30pm friday", "2026-11-27 16:30", "exact"),
    ("Friday @ 3", "2026-11-27 15:00", "exact"),
    ("the 3rd of next month", "2026-12-03 09:00", "exact"),
    # spoken (speech recogniser output)
    ("Thursday at four thirty", "2026-11-26 16:30", "exact"),
    ("half past three tomorrow", "2026-11-26 15:30", "exact"),
    ("quarter to five on Monday", "2026-11-30 16:45", "exact"),
    ("four p.m. on Friday", "2026-11-27 16:00", "exact"),
    ("December third at nine thirty", "2026-12-03 09:30", "exact"),
    ("tomorrow at ten o'clock", "2026-11-26 10:00", "exact"),
    # the earliest
    ("asap", "2026-11-25 13:00", "earliest"),
    ("As soon as possible!", "2026-11-25 13:00", "earliest"),
    ("any time", "2026-11-25 13:00", "earliest"),
    ("whenever", "2026-11-25 13:00", "earliest"),
    ("earliest you have", "2026-11-25 13:00", "earliest"),
    ("today", "2026-11-25 13:00", "earliest"),
    # ambiguous: the likeliest reading and a question
    ("4", "2026-11-25 16:00", "ambiguous"),
    ("next friday", "2026-11-27 09:00", "ambiguous"),
]


@pytest.mark.parametrize(("text", "expected", "kind"), TABLE)
def test_phrasings(text: str, expected: str, kind: str) -> None:
    result = when(text)
    assert result.kind == kind, result
    assert result.value is not None
    assert result.value.tzinfo is not None
    assert result.value.strftime("%Y-%m-%d %H:%M") == expected
    assert result.value.utcoffset() == ZoneInfo(NY).utcoffset(result.value.replace(tzinfo=None))
    assert (result.clarify is not None) == (kind == "ambiguous")


@pytest.mark.parametrize("text", ["banana", "", "   ", "???", "purple elephant"])
def test_not_understood(text: str) -> None:
    result = when(text)
    assert result.kind == "none" and result.value is None
    assert result.clarify and "tomorrow at 10am" in result.clarify


def test_clarifying_questions_name_the_options() -> None:
    assert "Friday, November 27" in (when("next friday").clarify or "")
    assert "Friday, December 4" in (when("next friday").clarify or "")
    assert "4:00 PM" in (when("4").clarify or "")


def test_impossible_date() -> None:
    result = when("february 30")
    assert result.kind == "none" and "doesn't exist" in (result.clarify or "")


def test_earliest_moves_to_the_next_opening() -> None:
    evening = NOW.replace(hour=16, minute=30)  # 16:30 + 1 h notice = after closing
    result = when("asap", now=evening)
    assert result.kind == "earliest"
    assert result.value == dt.datetime(2026, 11, 26, 9, 0, tzinfo=ZoneInfo(NY))
    friday_late = dt.datetime(2026, 11, 27, 18, 0, tzinfo=ZoneInfo(NY))
    assert when("asap", now=friday_late).value == dt.datetime(2026, 11, 30, 9, 0, tzinfo=ZoneInfo(NY))
    assert when("asap", min_notice_seconds=0).value == NOW


def test_bare_hours_follow_the_business_hours() -> None:
    late = BusinessHours(mon="13:00-21:00", tue="13:00-21:00", wed="13:00-21:00", thu="13:00-21:00",
                         fri="13:00-21:00")
    assert when("thursday at 8", business_hours=late).value.hour == 20  # type: ignore[union-attr]
    assert when("thursday at 8").value.hour == 8  # type: ignore[union-attr]
    early = BusinessHours(thu="06:00-14:00")
    assert when("thursday at 6", business_hours=early).value.hour == 6  # type: ignore[union-attr]
    assert when("thursday at 6").value.hour == 18  # type: ignore[union-attr]
    # a date alone is read at that day's opening time
    assert when("thursday", business_hours=late).value.hour == 13  # type: ignore[union-attr]


def test_want_time_and_date() -> None:
    assert when("3:30pm", want="time").value.strftime("%H:%M") == "15:30"  # type: ignore[union-attr]
    assert when("at 4", want="time").value.strftime("%H:%M") == "16:00"  # type: ignore[union-attr]
    no_time = when("tomorrow", want="time")
    assert no_time.kind == "none" and "What time" in (no_time.clarify or "")
    assert when("next tuesday", want="date").value.date() == dt.date(2026, 12, 1)  # type: ignore[union-attr]
    assert when("4", want="time").kind == "exact"  # a bare number is clearly an hour here


def test_day_month_order_outside_the_us() -> None:
    assert when("12/3", language="en-GB").value.date() == dt.date(2027, 3, 12)  # type: ignore[union-attr]
    assert when("3/12", language="en-GB").value.date() == dt.date(2026, 12, 3)  # type: ignore[union-attr]


def test_naive_now_is_read_in_the_flow_timezone() -> None:
    naive = NOW.replace(tzinfo=None)
    assert when("tmrw 10am", now=naive).value == when("tmrw 10am").value


def test_now_in_another_zone_is_converted() -> None:
    utc_now = NOW.astimezone(dt.UTC)  # 17:00 UTC, same instant
    assert when("at 2", now=utc_now).value == dt.datetime(2026, 11, 25, 14, 0, tzinfo=ZoneInfo(NY))


# ------------------------------------------------------------------ far from UTC, DST

def test_far_from_utc_kolkata() -> None:
    tz = "Asia/Kolkata"
    # 2026-11-25 20:00 UTC is already Thursday 01:30 in Kolkata
    now = dt.datetime(2026, 11, 25, 20, 0, tzinfo=dt.UTC)
    tomorrow = parse_when("tomorrow at 10", now=now, tz=tz, language="en-IN")
    assert tomorrow.value == dt.datetime(2026, 11, 27, 10, 0, tzinfo=ZoneInfo(tz))
    assert tomorrow.value.isoformat() == "2026-11-27T10:00:00+05:30"  # type: ignore[union-attr]
    today = parse_when("at 4", now=now, tz=tz, language="en-IN")
    assert today.value == dt.datetime(2026, 11, 26, 16, 0, tzinfo=ZoneInfo(tz))


def test_far_from_utc_auckland() -> None:
    tz = "Pacific/Auckland"
    now = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)  # Thu 26 Nov 01:00 NZDT
    result = parse_when("friday at 9", now=now, tz=tz, language="en-NZ")
    assert result.value == dt.datetime(2026, 11, 27, 9, 0, tzinfo=ZoneInfo(tz))
    assert result.value.utcoffset() == dt.timedelta(hours=13)  # type: ignore[union-attr]


def test_dst_spring_forward() -> None:
    # Sat 2026-03-07 12:00 EST; the clocks jump 02:00 -> 03:00 on Sunday 2026-03-08
    now = dt.datetime(2026, 3, 7, 12, 0, tzinfo=ZoneInfo(NY))
    monday = parse_when("monday at 10", now=now, tz=NY)
    assert monday.value.isoformat() == "2026-03-09T10:00:00-04:00"  # type: ignore[union-attr]
    tomorrow = parse_when("tomorrow at 1am", now=now, tz=NY)
    assert tomorrow.value.isoformat() == "2026-03-08T01:00:00-05:00"  # type: ignore[union-attr]
    skipped = parse_when("tomorrow at 2:30am", now=now, tz=NY)  # does not exist: moves forward
    assert skipped.value.isoformat() == "2026-03-08T03:30:00-04:00"  # type: ignore[union-attr]
    # "in 24 hours" is 24 real hours, which reads 13:00 on the clock
    assert parse_when("in 24 hours", now=now, tz=NY).value.isoformat() == "2026-03-08T13:00:00-04:00"  # type: ignore[union-attr]


def test_dst_fall_back() -> None:
    now = dt.datetime(2026, 10, 31, 12, 0, tzinfo=ZoneInfo(NY))  # Saturday, EDT
    monday = parse_when("monday at 10", now=now, tz=NY)
    assert monday.value.isoformat() == "2026-11-02T10:00:00-05:00"  # type: ignore[union-attr]
    sunday = parse_when("tomorrow at 9am", now=now, tz=NY)
    assert sunday.value.isoformat() == "2026-11-01T09:00:00-05:00"  # type: ignore[union-attr]
    assert parse_when("in 24 hours", now=now, tz=NY).value.isoformat() == "2026-11-01T11:00:00-05:00"  # type: ignore[union-attr]


def test_warm_up_then_fallback_is_fast() -> None:
    import time

    warm_up("en-US")
    start = time.perf_counter()
    for _ in range(5):
        when("purple elephant")  # falls through to dateparser
    assert (time.perf_counter() - start) / 5 < 0.05


@pytest.mark.parametrize(
    ("text", "preference"),
    [
        ("asap", "asap"), ("ASAP please", "asap"), ("now", "asap"), ("right now", "asap"),
        ("as soon as possible", "asap"), ("earliest you have", "asap"),
        ("anytime", "any"), ("any time works", "any"), ("whenever", "any"), ("doesn't matter", "any"),
        ("today", None),
    ],
)
def test_asap_and_anytime_say_which_they_are(text: str, preference: str | None) -> None:
    result = when(text)
    assert result.kind == "earliest" and result.preference == preference
    assert result.value == dt.datetime(2026, 11, 25, 13, 0, tzinfo=ZoneInfo(NY))


def test_a_named_time_wins_over_a_stray_now() -> None:
    result = when("can't talk now, thursday at 4")
    assert result.kind == "exact" and result.preference is None
    assert result.value == dt.datetime(2026, 11, 26, 16, 0, tzinfo=ZoneInfo(NY))


# ------------------------------------------------------------------ as people text and say them (#14)

# Relative to Wed 2026-11-25 12:00 New York, open Mon-Fri 09:00-17:00 (the default hours).
PEOPLE = [
    # a bare hour beside a day, read against the opening hours
    ("next tuesday 3", "2026-12-01 15:00"),
    ("tuesday 3", "2026-12-01 15:00"),
    ("next tues 10", "2026-12-01 10:00"),
    ("10 tomorrow", "2026-11-26 10:00"),
    ("tomorrow 10", "2026-11-26 10:00"),
    ("3 tomorrow", "2026-11-26 15:00"),
    ("tmrw 2", "2026-11-26 14:00"),
    ("2 on friday", "2026-11-27 14:00"),
    ("friday 9 30", "2026-11-27 09:30"),
    ("thursday 4.30", "2026-11-26 16:30"),
    ("mon 11", "2026-11-30 11:00"),
    ("sat 11", "2026-11-28 11:00"),
    ("9 next monday", "2026-11-30 09:00"),
    # weeks from
    ("a week from today at 9", "2026-12-02 09:00"),
    ("a week from today", "2026-12-02 09:00"),
    ("a week from tomorrow at 2", "2026-12-03 14:00"),
    ("2 weeks from friday", "2026-12-11 09:00"),
    ("a week today", "2026-12-02 09:00"),
    ("a week on friday at 3", "2026-12-04 15:00"),
    ("in a week", "2026-12-02 09:00"),
    ("in a fortnight", "2026-12-09 09:00"),
    ("this time next week", "2026-12-02 12:00"),
    ("this time tomorrow", "2026-11-26 12:00"),
    # the edges of the day
    ("end of the day friday", "2026-11-27 17:00"),
    ("end of day tomorrow", "2026-11-26 17:00"),
    ("eod", "2026-11-25 17:00"),
    ("close of business monday", "2026-11-30 17:00"),
    ("first thing", "2026-11-26 09:00"),
    ("first thing tmrw", "2026-11-26 09:00"),
    ("first thing friday", "2026-11-27 09:00"),
    # before / after
    ("before 10 on monday", "2026-11-30 09:00"),
    ("before 3pm friday", "2026-11-27 09:00"),
    ("monday before 11am", "2026-11-30 09:00"),
    ("before lunch tomorrow", "2026-11-26 09:00"),
    ("after lunch", "2026-11-25 13:00"),
    ("tomorrow after lunch", "2026-11-26 13:00"),
    ("after 3 on thursday", "2026-11-26 15:00"),
    ("thursday after 2", "2026-11-26 14:00"),
    ("after work friday", "2026-11-27 17:30"),
    ("mid-morning thursday", "2026-11-26 10:30"),
    ("mid afternoon tomorrow", "2026-11-26 15:00"),
    # about
    ("around 2", "2026-11-25 14:00"),
    ("around 2ish tomorrow", "2026-11-26 14:00"),
    ("2ish tomorrow", "2026-11-26 14:00"),
    ("9ish on monday", "2026-11-30 09:00"),
    ("noonish friday", "2026-11-27 12:00"),
    ("tomorrow at 10am-ish", "2026-11-26 10:00"),
    ("about 4 tomorrow", "2026-11-26 16:00"),
    # abbreviations and slang
    ("tmrw", "2026-11-26 09:00"),
    ("tmr 3pm", "2026-11-26 15:00"),
    ("2moro at 4", "2026-11-26 16:00"),
    ("2mrw morning", "2026-11-26 09:00"),
    ("this arvo", "2026-11-25 14:00"),
    ("fri arvo", "2026-11-27 14:00"),
    ("tmrw arvo at 3", "2026-11-26 15:00"),
    ("2nite", "2026-11-25 17:00"),
    ("thurs @ 10", "2026-11-26 10:00"),
    ("10a tmrw", "2026-11-26 10:00"),
    ("3p fri", "2026-11-27 15:00"),
    ("half 3 tomorrow", "2026-11-26 15:30"),
    # offsets from now: exactly, never the earliest
    ("in 2 hours", "2026-11-25 14:00"),
    ("2 hours from now", "2026-11-25 14:00"),
    ("in 2hrs", "2026-11-25 14:00"),
    ("in 90 mins", "2026-11-25 13:30"),
    ("in an hour and a half", "2026-11-25 13:30"),
    ("in a couple of hours", "2026-11-25 14:00"),
    ("in a couple hours", "2026-11-25 14:00"),
    ("30 minutes from now", "2026-11-25 12:30"),
    # spoken
    ("tomorrow at ten", "2026-11-26 10:00"),
    ("next tuesday at three", "2026-12-01 15:00"),
    ("a week from today at nine", "2026-12-02 09:00"),
    ("friday at half past two", "2026-11-27 14:30"),
]


@pytest.mark.parametrize(("text", "expected"), PEOPLE)
def test_as_people_say_them(text: str, expected: str) -> None:
    result = when(text)
    assert result.kind == "exact", result
    assert result.value is not None
    assert result.value.strftime("%Y-%m-%d %H:%M") == expected, result
    assert result.value.utcoffset() == ZoneInfo(NY).utcoffset(result.value.replace(tzinfo=None))


def test_people_table_is_large() -> None:
    assert len(PEOPLE) >= 60


def test_in_two_hours_is_exactly_two_hours_from_now() -> None:
    now = dt.datetime(2026, 11, 25, 13, 7, 42, tzinfo=ZoneInfo(NY))
    for text in ("in 2 hours", "2 hours from now", "in two hours", "in 2 hrs"):
        result = when(text, now=now)
        assert result.kind == "exact" and result.preference is None, text
        assert result.value == now + dt.timedelta(hours=2), text


def test_bare_hour_beside_a_day_follows_the_business_hours() -> None:
    late = BusinessHours(mon="13:00-21:00", tue="13:00-21:00", wed="13:00-21:00", thu="13:00-21:00",
                         fri="13:00-21:00")
    assert when("next tuesday 8", business_hours=late).value.hour == 20  # type: ignore[union-attr]
    assert when("next tuesday 8").value.hour == 8  # type: ignore[union-attr]
    # "end of the day" is that day's closing time, "first thing" its opening
    assert when("end of the day friday", business_hours=late).value.hour == 21  # type: ignore[union-attr]
    assert when("first thing friday", business_hours=late).value.hour == 13  # type: ignore[union-attr]
    # "before 2" when the business opens at 13:00: an hour before, not the opening
    assert when("before 2 on monday", business_hours=late).value.hour == 13  # type: ignore[union-attr]
    assert when("before 1pm on monday", business_hours=late).value.hour == 12  # type: ignore[union-attr]


def test_a_day_number_is_not_a_bare_hour() -> None:
    assert when("dec 3 friday").value.strftime("%m-%d %H:%M") == "12-03 09:00"  # type: ignore[union-attr]
    assert when("friday 3rd").value.hour == 9  # type: ignore[union-attr]
    assert when("tuesday 3/12", language="en-GB").value.strftime("%m-%d") == "12-03"  # type: ignore[union-attr]
