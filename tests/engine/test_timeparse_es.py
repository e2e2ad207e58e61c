"""Spanish dates and times as people text and say them, relative to a fixed clock:
Thursday 2026-12-03 12:00 in Madrid, a salon open Mon-Fri 09:00-19:00, Sat 10:00-14:00.
With the default hour of notice the earliest bookable moment is today 13:00."""

from __future__ import annotations

import datetime as dt
import time
from zoneinfo import ZoneInfo

import pytest

from orchestrator.engine.timeparse import ParsedTime, parse_when
from orchestrator.flow.schema import BusinessHours

TZ = "Europe/Madrid"
NOW = dt.datetime(2026, 12, 3, 12, 0, tzinfo=ZoneInfo(TZ))  # a Thursday
HOURS = BusinessHours(
    mon="09:00-19:00", tue="09:00-19:00", wed="09:00-19:00", thu="09:00-19:00", fri="09:00-19:00",
    sat="10:00-14:00", sun="closed",
)


def cuando(text: str, language: str = "es-ES") -> ParsedTime:
    return parse_when(text, now=NOW, tz=TZ, language=language, business_hours=HOURS)


# (phrase, expected local "YYYY-MM-DD HH:MM" or None for "not understood", kind)
TABLE: list[tuple[str, str | None, str]] = [
    # the examples (dateparser alone: the hour dropped, the wrong weekday, nothing)
    ("mañana a las 11", "2026-12-04 11:00", "exact"),
    ("mañana a las 11:00", "2026-12-04 11:00", "exact"),
    ("el jueves a las 17:00", "2026-12-03 17:00", "exact"),  # today, still ahead
    ("jueves a las 11", "2026-12-10 11:00", "exact"),  # today's 11:00 has passed: next week
    ("la semana que viene el martes por la tarde", "2026-12-08 14:00", "exact"),
    ("mañana por la tarde", "2026-12-04 14:00", "exact"),
    ("4/12 17:30", "2026-12-04 17:30", "exact"),  # day/month
    # days
    ("hoy", "2026-12-03 13:00", "earliest"),
    ("hoy mismo", "2026-12-03 13:00", "earliest"),
    ("pasado mañana", "2026-12-05 10:00", "exact"),  # Saturday opens at 10
    ("el jueves", "2026-12-10 09:00", "exact"),
    ("el martes que viene", "2026-12-08 09:00", "exact"),
    ("el jueves que viene", "2026-12-10 09:00", "exact"),  # said on a Thursday: next week's
    ("el próximo jueves a las 17:00", "2026-12-10 17:00", "exact"),
    ("el próximo lunes a las 10", "2026-12-07 10:00", "exact"),
    ("el miércoles que viene por la tarde", "2026-12-09 14:00", "exact"),
    ("la semana que viene", "2026-12-07 09:00", "exact"),
    ("la próxima semana", "2026-12-07 09:00", "exact"),
    ("el martes de la semana que viene a las 10", "2026-12-08 10:00", "exact"),
    ("el sábado a las 11", "2026-12-05 11:00", "exact"),
    ("sábado a las 12", "2026-12-05 12:00", "exact"),
    ("el 4 de diciembre", "2026-12-04 09:00", "exact"),
    ("el 24 de diciembre a las 10", "2026-12-24 10:00", "exact"),
    ("el 15 de enero", "2027-01-15 09:00", "exact"),
    ("el primero de enero", "2027-01-01 09:00", "exact"),
    ("el 1 de enero", "2027-01-01 09:00", "exact"),
    ("15 de enero a las 12:30", "2027-01-15 12:30", "exact"),
    ("el día 10", "2026-12-10 09:00", "exact"),
    ("el lunes 7 a las 10:30", "2026-12-07 10:30", "exact"),  # a weekday and its date
    ("Miércoles 9 a las 10", "2026-12-09 10:00", "exact"),
    ("el viernes 11 a las 10", "2026-12-11 10:00", "exact"),
    ("el 10 a las 5", "2026-12-10 17:00", "exact"),
    ("7/12 a las 10", "2026-12-07 10:00", "exact"),
    ("el 4/12 a las 17:30", "2026-12-04 17:30", "exact"),
    ("2026-12-10 10:00", "2026-12-10 10:00", "exact"),
    ("de hoy en ocho", "2026-12-10 09:00", "exact"),
    ("dentro de dos semanas", "2026-12-17 09:00", "exact"),
    # hours read against the opening hours, as in English
    ("a las 5", "2026-12-03 17:00", "exact"),
    ("sobre las 4", "2026-12-03 16:00", "exact"),
    ("el lunes sobre las 3", "2026-12-07 15:00", "exact"),
    ("el lunes a eso de las 6", "2026-12-07 18:00", "exact"),
    ("mañana hacia las 9", "2026-12-04 09:00", "exact"),
    ("el viernes a las 9", "2026-12-04 09:00", "exact"),
    ("hoy a las 6", "2026-12-03 18:00", "exact"),
    ("mañana 10", "2026-12-04 10:00", "exact"),
    ("a las 10 mañana", "2026-12-04 10:00", "exact"),
    ("a las doce", "2026-12-04 12:00", "exact"),  # today's noon is now: tomorrow
    ("mañana a la una", "2026-12-04 13:00", "exact"),
    ("a las 21", "2026-12-03 21:00", "exact"),
    ("a las 17 horas", "2026-12-03 17:00", "exact"),
    ("en 2h", "2026-12-03 14:00", "exact"),  # a duration, not 2 o'clock
    # minutes
    ("a las 5 y media", "2026-12-03 17:30", "exact"),
    ("a las cinco y media", "2026-12-03 17:30", "exact"),
    ("sobre las 4 y media", "2026-12-03 16:30", "exact"),
    ("el viernes a las 9 y cuarto", "2026-12-04 09:15", "exact"),
    ("a las 4 menos cuarto", "2026-12-03 15:45", "exact"),
    ("a las once menos cuarto", "2026-12-04 10:45", "exact"),
    ("a las 3 menos diez", "2026-12-03 14:50", "exact"),
    ("mañana a las 10 y 20", "2026-12-04 10:20", "exact"),
    ("a la una y media", "2026-12-03 13:30", "exact"),
    ("mañana 17:30", "2026-12-04 17:30", "exact"),
    ("mañana a las 10.30", "2026-12-04 10:30", "exact"),
    ("mañana 10:30h", "2026-12-04 10:30", "exact"),
    ("mañana a las 17h", "2026-12-04 17:00", "exact"),
    ("a las 10h30", "2026-12-04 10:30", "exact"),
    # morning / afternoon said with the hour
    ("a las 7 de la tarde", "2026-12-03 19:00", "exact"),
    ("a las 8 de la noche", "2026-12-03 20:00", "exact"),
    ("a las 10 de la mañana", "2026-12-04 10:00", "exact"),
    ("mañana a las 11 de la mañana", "2026-12-04 11:00", "exact"),
    ("mañana sobre las 6 de la tarde", "2026-12-04 18:00", "exact"),
    ("esta tarde a las 5", "2026-12-03 17:00", "exact"),
    # parts of the day
    ("el jueves por la tarde", "2026-12-03 14:00", "exact"),
    ("esta tarde", "2026-12-03 14:00", "exact"),
    ("hoy por la tarde", "2026-12-03 14:00", "exact"),
    ("por la mañana", "2026-12-04 09:00", "exact"),
    ("mañana por la mañana", "2026-12-04 09:00", "exact"),
    ("el sabado por la tarde", "2026-12-05 14:00", "exact"),
    ("al mediodía", "2026-12-04 12:00", "exact"),
    ("a primera hora", "2026-12-04 09:00", "exact"),
    ("mañana a primera hora", "2026-12-04 09:00", "exact"),
    ("el viernes a primera hora", "2026-12-04 09:00", "exact"),
    ("a última hora", "2026-12-03 19:00", "exact"),
    ("a media mañana", "2026-12-04 10:30", "exact"),
    ("después de comer", "2026-12-03 13:00", "exact"),
    ("esta noche", "2026-12-03 17:00", "exact"),
    ("mañana por la noche", "2026-12-04 17:00", "exact"),
    ("mañana antes de las 10", "2026-12-04 09:00", "exact"),
    ("mañana a partir de las 4", "2026-12-04 16:00", "exact"),
    # offsets
    ("en 2 horas", "2026-12-03 14:00", "exact"),
    ("dentro de media hora", "2026-12-03 12:30", "exact"),
    ("en una hora", "2026-12-03 13:00", "exact"),
    # the earliest, no preference
    ("lo antes posible", "2026-12-03 13:00", "earliest"),
    ("cuanto antes", "2026-12-03 13:00", "earliest"),
    ("lo más pronto posible", "2026-12-03 13:00", "earliest"),
    ("ahora mismo", "2026-12-03 13:00", "earliest"),
    ("cuando sea", "2026-12-03 13:00", "earliest"),
    ("me da igual", "2026-12-03 13:00", "earliest"),
    ("esta semana", "2026-12-03 13:00", "earliest"),
    # as people write: no accents, capitals, abbreviations, words around
    ("manana a las 11", "2026-12-04 11:00", "exact"),
    ("el miercoles a las 12", "2026-12-09 12:00", "exact"),
    ("el sabado a las 11", "2026-12-05 11:00", "exact"),
    ("MAÑANA A LAS 11", "2026-12-04 11:00", "exact"),
    ("mñn a las 11", "2026-12-04 11:00", "exact"),
    ("pues mañana a las 11 si puede ser", "2026-12-04 11:00", "exact"),
    ("me vendría bien el jueves a las 11", "2026-12-10 11:00", "exact"),
    ("¿tenéis hueco mañana por la tarde?", "2026-12-04 14:00", "exact"),
    # not understood
    ("banana", None, "none"),
    ("el 31 de febrero", None, "none"),
]


def _fmt(value: dt.datetime | None) -> str | None:
    return value.strftime("%Y-%m-%d %H:%M") if value is not None else None


@pytest.mark.parametrize(("text", "expected", "kind"), TABLE, ids=[t for t, _, _ in TABLE])
def test_spanish_phrasings(text: str, expected: str | None, kind: str) -> None:
    parsed = cuando(text)
    assert (_fmt(parsed.value), parsed.kind) == (expected, kind)


def test_the_table_is_large() -> None:
    assert len(TABLE) >= 60


def test_asap_and_any_keep_their_preference() -> None:
    assert cuando("lo antes posible").preference == "asap"
    assert cuando("me da igual").preference == "any"


def test_a_time_is_named_or_not() -> None:
    assert cuando("mañana a las 11").has_time
    assert not cuando("pasado mañana").has_time


@pytest.mark.parametrize("tag", ["es", "es-ES", "es-MX", "es_AR", "ES-us"])
def test_every_spanish_tag_reads_spanish(tag: str) -> None:
    assert _fmt(cuando("mañana a las 11", language=tag).value) == "2026-12-04 11:00"


def test_english_words_stay_english() -> None:
    # the Spanish rules do not change what an English flow reads
    assert _fmt(cuando("tomorrow at 11", language="en-GB").value) == "2026-12-04 11:00"
    assert cuando("mañana a las 11", language="en-GB").value != cuando("mañana a las 11").value


def test_want_date_and_time() -> None:
    date = parse_when("el 4 de diciembre", now=NOW, tz=TZ, language="es", business_hours=HOURS, want="date")
    assert _fmt(date.value) == "2026-12-04 09:00"
    hour = parse_when("a las 5 y media", now=NOW, tz=TZ, language="es", business_hours=HOURS, want="time")
    assert hour.value is not None and (hour.value.hour, hour.value.minute) == (17, 30)


def test_spanish_costs_about_what_english_does() -> None:
    phrases_es = [t for t, _, k in TABLE if k != "none"]
    phrases_en = ["tomorrow at 11", "thursday at 5pm", "next tuesday afternoon", "in 2 hours", "at 4:30"]
    for text in [*phrases_es, *phrases_en]:  # warm the caches of the compiled tables
        cuando(text)

    def per_call(texts: list[str], language: str) -> float:
        start = time.perf_counter()
        for i in range(400):
            # a distinct text each time: the readers' caches must not hide the work
            parse_when(f"{texts[i % len(texts)]} ", now=NOW + dt.timedelta(minutes=i), tz=TZ,
                       language=language, business_hours=HOURS)
        return (time.perf_counter() - start) / 400

    es = per_call(["mañana a las 11", "el jueves a las 5 y media", "la semana que viene el martes por la tarde",
                   "en 2 horas", "a las 4 menos cuarto"], "es-ES")
    en = per_call(phrases_en, "en-GB")
    assert es < 3 * en + 100e-6, (es, en)


def test_the_reader_words_spanish_relies_on() -> None:
    # two readings the English grammar gained for Spanish, right in English too
    def en(text: str) -> str | None:
        return _fmt(cuando(text, language="en-GB").value)

    assert en("tuesday next week") == "2026-12-08 09:00"  # that day of next week (was: Monday)
    assert en("next week on tuesday afternoon") == "2026-12-08 14:00"
    assert en("next week") == "2026-12-07 09:00"
    assert en("upcoming thursday at 5pm") == "2026-12-10 17:00"  # said on a Thursday: next week's
    assert en("upcoming tuesday") == "2026-12-08 09:00"
