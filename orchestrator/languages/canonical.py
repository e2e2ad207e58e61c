"""A language's dates and times rewritten into the words the date reader understands.

`orchestrator.engine.timeparse` has one grammar, in English words ("tomorrow at 5:30 pm",
"next week", "coming tuesday", "afternoon", "asap"). For any other language its
`LanguageRules` tables are compiled once into a few regular expressions that rewrite a
message into those words, so "el jueves a las 5 y media de la tarde" is read as "thursday
at 5:30 pm" and everything after (opening hours, the weekday rules, the earliest moment)
is the same code for every language. The steps, in order:

1. lower case, accents and punctuation off ("mañana" -> "manana");
2. number words to digits ("cinco" -> "5"; "una" only as an hour: "a la una");
3. minutes said with the hour: "5 y media" -> "5:30", "4 menos cuarto" -> "3:45",
   "a las 5 y 10" -> "5:10";
4. "am"/"pm" said after an hour: "5 de la tarde" -> "5 pm";
5. "10h30", "10h" -> "10:30", "10:00" (when the language writes hours so);
6. a weekday followed by a day number is a date ("jueves 10" -> "10th"), as is "el 10" /
   "el día 10";
7. every phrase of the tables (weekdays, months, relative days, parts of the day, the
   other phrases) to the reader's words, longest first; filler words dropped.

A phrase the tables do not know stays as it is; the reader ignores it (and, when nothing
at all was understood, dateparser is asked in the language itself).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable
from functools import lru_cache

from orchestrator.languages.rules import LanguageRules

__all__ = ["date_gate", "fold", "time_text"]

_EN_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_EN_MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september",
              "october", "november", "december")
_EN_RELATIVE = {0: "today", 1: "tomorrow", 2: "day after tomorrow"}

_PUNCT = re.compile(r"[,!?;\"()\u00bf\u00a1\u2019\u2018'\u201c\u201d]")
_STOP = re.compile(r"\.(?=\s|$)")
_DOTTED_MERIDIEM = re.compile(r"\b([ap])\s?\.\s?m\b\.?")


def fold(text: str) -> str:
    """Lower case, accents off: "Mañana MIÉRCOLES" -> "manana miercoles"."""
    text = unicodedata.normalize("NFKD", text.lower())
    return "".join(ch for ch in text if not unicodedata.combining(ch))


def _key(text: str) -> str:
    """A table's word cleaned as the text it is matched in: "aujourd'hui" -> "aujourd hui"."""
    return " ".join(_STOP.sub(" ", _PUNCT.sub(" ", fold(text))).split())


def _alternation(words: Iterable[object]) -> str:
    keys = sorted({_key(str(w)) for w in words}, key=len, reverse=True)
    return "|".join(re.escape(k).replace(r"\ ", r"\s+") for k in keys if k)


class _Compiled:
    """The rewriting steps of one language, built once."""

    def __init__(self, rules: LanguageRules) -> None:
        numbers = {_key(k): v for k, v in rules.number_words.items() if v <= 59}
        # "una"/"un"/"uno" are mostly articles ("una cita", "un día"): an hour only after "la"
        self.articles = {k for k, v in numbers.items() if v == 1}
        self.numbers = {k: v for k, v in numbers.items() if k not in self.articles}
        steps: list[tuple[re.Pattern[str], Callable[[re.Match[str]], str] | str]] = []
        if self.numbers:
            steps.append((re.compile(rf"(?<!\w)({_alternation(self.numbers)})(?!\w)"),
                          lambda m: str(self.numbers[m.group(1)])))
        if self.articles:
            steps.append((re.compile(rf"(?<!\w)(la|las|a)\s+({_alternation(self.articles)})(?!\w)"),
                          lambda m: f"{m.group(1)} 1"))
        after = {_key(k): v for k, v in rules.minutes_after.items()}
        before = {_key(k): v for k, v in rules.minutes_before.items()}
        joiners = {_key(k): v for k, v in rules.minute_joiners.items()}
        if after or before:
            fixed = {**{k: v for k, v in after.items()}, **{k: -v for k, v in before.items()}}
            self.fixed = fixed
            steps.append((
                re.compile(rf"\b(\d{{1,2}})\s+({_alternation(fixed)})(?!\w)"),
                lambda m: _clock(int(m.group(1)), self.fixed[_spaces(m.group(2))]),
            ))
        if joiners:
            self.joiners = joiners
            steps.append((
                re.compile(
                    rf"(?<!\bel\s)(?<!\bdia\s)(?<!\blos\s)(?<!\bdias\s)(?<![/.:-])"
                    rf"\b(\d{{1,2}})\s+({_alternation(joiners)})\s+([0-5]?\d)(?:\s+minutos?)?\b(?![/.:]\d)"
                ),
                lambda m: _clock(int(m.group(1)), self.joiners[m.group(2)] * int(m.group(3))),
            ))
        meridiem = {_key(k): v for k, v in rules.meridiem.items()}
        if meridiem:
            self.meridiem = meridiem
            steps.append((
                re.compile(rf"\b(\d{{1,2}}(?:[:.]\d{{2}})?)\s+({_alternation(meridiem)})(?!\w)"),
                lambda m: m.group(1) + " " + self.meridiem[_spaces(m.group(2))],
            ))
        if rules.hour_suffix:
            suffix = re.escape(_key(rules.hour_suffix))
            steps.append((
                re.compile(rf"\b(\d{{1,2}})\s?{suffix}(?:\s?([0-5]\d))?\b"),
                lambda m: f"{m.group(1)}:{m.group(2) or '00'}",
            ))
        weekdays = {_key(k): v for k, v in rules.weekdays.items()}
        if rules.weekday_number_is_date and weekdays:
            steps.append((
                re.compile(
                    rf"\b(?:{_alternation(weekdays)})\s+(?:dia\s+)?(\d{{1,2}})\b"
                    rf"(?!\s*(?:[:.]\d|am\b|pm\b|h\b|horas?\b|minutos?\b))"
                ),
                r"\1th",
            ))
            steps.append((
                re.compile(
                    r"\b(?:el\s+dia|el|dia)\s+(\d{1,2})\b"
                    r"(?!\s*(?:[:./-]\d|am\b|pm\b|h\b|horas?\b|minutos?\b|dias?\b|semanas?\b|de\b|del\b))"
                ),
                r"\1th",
            ))
        self.steps = steps
        table: dict[str, str] = {}
        for word in rules.fillers:
            table[_key(word)] = ""
        for word, value in rules.phrases.items():
            table[_key(word)] = value
        for word, index in rules.months.items():
            table[_key(word)] = _EN_MONTHS[index - 1]
        for word, index in weekdays.items():
            table[word] = _EN_WEEKDAYS[index]
        for word, days in rules.relative_days.items():
            table[_key(word)] = _EN_RELATIVE.get(days, f"in {days} days")
        for word, period in rules.parts_of_day.items():
            table[_key(word)] = period
        # a phrase holding a number word ("de hoy en ocho") is matched after step 2 made it a digit
        number_steps = steps[: (1 if self.numbers else 0) + (1 if self.articles else 0)]
        keys: dict[str, str] = {}
        for key, value in table.items():
            key = _spaces(key)
            for pattern, replacement in number_steps:
                key = pattern.sub(replacement, key)
            keys[key] = value
        self.table = keys
        self.words = re.compile(rf"(?<![\w:])(?:{_alternation(self.table)})(?![\w])")
        en_days = "|".join(_EN_WEEKDAYS)
        self.coming_after = re.compile(rf"\b({en_days})\s+coming\b")

    def rewrite(self, text: str) -> str:
        s = _DOTTED_MERIDIEM.sub(r"\1m", fold(text))
        s = _STOP.sub(" ", _PUNCT.sub(" ", s))
        s = " ".join(s.split())
        for pattern, replacement in self.steps:
            s = pattern.sub(replacement, s)
        s = self.words.sub(lambda m: self.table[_spaces(m.group())], s)
        s = self.coming_after.sub(r"coming \1", s)  # "el martes que viene": the coming Tuesday
        return " ".join(s.split())


def _spaces(text: str) -> str:
    return " ".join(text.split())


def _clock(hour: int, delta: int) -> str:
    """"5" + 30 -> "5:30"; "4" - 15 -> "3:45"."""
    total = (hour * 60 + delta) % (24 * 60)
    h, m = divmod(total, 60)
    if hour <= 12 and h == 0:
        h = 12
    return f"{h}:{m:02d}"


@lru_cache(maxsize=16)
def _compiled(rules: LanguageRules) -> _Compiled:
    return _Compiled(rules)


@lru_cache(maxsize=4096)
def time_text(rules: LanguageRules, text: str) -> str:
    """`text` in the date reader's words: "mañana a las 11" -> "tomorrow at 11"."""
    return _compiled(rules).rewrite(text)


@lru_cache(maxsize=16)
def date_gate(rules: LanguageRules) -> re.Pattern[str]:
    """Matches (in folded text) any word of the language that may carry a date or a time."""
    words = [*rules.weekdays, *rules.months, *rules.relative_days, *rules.parts_of_day,
             *(k for k, v in rules.phrases.items() if v), *rules.number_words]
    return re.compile(rf"(?<!\w)(?:{_alternation(words)})(?!\w)")


def gate_text(text: str) -> str:
    """`text` cleaned as `date_gate` expects it."""
    return _key(text)
