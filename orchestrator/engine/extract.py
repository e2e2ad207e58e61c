"""Typed values found inside a longer message, for filling asks ahead and for corrections.

`inputs.parse_input` reads one whole answer of one kind. A customer rarely answers one
question at a time ("Hi, this is Maria Lopez, I'd like a cleaning tomorrow at 10am"), so
this module finds, per kind, the one value a message holds, or nothing when it holds none
or several different ones (ambiguity fills nothing). It only calls the typed readers of
`inputs` (and `timeparse` through them); it decides *where* in the text to look:

- choice: the ask's own phrases as whole words (no typo matching: a guess must not fill a
  question the customer never saw);
- name: after a lead-in ("this is", "my name is", "I'm", "it's"), stopped by the first
  word that is not part of a name;
- date / time / datetime: the whole message, once a cheap gate has seen a date or time word
  (so a message without one never reaches dateparser);
- phone / email: a number or an address written anywhere in the text;
- number: a clause that is only a number. yes/no and free text are never filled ahead.

Corrections ("actually / no / sorry / I mean / wait") are found by `split_correction`.

Every reader takes the `language` the message is in (a tag, "es-MX"; English by default):
its words come from `orchestrator.languages` (a Spanish "me llamo Ana", "mañana a las 11",
"en realidad a las 5"); English is read exactly by the patterns below.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import phonenumbers

from orchestrator.engine.inputs import ChoiceMatcher, choice_matcher, normalise, parse_input
from orchestrator.engine.inputs import _contains as contains
from orchestrator.engine.inputs import _tokens as tokens
from orchestrator.flow import schema
from orchestrator.flow.templates import language_region
from orchestrator.languages import canonical
from orchestrator.languages.rules import RULES_BY_TAG as _RULES
from orchestrator.languages.rules import LanguageRules
from orchestrator.model import OutChoice

# Kinds a message can fill ahead of the question that asks for them.
FILLABLE = frozenset({"choice", "name", "date", "time", "datetime", "phone", "email", "number"})

# Words that may carry a date or a time; without one (or a digit) no date reading is tried.
_DATE_GATE = re.compile(
    r"\d|\b(?:today|tonight|tomorrow|tmrw|tmr|tomorow|yesterday|morning|afternoon|evening|noon|midday|"
    r"midnight|lunch|asap|soon|week|weekend|month|mon|tue|tues|wed|thu|thur|thurs|fri|sat|sun|"
    r"(?:mon|tues|wednes|thurs|fri|satur|sun)day|jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec|"
    r"january|february|march|april|june|july|august|september|october|november|december|"
    r"one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|o'?clock|half|quarter|"
    r"hour|hours|minutes?|earliest|first thing|any ?time|end of)\b",
    re.IGNORECASE,
)
_DAY_WORDS = re.compile(
    r"\b(?:today|tonight|tomorrow|tmrw|tmr|tomorow|week|weekend|mon|tue|tues|wed|thu|thur|thurs|fri|sat|sun|"
    r"(?:mon|tues|wednes|thurs|fri|satur|sun)day|jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec|"
    r"january|february|march|april|june|july|august|september|october|november|december|\d{1,2}/\d{1,2}|"
    r"\d{1,2}(?:st|nd|rd|th)|days?)\b",
    re.IGNORECASE,
)

# What turns the rest of a message into a correction of something said before (or earlier in
# the same message: "Friday at 2, no actually Thursday at 2"). A bare "no" only counts when a
# comma follows it ("no, my name is Ana"): "no heat" names the problem.
_CORRECTION = re.compile(
    r"(?:\b(?:no|nope|oh)[,.!]?\s+)?\b(?:actually|i\s+mean|i\s+meant|sorry|wait|or\s+rather|rather|"
    r"make\s+it|change\s+it\s+to|instead)\b[,.!:]?"
    r"|(?:^|[,.;!?\u2013\u2014-]\s*)\b(?:no|nope)\s*[,.!]\s*",
    re.IGNORECASE,
)
_LEADING_IT = re.compile(r"^\s*(?:it'?s|it\s+is|that'?s|its)\s+", re.IGNORECASE)

# Name lead-ins and the words that end a name (a name is at most a few words after it).
_NAME_LEAD = re.compile(
    r"(?:^|\b)(?:this\s+is|my\s+name\s+is|my\s+name'?s|name\s+is|name'?s|i'?m|i\s+am|it'?s|call\s+me|"
    r"me\s+llamo|soy)\s+(?:actually\s+|really\s+)?",
    re.IGNORECASE,
)
_NOT_NAME = frozenset({
    "a", "an", "the", "and", "or", "but", "i", "id", "im", "ill", "to", "for", "with", "at", "on", "in", "of",
    "from", "by", "about", "here", "there", "calling", "looking", "trying", "wondering", "interested",
    "having", "getting", "going", "hoping", "needing", "writing", "texting", "just", "not", "so", "very",
    "really", "actually", "also", "still", "sorry", "available", "free", "ok", "okay", "fine", "good",
    "great", "well", "new", "back", "after", "before", "because", "would", "could", "can", "want",
    "wanted", "need", "like", "book", "booking", "schedule", "make", "get", "see", "come", "please",
    "thanks", "thank", "today", "tomorrow", "tonight", "morning", "afternoon", "evening", "next", "this",
    "that", "my", "your", "our", "is", "was", "am", "are", "be", "been", "it", "its", "me", "you", "we",
    "they", "he", "she", "his", "her", "their", "urgent", "emergency", "monday", "tuesday", "wednesday",
    "thursday", "friday", "saturday", "sunday", "now", "asap", "yes", "no", "yeah", "hi", "hello", "hey",
    "cleaning", "checkup", "appointment", "visit", "out", "broken", "pain", "done", "what", "who", "why",
    "how", "where", "when", "huh", "pardon", "excuse", "hmm", "hm", "um", "umm", "uh", "er", "erm",
})
_CLAUSE = re.compile(r"\s*(?:[,;.!?\u2013\u2014]+|\s-\s|\band\b|\bbut\b|\bplus\b)\s*", re.IGNORECASE)
_EMAIL_IN = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_NUMBER_CLAUSE = re.compile(
    r"^(?:\d{1,4}|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve)"
    r"(?:\s+(?:of\s+us|people|persons|guests|adults|kids|children|pets|rooms|items))?$",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class Found:
    """One value read from a message: the saved value and, for a choice, its id."""

    value: Any
    choice_id: str | None = None


def split_correction(text: str, language: str = "en") -> tuple[str, str] | None:
    """(what came before, the correction) when the message corrects something, else None.

    The correction runs from the first marker to the end, other markers removed:
    "sorry, my name is actually Ana" -> ("", "my name is Ana")."""
    rules = _RULES[language]
    pattern = _CORRECTION if rules.canonical else _own(rules).correction
    match = pattern.search(text)
    if match is None:
        return None
    before, after = text[: match.start()], text[match.end():]
    after = pattern.sub(" ", after)
    after = " ".join(after.split()).strip(" ,.!?;:")
    return before.strip(" ,.;:-\u2013\u2014"), after


def as_text_answer(text: str) -> str:
    """A free-text correction without its "it's": "it's the AC" -> "the AC"."""
    return _LEADING_IT.sub("", text).strip(" ,.!?;:")


def has_date_word(text: str, language: str = "en") -> bool:
    if _DATE_GATE.search(text) is not None:
        return True
    rules = _RULES[language]
    return not rules.canonical and not canonical.date_gate(rules).isdisjoint(canonical.gate_text(text).split())


def names_a_day(text: str, language: str = "en") -> bool:
    """"3pm" names no day (a correction keeps the day already chosen); "friday at 3" does."""
    rules = _RULES[language]
    if not rules.canonical:
        text = canonical.time_text(rules, text)
    return _DAY_WORDS.search(text) is not None


def clauses(text: str, language: str = "en") -> list[str]:
    rules = _RULES[language]
    pattern = _CLAUSE if rules.canonical else _own(rules).clause
    return [c for c in pattern.split(text) if c and c.strip()]


def find_name(text: str, *, lead_in: bool = True, language: str = "en") -> str | None:
    """A name introduced by a lead-in ("this is Maria Lopez, ..."), or (lead_in=False) the
    first clause when it is a name on its own ("Maria, and tomorrow at 10am")."""
    rules = _RULES[language]
    own = None if rules.canonical else _own(rules)
    lead, not_name = (_NAME_LEAD, _NOT_NAME) if own is None else (own.name_lead, own.not_name)
    candidates: list[str] = []
    for match in lead.finditer(text):
        words: list[str] = []
        following = text[match.end():].split()
        for i, word in enumerate(following):
            bare = word.strip(",.;:!?\"()")
            plain = normalise(bare)
            if own is not None and plain in own.particles:
                if not words or not _particle_in_name(following, i, own):
                    break
                words.append(bare)  # "soy María de la Cruz"
                continue
            if not bare or plain in not_name or any(ch.isdigit() for ch in bare):
                break
            words.append(bare)
            named = len(words) if own is None else sum(normalise(w) not in own.particles for w in words)
            if word[-1:] in ",.;:!?" or named == 3:
                break
        if words:
            candidates.append(" ".join(words))
    if not candidates and not lead_in:
        parts = clauses(text, language)
        if parts and len(parts) > 1:
            first = parts[0]
            words = first.split()
            if words and not any(normalise(w) in not_name for w in words):
                candidates.append(first)
    values = {_read_name(c, language) for c in candidates} - {None}
    return values.pop() if len(values) == 1 else None


def _particle_in_name(words: list[str], i: int, own: _Own) -> bool:
    """"de" / "la" inside a name: only when a capitalised word follows the particles."""
    for word in words[i:]:
        bare = word.strip(",.;:!?\"()")
        if normalise(bare) in own.particles:
            continue
        return bare[:1].isupper()
    return False


def name_answer(text: str, language: str = "en") -> str | None:
    """A whole answer to a name question said as a correction: "my name is Ana", "Ana"."""
    found = find_name(text, language=language)
    if found is not None:
        return found
    rules = _RULES[language]
    not_name = _NOT_NAME if rules.canonical else _own(rules).not_name
    words = text.split()
    if not words or any(normalise(w) in not_name for w in words):
        return None
    return _read_name(text, language)


def _read_name(candidate: str, language: str = "en") -> str | None:
    result = parse_input("name", candidate, settings=_SETTINGS, now=0.0, language=language)
    return str(result.value) if result.ok else None


_SETTINGS = schema.Settings()


def find_choice(text: str, choices: Sequence[OutChoice] | ChoiceMatcher) -> str | None:
    """The one choice whose label or keyword the text holds as whole words (never a menu
    digit or a typo: those answer the question on screen, not one further on)."""
    matcher = choices if isinstance(choices, ChoiceMatcher) else choice_matcher(choices)
    words = tokens(text)
    present = set(words)
    hits = {cid for phrase, cid in matcher.phrases if phrase[0] in present and contains(words, phrase)}
    if len(hits) == 1:
        return hits.pop()
    if not hits:
        return None
    best = max(len(p) for p, c in matcher.phrases if c in hits and contains(words, p))
    top = {c for p, c in matcher.phrases if c in hits and len(p) == best and contains(words, p)}
    return top.pop() if len(top) == 1 else None


def is_one_phrase(text: str, matcher: ChoiceMatcher, choice_id: str) -> bool:
    """The whole message is one of the choice's own words (its id, label or a keyword)."""
    words = tokens(text)
    if normalise(text) == normalise(choice_id):
        return True
    return any(cid == choice_id and phrase == words for phrase, cid in matcher.phrases)


def find_phone(text: str, settings: schema.Settings) -> str | None:
    region = language_region(settings.language)
    found = {
        phonenumbers.format_number(m.number, phonenumbers.PhoneNumberFormat.E164)
        for m in phonenumbers.PhoneNumberMatcher(text, region, leniency=phonenumbers.Leniency.POSSIBLE)
    }
    if len(found) != 1:
        return None
    result = parse_input("phone", found.pop(), settings=settings, now=0.0)
    return str(result.value) if result.ok else None


def find_email(text: str) -> str | None:
    found = {m.group().rstrip(".") for m in _EMAIL_IN.finditer(text)}
    if len(found) != 1:
        return None
    result = parse_input("email", found.pop(), settings=_SETTINGS, now=0.0)
    return str(result.value) if result.ok else None


def find_when(kind: str, text: str, settings: schema.Settings, now: dt.datetime, language: str | None = None) -> Any:
    """The date/time a message names (phones and emails cut out first), or None."""
    language = settings.language if language is None else language
    if not has_date_word(text, language):
        return None
    cleaned = _EMAIL_IN.sub(" ", text)
    if any(ch.isdigit() for ch in cleaned):
        region = language_region(settings.language)
        for m in phonenumbers.PhoneNumberMatcher(cleaned, region, leniency=phonenumbers.Leniency.POSSIBLE):
            cleaned = cleaned.replace(m.raw_string, " ")
        if not has_date_word(cleaned, language):
            return None
    result = parse_input(kind, cleaned, settings=settings, now=now, language=language)
    return result.value if result.ok else None


def find_number(text: str, settings: schema.Settings, language: str | None = None) -> Any:
    language = settings.language if language is None else language
    rules = _RULES[language]
    pattern = _NUMBER_CLAUSE if rules.canonical else _own(rules).number_clause
    hits = [c for c in clauses(text, language) if pattern.match(c.strip())]
    if len(hits) != 1:
        return None
    result = parse_input("number", hits[0], settings=settings, now=0.0, language=language)
    return result.value if result.ok else None


def find(
    kind: str,
    text: str,
    *,
    choices: Sequence[OutChoice] | ChoiceMatcher | None,
    settings: schema.Settings,
    now: dt.datetime,
    lead_in: bool = True,
    language: str | None = None,
) -> Found | None:
    """The one value of `kind` that `text` holds, or None (none, several, or not fillable).
    `language`: the message's (default the flow's `settings.language`)."""
    language = settings.language if language is None else language
    if kind == "choice":
        if not choices:
            return None
        cid = find_choice(text, choices)
        return Found(cid, cid) if cid is not None else None
    value: Any
    if kind == "name":
        value = find_name(text, lead_in=lead_in, language=language)
    elif kind in ("date", "time", "datetime"):
        value = find_when(kind, text, settings, now, language)
    elif kind == "phone":
        value = find_phone(text, settings) if any(ch.isdigit() for ch in text) or " oh " in text else None
    elif kind == "email":
        value = find_email(text) if "@" in text else None
    elif kind == "number":
        value = find_number(text, settings, language)
    else:
        return None
    return Found(value) if value is not None else None


class _Own:
    """Another language's patterns for the readers above, built once from its rules."""

    def __init__(self, rules: LanguageRules) -> None:
        leads = "|".join(rules.name_lead_ins) or "$^"
        self.name_lead = re.compile(rf"(?:^|\b)(?:{leads})\s+", re.IGNORECASE)
        folded = {normalise(w) for w in (*rules.not_name_words, *rules.fillers, *rules.weekdays,
                                         *rules.relative_days, *rules.yes, *rules.no)}
        self.particles = frozenset(normalise(w) for w in rules.name_particles)
        self.not_name = (_NOT_NAME | frozenset(w for w in folded if w and " " not in w)) - self.particles
        markers = "|".join(rules.corrections)
        self.correction = re.compile(
            rf"(?:\b(?:no|nope|oh)[,.!]?\s+)?\b(?:{markers + '|' if markers else ''}actually|i\s+mean|sorry|wait|"
            r"make\s+it|instead)\b[,.!:]?"
            r"|(?:^|[,.;!?\u2013\u2014-]\s*)\b(?:no|nope)\s*[,.!]\s*",
            re.IGNORECASE,
        )
        joins = "|".join(re.escape(w) for w in sorted(rules.clause_words, key=len, reverse=True))
        own_joins = rf"|\b(?:{joins})\b" if joins else ""
        self.clause = re.compile(
            rf"\s*(?:[,;.!?\u2013\u2014]+|\s-\s|\band\b|\bbut\b|\bplus\b{own_joins})\s*", re.IGNORECASE
        )
        small = sorted((w for w, v in rules.number_words.items() if v <= 20), key=len, reverse=True)
        counted = "|".join(re.escape(w) for w in sorted(rules.count_nouns, key=len, reverse=True)) or "$^"
        self.number_clause = re.compile(
            rf"^(?:\d{{1,4}}|{'|'.join(re.escape(w) for w in small) or '$^'})(?:\s+(?:{counted}))?$",
            re.IGNORECASE,
        )


@lru_cache(maxsize=16)
def _own(rules: LanguageRules) -> _Own:
    return _Own(rules)
