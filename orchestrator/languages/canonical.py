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
from collections.abc import Iterable
from functools import lru_cache
from typing import TypeVar

from orchestrator.languages.rules import LanguageRules

__all__ = ["date_gate", "fold", "time_text"]

_EN_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_EN_MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september",
              "october", "november", "december")
_EN_RELATIVE = {0: "today", 1: "tomorrow", 2: "day after tomorrow"}

_PUNCT = re.compile(r"[,!?;\"()\u00bf\u00a1\u2019\u2018'\u201c\u201d]")
_STOP = re.compile(r"\.(?=\s|$)")
_DOTTED_MERIDIEM = re.compile(r"\b([ap])\s?\.\s?m\b\.?")


# the combining marks NFKD splits accents into (U+0300..U+036F)
_COMBINING = dict.fromkeys(range(0x300, 0x370))
# Latin letters with accents (U+00C0..U+024F) to their plain letters, in one translate
_LATIN = {cp: unicodedata.normalize("NFKD", chr(cp)).translate(_COMBINING) for cp in range(0xC0, 0x250)}


def fold(text: str) -> str:
    """Lower case, accents off: "Mañana MIÉRCOLES" -> "manana miercoles"."""
    text = text.lower()
    if text.isascii():
        return text
    text = text.translate(_LATIN)
    if text.isascii():
        return text
    return unicodedata.normalize("NFKD", text).translate(_COMBINING)


def _key(text: str) -> str:
    """A table's word cleaned as the text it is matched in: "aujourd'hui" -> "aujourd hui"."""
    return " ".join(_STOP.sub(" ", _PUNCT.sub(" ", fold(text))).split())


def _alternation(words: Iterable[object]) -> str:
    keys = sorted({_key(str(w)) for w in words}, key=len, reverse=True)
    return "|".join(re.escape(k).replace(r"\ ", r"\s+") for k in keys if k)


_UNITS = frozenset({"minute", "minutes", "hour", "hours", "day", "days", "week", "weeks"})
_CLOCK = re.compile(r"\d{1,2}(?:[:.]\d{2})?")
_DOTTED = re.compile(r"(\d{1,2})\.([0-5]\d)")


def _hour(token: str) -> bool:
    return token.isdigit() and len(token) <= 2


class _Compiled:
    """One language's tables made into token lookups, built once. A message is split into
    words once and walked a few times (numbers, then times, then phrases), each lookup a
    dict get: a Spanish message costs about what the English reader's own work does."""

    def __init__(self, rules: LanguageRules) -> None:
        numbers = {_key(k): v for k, v in rules.number_words.items() if v <= 59}
        # "una"/"un"/"uno" are mostly articles ("una cita", "un día"): an hour only after "la"
        self.articles = frozenset(k for k, v in numbers.items() if v == 1)
        self.numbers = {k: str(v) for k, v in numbers.items() if k not in self.articles}
        fixed = {**{_key(k): v for k, v in rules.minutes_after.items()},
                 **{_key(k): -v for k, v in rules.minutes_before.items()}}
        self.fixed = _longest_first((tuple(k.split()), v) for k, v in fixed.items())
        self.joiners = {_key(k): v for k, v in rules.minute_joiners.items()}
        self.meridiem = _longest_first((tuple(_key(k).split()), v) for k, v in rules.meridiem.items())
        self.suffix_text = _key(rules.hour_suffix) if rules.hour_suffix else ""
        self.suffix = re.compile(rf"(\d{{1,2}}){re.escape(self.suffix_text)}(\d{{2}})?") if self.suffix_text else None
        self.fixed_first = frozenset(words[0] for words, _ in self.fixed)
        self.meridiem_first = frozenset(words[0] for words, _ in self.meridiem)
        self.weekdays = {_key(k): _EN_WEEKDAYS[v] for k, v in rules.weekdays.items()}
        self.weekday_dates = rules.weekday_number_is_date
        self.dotted_clock = rules.decimal_comma  # where "1.200" is a thousands dot, "10.30" is a time
        self.day_leads = _longest_first((tuple(_key(k).split()), "") for k in rules.day_number_lead_ins)
        self.day_lead_words = frozenset(w for words, _ in self.day_leads for w in words)
        phrases = {_key(k): v for k, v in rules.phrases.items()}
        self.in_words = frozenset(k.split()[-1] for k, v in phrases.items() if v == "in")
        # "a las 17 horas": an hour said with the word for hours after "at"
        self.at_words = frozenset(k.split()[-1] for k, v in phrases.items() if v in ("at", "around", "before", "after"))
        self.hour_words = frozenset(k for k, v in phrases.items() if v in ("hour", "hours") and " " not in k)
        # what may follow a number that is not a day of the month ("el 10 de la tarde", "el 2 horas")
        self.not_a_date = frozenset({k.split()[0] for k, v in phrases.items() if v in _UNITS} | {"am", "pm"})
        table: dict[str, str] = {}
        for word in rules.fillers:
            table[_key(word)] = ""
        table.update(phrases)
        for word, index in rules.months.items():
            table[_key(word)] = _EN_MONTHS[index - 1]
        table.update(self.weekdays)
        for word, days in rules.relative_days.items():
            table[_key(word)] = _EN_RELATIVE.get(days, f"in {days} days")
        for word, period in rules.parts_of_day.items():
            table[_key(word)] = period
        # phrases by first word, longest first; a number word in one ("de hoy en ocho") is
        # matched as the digit the numbers step makes of it
        by_first: dict[str, list[tuple[tuple[str, ...], str]]] = {}
        for key, value in table.items():
            words = tuple(self._numbers_in(key.split()))
            if words:
                by_first.setdefault(words[0], []).append((words, value))
        self.by_first = {k: _longest_first(v) for k, v in by_first.items()}

    def _numbers_in(self, tokens: list[str]) -> list[str]:
        numbers, articles = self.numbers, self.articles
        out: list[str] = []
        for i, tok in enumerate(tokens):
            if tok in numbers:
                out.append(numbers[tok])
            elif tok in articles and i and tokens[i - 1] in ("la", "las", "a"):
                out.append("1")  # "a la una": one o'clock
            else:
                out.append(tok)
        return out

    def _times(self, tokens: list[str]) -> list[str]:
        """"5 y media" -> "5:30", "4 menos cuarto" -> "3:45", "5 y 10" -> "5:10",
        "5 de la tarde" -> "5 pm", "10h30" -> "10:30", "jueves 10" / "el 10" -> "10th"."""
        out: list[str] = []
        i, n = 0, len(tokens)
        while i < n:
            tok = tokens[i]
            if self.suffix is not None and self.suffix_text in tok and (m := self.suffix.fullmatch(tok)):
                if out and out[-1] in self.in_words and not m.group(2):
                    tok = f"{m.group(1)} hours"  # "en 2h": a duration
                else:
                    tok = f"{m.group(1)}:{m.group(2) or '00'}"
            elif self.dotted_clock and (m := _DOTTED.fullmatch(tok)) and int(m.group(1)) < 24:
                tok = f"{m.group(1)}:{m.group(2)}"  # "a las 10.30"
            elif _hour(tok):
                lead = self._day_lead(out)
                nxt = tokens[i + 1] if i + 1 < n else ""
                if self.weekday_dates and (lead or (out and out[-1] in self.weekdays)) and nxt not in self.not_a_date \
                        and nxt not in self.joiners and not self._fixed_at(tokens, i + 1) \
                        and not self._meridiem_at(tokens, i + 1):
                    del out[len(out) - (lead or 1):]
                    out.append(f"{tok}th")  # "el 10", "el jueves 10": a day of the month
                    i += 1
                    continue
                size, delta = self._fixed_at(tokens, i + 1) or (0, 0)
                if nxt in self.hour_words and out and out[-1] in self.at_words:
                    tok, i = f"{tok}:00", i + 1
                elif size:
                    tok, i = _clock(int(tok), delta), i + size
                elif nxt in self.joiners and i + 2 < n and _hour(tokens[i + 2]) and int(tokens[i + 2]) < 60 \
                        and not (out and out[-1] in self.day_lead_words):
                    tok, i = _clock(int(tok), self.joiners[nxt] * int(tokens[i + 2])), i + 2
                    if i + 1 < n and tokens[i + 1].startswith("minuto"):
                        i += 1
            if tok[:1].isdigit() and _CLOCK.fullmatch(tok) and (said := self._meridiem_at(tokens, i + 1)):
                tok, i = f"{tok} {said[1]}", i + said[0]
            out.append(tok)
            i += 1
        return out

    def _fixed_at(self, tokens: list[str], i: int) -> tuple[int, int] | None:
        if i >= len(tokens) or tokens[i] not in self.fixed_first:
            return None
        for words, delta in self.fixed:
            if tuple(tokens[i : i + len(words)]) == words:
                return len(words), delta
        return None

    def _meridiem_at(self, tokens: list[str], i: int) -> tuple[int, str] | None:
        if i >= len(tokens) or tokens[i] not in self.meridiem_first:
            return None
        for words, value in self.meridiem:
            if tuple(tokens[i : i + len(words)]) == words:
                return len(words), value
        return None

    def _day_lead(self, out: list[str]) -> int:
        """How many of the last words said are a day-number lead-in ("el", "el día")."""
        if not out or out[-1] not in self.day_lead_words:
            return 0
        for words, _ in self.day_leads:
            size = len(words)
            if size <= len(out) and tuple(out[-size:]) == words:
                return size
        return 0

    def rewrite(self, text: str) -> str:
        s = fold(text)
        if "." in s:
            s = _STOP.sub(" ", _DOTTED_MERIDIEM.sub(r"\1m", s))
        tokens = self._numbers_in(_PUNCT.sub(" ", s).split())
        if _DIGIT.search(" ".join(tokens)):
            tokens = " ".join(self._times(tokens)).split()
        by_first = self.by_first
        out: list[str] = []
        i, n = 0, len(tokens)
        while i < n:
            for words, value in by_first.get(tokens[i], ()):
                size = len(words)
                if tuple(tokens[i : i + size]) == words:
                    if value in _BEFORE_WEEKDAY and out and out[-1] in _EN_WEEKDAYS:
                        out[-1] = f"{value} {out[-1]}"  # "el martes que viene": the upcoming Tuesday
                    elif value:
                        out.append(value)
                    i += size
                    break
            else:
                out.append(tokens[i])
                i += 1
        return " ".join(out)


_DIGIT = re.compile(r"\d")
_V = TypeVar("_V")
# the reader's weekday modifiers, said after the weekday in some languages
_BEFORE_WEEKDAY = frozenset({"coming", "upcoming", "next", "this"})


def _longest_first(entries: Iterable[tuple[tuple[str, ...], _V]]) -> list[tuple[tuple[str, ...], _V]]:
    return sorted((e for e in entries if e[0]), key=lambda e: -len(e[0]))


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


# words that only modify a day or a time named beside them ("en", "esta", "a las"): no gate
_MODIFIERS = frozenset({"in", "this", "upcoming", "coming", "next", "at", "around", "before", "after"})


@lru_cache(maxsize=16)
def date_gate(rules: LanguageRules) -> frozenset[str]:
    """The words of a language that may carry a date or a time (a message holding none of
    them, and no digit, is never read for one): each table phrase's last word, fillers and
    mere modifiers out (a message with none never reaches dateparser)."""
    phrases = [*rules.weekdays, *rules.months, *rules.relative_days, *rules.parts_of_day,
               *(k for k, v in rules.phrases.items() if v and v not in _MODIFIERS), *rules.number_words]
    fillers = {_key(w) for w in rules.fillers}
    return frozenset(w for w in (_key(p).rpartition(" ")[2] for p in phrases) if w and w not in fillers)


def gate_text(text: str) -> str:
    """`text` cleaned as `date_gate` expects it."""
    return _key(text)
