"""What a language's people say, as data: the words the readers of `orchestrator.engine`
(dates and times, numbers, yes/no, names, choices) look for.

The date and time reader has one grammar, written in the canonical words of
`orchestrator.engine.timeparse` ("tomorrow at 5", "next week", "afternoon", "asap"). English
text is read as it is; another language's text is first rewritten into those words from
its tables (`orchestrator.languages.canonical`), so a language is a set of tables, never a
change to the engine. `rules_for(tag)` picks the rules by a tag's primary subtag ("es-MX"
-> the "es" rules); an unknown language gets the English rules (and dateparser, asked in
that language, for what they do not read).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

__all__ = ["RULES_BY_TAG", "LanguageRules", "primary", "register_rules", "registered", "rules_for",
           "unregister_rules"]


def _frozen(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping))


_EMPTY: Mapping[str, Any] = MappingProxyType({})


def _empty() -> Mapping[str, Any]:
    return _EMPTY


@dataclass(frozen=True, eq=False)
class LanguageRules:
    """One language's understanding tables. Words are written as people write them;
    accents are optional when matching (the tables and the text both lose them), so
    "mañana" in a table also reads "manana".

    Dates and times (`canonical` True only for English, whose words *are* the reader's):
    - `weekdays`: word -> 0..6 (Monday 0); `months`: word -> 1..12;
    - `relative_days`: word -> days from today ("hoy": 0, "mañana": 1, "pasado mañana": 2);
    - `parts_of_day`: phrase -> one of the reader's periods ("morning", "afternoon",
      "evening", "tonight", "noon", "midnight", "first thing", "end of the day",
      "mid morning", "after lunch", "lunchtime"...);
    - `meridiem`: phrase said after an hour -> "am" / "pm" ("a las 5 de la tarde");
    - `phrases`: any other phrase -> the reader's words ("a las": "at", "sobre las":
      "around", "la semana que viene": "next week", "lo antes posible": "asap",
      "dentro de": "in", "horas": "hours");
    - `minutes_after` / `minutes_before`: "5 y media" (30 after), "5 menos cuarto" (15
      before); `minute_joiners`: words between an hour and its minutes: {"y": 1, "menos": -1};
    - `hour_suffix`: "h" when "10h30" / "10h" is a time;
    - `weekday_number_is_date`: "jueves 10" is Thursday the 10th (not Thursday at 10), as
      is a number after `day_number_lead_ins` ("el 10", "el día 10");
    - `fillers`: words dropped before reading ("el", "de", "por").

    Everything else:
    - `number_words` (additive: "veinte": 20, "cien": 100), `number_scales` (multiply:
      "mil": 1000), `number_joiners` ("treinta y dos"); `decimal_comma`: "1.200" is twelve
      hundred and "2,5" two and a half;
    - `ordinals`: word -> choice index (0 first, -1 last); `choice_lead_ins` /
      `choice_trailers`: words around a choice number or ordinal ("la", "opción", "por favor");
    - `yes`, `no`, `unsure`: whole answers or phrases within one;
    - `name_greetings`, `name_lead_ins`, `name_suffixes` (regular-expression fragments, case
      ignored), `not_name_words`: words that are never part of a name, `name_particles`:
      words inside a name but never its first ("de" in "María de la Cruz");
    - `count_nouns`: what a number counts in a message ("personas": "somos 4 personas");
    - `negators`: words that negate what follows ("no", "nunca", "sin");
    - `corrections`: regular-expression fragments that start a correction ("en realidad");
    - `clause_words`: words that join two parts of a message ("y", "pero"), where a value ends.
    """

    code: str
    canonical: bool = False
    weekdays: Mapping[str, int] = field(default_factory=_empty)
    months: Mapping[str, int] = field(default_factory=_empty)
    relative_days: Mapping[str, int] = field(default_factory=_empty)
    parts_of_day: Mapping[str, str] = field(default_factory=_empty)
    meridiem: Mapping[str, str] = field(default_factory=_empty)
    phrases: Mapping[str, str] = field(default_factory=_empty)
    minutes_after: Mapping[str, int] = field(default_factory=_empty)
    minutes_before: Mapping[str, int] = field(default_factory=_empty)
    minute_joiners: Mapping[str, int] = field(default_factory=_empty)
    hour_suffix: str | None = None
    weekday_number_is_date: bool = False
    day_number_lead_ins: tuple[str, ...] = ()
    fillers: frozenset[str] = frozenset()
    number_words: Mapping[str, int] = field(default_factory=_empty)
    number_scales: Mapping[str, int] = field(default_factory=_empty)
    number_joiners: frozenset[str] = frozenset()
    decimal_comma: bool = False
    ordinals: Mapping[str, int] = field(default_factory=_empty)
    choice_lead_ins: tuple[str, ...] = ()
    choice_trailers: tuple[str, ...] = ()
    yes: frozenset[str] = frozenset()
    no: frozenset[str] = frozenset()
    unsure: frozenset[str] = frozenset()
    name_greetings: tuple[str, ...] = ()
    name_lead_ins: tuple[str, ...] = ()
    name_suffixes: tuple[str, ...] = ()
    not_name_words: frozenset[str] = frozenset()
    name_particles: frozenset[str] = frozenset()
    count_nouns: frozenset[str] = frozenset()
    negators: frozenset[str] = frozenset()
    corrections: tuple[str, ...] = ()
    clause_words: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        # Tables given as plain dicts are frozen: the rules are shared by every turn.
        for name in ("weekdays", "months", "relative_days", "parts_of_day", "meridiem", "phrases",
                     "minutes_after", "minutes_before", "minute_joiners", "number_words",
                     "number_scales", "ordinals"):
            value = getattr(self, name)
            if not isinstance(value, MappingProxyType):
                object.__setattr__(self, name, _frozen(value))


_RULES: dict[str, LanguageRules] = {}
_LOADED = False


def primary(tag: str | None) -> str:
    """The primary subtag of a language tag, lower case: "es-MX" -> "es", "" -> "en"."""
    if not tag:
        return "en"
    return tag.replace("_", "-").partition("-")[0].strip().lower() or "en"


def register_rules(code: str, rules: LanguageRules) -> None:
    """Make `rules` the rules of language `code` (a primary subtag: "fr"), replacing any."""
    _ensure_loaded()
    _RULES[primary(code)] = rules
    _CACHE.clear()


def unregister_rules(code: str) -> None:
    """Forget the rules of `code` (not English's)."""
    _ensure_loaded()
    if primary(code) != "en":
        _RULES.pop(primary(code), None)
        _CACHE.clear()


def registered() -> dict[str, LanguageRules]:
    """Every language with rules, by code."""
    _ensure_loaded()
    return dict(_RULES)


class _ByTag(dict[str | None, LanguageRules]):
    """Rules by language tag, filled on first use: a lookup on the turn path is one dict get."""

    def __missing__(self, tag: str | None) -> LanguageRules:
        _ensure_loaded()
        found = _RULES.get(primary(tag)) or _RULES["en"]
        self[tag] = found
        return found


RULES_BY_TAG = _ByTag()
_CACHE = RULES_BY_TAG


def rules_for(tag: str | None) -> LanguageRules:
    """The rules for a language tag ("es", "es-ES", "en-US"); English when none are known.
    (`RULES_BY_TAG[tag]` is the same, without the call.)"""
    return RULES_BY_TAG[tag]


def _ensure_loaded() -> None:
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    from orchestrator.languages import en, es

    _RULES.setdefault("en", en.RULES)
    _RULES.setdefault("es", es.RULES)
    from orchestrator.languages import load_entry_points

    load_entry_points()
