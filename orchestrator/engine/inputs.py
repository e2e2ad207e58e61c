"""Typed answers to an `ask`: turn what a contact typed, said or pressed into a value.

`parse_input(kind, text, ...)` -> `InputResult(ok, value, choice_id, reprompt)`. Values are
msgpack/JSON-safe (ARCHITECTURE.md, data conventions): `datetime` an ISO string with the
flow timezone's offset, `date` "YYYY-MM-DD", `time` "HH:MM", `phone` E.164, `yes_no` a
bool, `number` an int (or float). A failed answer carries a specific `reprompt`.

Cost: the engine's budget is ~200 µs per turn. Choice and intent tables are built once per
choice list / intent mapping and cached (`ChoiceMatcher`, `IntentMatcher`); dateparser is
only reached for free-text dates our own rules do not understand (see `timeparse`).
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
import unicodedata
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal
from zoneinfo import ZoneInfo

import phonenumbers

from orchestrator.engine.render import choice_digit
from orchestrator.engine.timeparse import Want, parse_when
from orchestrator.errors import FlowRuntimeError
from orchestrator.flow import patterns, schema
from orchestrator.flow.templates import language_region
from orchestrator.languages import en as _en
from orchestrator.languages.messages import Catalogue, catalogue
from orchestrator.languages.rules import RULES_BY_TAG as _RULES
from orchestrator.languages.rules import LanguageRules
from orchestrator.model import OutChoice

__all__ = [
    "ChoiceMatcher",
    "Idiom",
    "InputResult",
    "IntentMatcher",
    "choice_matcher",
    "match_intent",
    "normalise",
    "parse_input",
    "parse_number",
]


# How the contact answers on this channel: "voice" (speaks, presses keys) or "text" (types,
# taps a button). The engine passes it from the conversation's channel so the built-in hints
# use the channel's own words: a text reprompt never says "press 1", a spoken one never
# says "reply with the number". The module stays vendor-neutral.
Idiom = Literal["voice", "text"]


@dataclass(frozen=True, slots=True)
class InputResult:
    ok: bool
    value: Any = None
    choice_id: str | None = None
    reprompt: str | None = None
    hint: tuple[str, Mapping[str, Any]] | None = None  # the reprompt's catalogue key and fields


def _fail(reprompt: str) -> InputResult:
    return InputResult(False, reprompt=reprompt)


def _hint(key: str, **fields: Any) -> InputResult:
    """A failed answer whose reprompt is the catalogue's `key` (English here; the engine says
    it in the contact's language with `hint_in`)."""
    return InputResult(False, reprompt=hint_in(catalogue(), key, fields), hint=(key, fields))


class Word(str):
    """A hint field that is itself a catalogue key (said in the hint's language)."""


class Moment(str):
    """A hint field that is a date-time (ISO), said as that language's day and time."""


def hint_in(words: Catalogue, key: str, fields: Mapping[str, Any], formats: Any = None) -> str:
    """A reprompt hint in one language: a list field (`options`) joined with its "or", a `Word`
    field that language's words, a `Moment` its day and time (`formats`: the language's)."""
    def said(value: Any) -> Any:
        if isinstance(value, list):
            return words.options(value)
        if isinstance(value, Word):
            return words[value]
        if isinstance(value, Moment) and formats is not None:
            return words.say("date_at_time", date=formats.date(value), time=formats.time(value))
        return value

    return words.say(key, **{k: said(v) for k, v in fields.items()}).strip()


# timeparse's questions (English) -> their catalogue keys, and its examples per kind wanted
_CLARIFY = {
    "Sorry, I didn't catch a day or time.": "clarify_not_caught",
    "What time would suit you?": "clarify_what_time",
    "That date doesn't exist. Which day did you mean?": "clarify_no_such_date",
}


def _clarify(text: str, want: str) -> InputResult:
    example = catalogue()[f"example_{want}"]
    question = text.removesuffix(example).strip()
    key = _CLARIFY.get(question) if text.endswith(example) else None
    if key is None and question:
        return _fail(text)
    return _hint("clarify", question=Word(key) if key else "", example=Word(f"example_{want}"))


# ------------------------------------------------------------------ text helpers

_PUNCT = re.compile(r"[^\w\s]+")
_SPACES = re.compile(r"\s+")


@lru_cache(maxsize=4096)
def normalise(text: str) -> str:
    """Lower case, accents and punctuation off, single spaces: "Book a Visit!" -> "book a visit"."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).lower()
    text = _PUNCT.sub(" ", text.replace("'", "").replace("\u2019", ""))
    return _SPACES.sub(" ", text.replace("_", " ")).strip()


def _contains(words: tuple[str, ...], phrase: tuple[str, ...]) -> bool:
    """Whole-word containment of `phrase` in `words`."""
    n = len(phrase)
    if n == 0 or n > len(words):
        return False
    if n == 1:
        return phrase[0] in words
    first = phrase[0]
    return any(words[i] == first and words[i : i + n] == phrase for i in range(len(words) - n + 1))


_UNITS = _en.UNITS
_TENS = _en.TENS
_SCALES = _en.SCALES
# What speech recognisers write for a lone digit.
_HOMOPHONES = {"oh": 0, "won": 1, "to": 2, "too": 2, "for": 4, "ate": 8}
_NUMBER_WORDS = frozenset({*_UNITS, *_TENS, *_SCALES, *_HOMOPHONES, "and", "a", "an"})
_DIGITS = re.compile(r"-?\d+(?:[.,]\d+)*")


def parse_number(text: str, language: str = "en") -> int | float | None:
    """The first number in `text`: "25", "1,200", "2.5", "twenty five", "a hundred and two"
    (in Spanish "veinticinco", "treinta y dos", "dos mil")."""
    match = _DIGITS.search(text)
    if match:
        raw = match.group()
        if re.fullmatch(r"-?\d{1,3}(,\d{3})+", raw):
            raw = raw.replace(",", "")
        elif language != "en" and _RULES[language].decimal_comma and re.fullmatch(r"-?\d{1,3}(\.\d{3})+", raw):
            raw = raw.replace(".", "")  # "1.200": twelve hundred
        raw = raw.replace(",", ".")
        try:
            value = float(raw)
        except ValueError:
            return None
        return int(value) if value.is_integer() and "." not in raw else value
    rules = _RULES[language]
    if not rules.canonical:
        return _words_of(rules).number(normalise(text).replace("-", " ").split())
    words = normalise(text).replace("-", " ").split()
    if len(words) == 1 and words[0] in _HOMOPHONES:
        return _HOMOPHONES[words[0]]
    total = current = 0
    seen = False
    for i, word in enumerate(words):
        if word in ("a", "an") and i + 1 < len(words) and words[i + 1] in _SCALES:
            current, seen = current + 1, True
        elif word == "and" and seen:
            continue
        elif word in _UNITS:
            current, seen = current + _UNITS[word], True
        elif word in _TENS:
            current, seen = current + _TENS[word], True
        elif word in _SCALES and seen:
            if _SCALES[word] == 100:
                current *= 100
            else:
                total, current = total + current * _SCALES[word], 0
        elif seen:
            break
    return total + current if seen else None


# ------------------------------------------------------------------ choices

_ORDINALS = _en.ORDINALS
_NUMBER_ANSWER = re.compile(
    r"^(?:(?:option|number|no|num|press|pressed|choice|item|#)\s*)?(?P<n>\d{1,2}|[a-z]+(?: [a-z]+)?)$"
)
_ORDINAL_ANSWER = re.compile(
    r"^(?:(?:i ?ll take|i want|id like|give me|lets do|let s do|the|option|choice)\s+)*"
    r"(?P<o>" + "|".join(_ORDINALS) + r")(?:\s+(?:one|option|choice|slot|time|please))*$"
)
# Words that carry no meaning when matching an answer against labels.
_FILLER = frozenset({
    "the", "a", "an", "at", "on", "in", "for", "please", "one", "i", "ill", "id", "like", "want",
    "take", "do", "lets", "let", "s", "that", "this", "is", "it", "works", "option", "choice",
    "slot", "time", "me", "book", "go", "with", "how", "about", "maybe", "yes", "ok", "okay",
    "sure",
})
_CANONICAL = {
    "monday": "mon", "tuesday": "tue", "tues": "tue", "wednesday": "wed", "weds": "wed", "thursday": "thu",
    "thur": "thu", "thurs": "thu", "friday": "fri", "saturday": "sat", "sunday": "sun", "january": "jan",
    "february": "feb", "march": "mar", "april": "apr", "june": "jun", "july": "jul", "august": "aug",
    "september": "sep", "sept": "sep", "october": "oct", "november": "nov", "december": "dec",
    "tomorrow": "tmrw", "tmr": "tmrw", "tomorow": "tmrw",
}
_SPLIT_UNITS = re.compile(r"(?<=\d)(?=[a-z])|(?<=[a-z])(?=\d)")
_ORDINAL_NUMBER = re.compile(r"^(\d+)(?:st|nd|rd|th)$")


def _tokens(text: str) -> tuple[str, ...]:
    """Canonical tokens for label matching: "Thursday 10am" -> ("thu", "10", "am")."""
    out: list[str] = []
    for word in _SPLIT_UNITS.sub(" ", normalise(text)).split():
        match = _ORDINAL_NUMBER.match(word)
        out.append(match.group(1) if match else _CANONICAL.get(word, word))
    # "10 00" written "10:00" in a label and "10" said: keep ":00" from blocking the match
    return tuple(out)


class ChoiceMatcher:
    """Matching tables for one list of choices, built once (per state per revision, or per
    `choices_from` list) and reused on every turn."""

    def __init__(self, choices: Sequence[OutChoice]) -> None:
        self.choices = list(choices)
        self.ids: dict[str, str] = {}
        self.digits: dict[str, str] = {}
        self.phrases: list[tuple[tuple[str, ...], str]] = []
        self.label_tokens: list[tuple[frozenset[str], str]] = []
        self.fuzzy: list[tuple[difflib.SequenceMatcher[str], str, int]] = []
        for i, choice in enumerate(self.choices):
            self.ids.setdefault(choice.id.lower(), choice.id)
            self.ids.setdefault(normalise(choice.id), choice.id)
            self.digits.setdefault(choice_digit(choice, i), choice.id)
            self.digits.setdefault(str(i + 1), choice.id)
            for phrase in (choice.label, *choice.match):
                words = _tokens(phrase)
                if words:
                    self.phrases.append((words, choice.id))
                    joined = " ".join(words)
                    matcher: difflib.SequenceMatcher[str] = difflib.SequenceMatcher(None, autojunk=False)
                    matcher.set_seq2(joined)  # the expensive half, done once
                    self.fuzzy.append((matcher, choice.id, len(joined)))
            self.label_tokens.append((frozenset(_tokens(choice.label)), choice.id))
        # A digit that is someone's own dtmf wins over a list position.
        for choice in self.choices:
            if choice.dtmf:
                self.digits[choice.dtmf] = choice.id
        self.labels = {c.id: c.label for c in self.choices}

    def options(self, ids: Sequence[str] | None = None) -> list[str]:
        return [self.labels[i] for i in ids] if ids else [c.label for c in self.choices]

    def options_text(self, ids: Sequence[str] | None = None) -> str:
        return catalogue().options(self.options(ids))

    def _not_understood(self, idiom: Idiom = "text") -> InputResult:
        return _hint("choice_voice" if idiom == "voice" else "choice_text", options=self.options())

    def _ambiguous(self, ids: Sequence[str]) -> InputResult:
        return _hint("did_you_mean", options=self.options(list(dict.fromkeys(ids))))

    def match(self, text: str, *, idiom: Idiom = "text", fuzzy: bool = True, language: str = "en") -> InputResult:
        """`fuzzy=False` leaves out the typo step: what the engine asks before global intents,
        so only a real match of the ask's own choices outranks an intent. `language` picks
        the words of a menu number or an ordinal ("la segunda", "la 2", "opción dos")."""
        raw = text.strip()
        if not raw:
            return self._not_understood(idiom)
        # 1. the exact choice id (a button reply, a chat client)
        cid = self.ids.get(raw.lower()) or self.ids.get(normalise(raw))
        if cid is not None:
            return InputResult(True, cid, cid)
        norm = normalise(raw)
        rules = _RULES[language]
        own = None if rules.canonical else _words_of(rules)
        number_answer, ordinal_answer, number_words, ordinals, filler = (
            (_NUMBER_ANSWER, _ORDINAL_ANSWER, _NUMBER_WORDS, _ORDINALS, _FILLER) if own is None
            else (own.number_answer, own.ordinal_answer, own.number_vocab, own.ordinals, own.filler)
        )
        # 2. a keypad digit or the number of a menu line ("2", "two", "option 2", "#2")
        number = number_answer.match(norm) or number_answer.match(raw.lower().replace(" ", ""))
        if number is not None:
            n = number.group("n")
            digit = n if n.isdigit() else None
            if digit is None and all(w in number_words for w in n.split()):
                value = parse_number(n, language)
                digit = str(value) if isinstance(value, int) else None
            if digit is not None and digit in self.digits:
                cid = self.digits[digit]
                return InputResult(True, cid, cid)
        ordinal = ordinal_answer.match(norm)
        if ordinal is not None and self.choices:
            index = ordinals[ordinal.group("o")]
            if index < len(self.choices):
                cid = self.choices[index].id
                return InputResult(True, cid, cid)
        # 3. a label or keyword, as whole words
        words = _tokens(raw)
        hits = [cid for phrase, cid in self.phrases if _contains(words, phrase)]
        if hits:
            unique = list(dict.fromkeys(hits))
            if len(unique) == 1:
                return InputResult(True, unique[0], unique[0])
            # prefer the choice whose matched phrase is longest ("cancel appointment" over "appointment")
            best = max(len(p) for p, c in self.phrases if c in unique and _contains(words, p))
            top = list(dict.fromkeys(
                c for p, c in self.phrases if c in unique and len(p) == best and _contains(words, p)
            ))
            return InputResult(True, top[0], top[0]) if len(top) == 1 else self._ambiguous(top)
        content = {w for w in words if w not in filler}
        if content:
            within = [cid for tokens, cid in self.label_tokens if content <= tokens]
            if len(within) == 1:
                return InputResult(True, within[0], within[0])
            if len(within) > 1:
                return self._ambiguous(within)
        if not fuzzy:
            return self._not_understood(idiom)
        # 4. a small typo ("apointment")
        scores: dict[str, float] = {}
        candidates = [" ".join(words), *(w for w in words if len(w) >= 4)]
        for candidate in candidates:
            for matcher, cid, size in self.fuzzy:
                if abs(size - len(candidate)) > max(3, size // 3):
                    continue
                matcher.set_seq1(candidate)
                if matcher.real_quick_ratio() < 0.8 or matcher.quick_ratio() < 0.8:
                    continue
                ratio = matcher.ratio()
                if ratio >= 0.8 and ratio > scores.get(cid, 0.0):
                    scores[cid] = ratio
        if scores:
            top_score = max(scores.values())
            top = [cid for cid, score in scores.items() if score == top_score]
            return InputResult(True, top[0], top[0]) if len(top) == 1 else self._ambiguous(top)
        return self._not_understood(idiom)


_MATCHERS: OrderedDict[tuple[Any, ...], ChoiceMatcher] = OrderedDict()
_MATCHERS_MAX = 512


def choice_matcher(choices: Sequence[OutChoice]) -> ChoiceMatcher:
    """A cached `ChoiceMatcher` for a choice list (keyed by the choices' content)."""
    key = tuple((c.id, c.label, c.dtmf, tuple(c.match)) for c in choices)
    matcher = _MATCHERS.get(key)
    if matcher is None:
        matcher = _MATCHERS[key] = ChoiceMatcher(choices)
        if len(_MATCHERS) > _MATCHERS_MAX:
            _MATCHERS.popitem(last=False)
    return matcher


# ------------------------------------------------------------------ intents


# Words that negate what follows them in the same clause ("it's not an emergency", "I don't
# want an agent", "no es urgente"). Apostrophes are gone after `normalise` ("dont").
_NEGATORS = _en.NEGATORS
# "no" negates only when it is not right before the phrase: "no, it's not urgent", "no es
# urgente" are negations, but "no hot water" / "no heat" name the problem itself.
_NO_WORD = "no"
NEGATION_WINDOW = 4  # words before a phrase that a negator may stand in
# Where a clause ends: "No, I want an agent" is a "no" and then a request for an agent.
_CLAUSE = re.compile(r"[,.;:!?\u2026]+|\s(?:but|pero|though|although)\s", re.IGNORECASE)


def _negated(words: tuple[str, ...], phrase: tuple[str, ...], negators: frozenset[str] = _NEGATORS) -> bool:
    """True when every occurrence of `phrase` in `words` (one clause) follows a negator."""
    n = len(phrase)
    found = False
    for i in range(len(words) - n + 1):
        if words[i : i + n] != phrase:
            continue
        found = True
        before = words[max(0, i - NEGATION_WINDOW) : i]
        if not any(w in negators or (w == _NO_WORD and j < len(before) - 1) for j, w in enumerate(before)):
            return False
    return found


class IntentMatcher:
    """Global intents (`agent: {match: [agent, human], dtmf: "0"}`), precomputed once.

    A phrase said negated does not fire its intent: "it's not an emergency", "I don't want
    an agent", "not urgent", "no es urgente" (a negator within `NEGATION_WINDOW` words
    before the phrase, in the same clause). The clause check only runs once a phrase is
    found, so the common turn (no intent phrase at all) costs what it did."""

    def __init__(self, intents: Mapping[str, schema.Intent]) -> None:
        self.intents = intents
        self.digits = {i.dtmf: name for name, i in intents.items() if i.dtmf}
        phrases = [(_tokens(p), name) for name, i in intents.items() for p in i.match]
        self.phrases = sorted((p for p in phrases if p[0]), key=lambda p: -len(p[0]))

    def match(self, text: str, digits: str | None = None, language: str = "en") -> str | None:
        if digits is not None:
            return self.digits.get(digits.strip())
        words = _tokens(text)
        if not words:
            return None
        negators: frozenset[str] | None = None
        clauses: list[tuple[str, ...]] | None = None
        present = set(words)
        for phrase, name in self.phrases:  # longest phrase first
            if phrase[0] not in present or not _contains(words, phrase):
                continue
            if negators is None:
                rules = _RULES[language]
                negators = _NEGATORS if rules.canonical else _words_of(rules).negators
            if negators.isdisjoint(words) and _NO_WORD not in words:
                return name
            if clauses is None:
                clauses = [c for c in (_tokens(part) for part in _CLAUSE.split(text)) if c]
            if any(_contains(c, phrase) and not _negated(c, phrase, negators) for c in clauses):
                return name
        return None


_INTENTS: OrderedDict[int, tuple[Mapping[str, schema.Intent], IntentMatcher]] = OrderedDict()


def match_intent(
    text: str, intents: Mapping[str, schema.Intent], digits: str | None = None, language: str = "en"
) -> str | None:
    """The name of the global intent `text` (or the keypad `digits`) asks for, or None
    (`language`: whose negations keep a phrase from firing, "no quiero un agente")."""
    if not intents:
        return None
    cached = _INTENTS.get(id(intents))
    if cached is None or cached[0] is not intents:
        cached = _INTENTS[id(intents)] = (intents, IntentMatcher(intents))
        if len(_INTENTS) > 64:
            _INTENTS.popitem(last=False)
    return cached[1].match(text, digits, language)


# ------------------------------------------------------------------ the kinds


def _text(text: str, pattern: patterns.Pattern | str | None, idiom: Idiom = "text") -> InputResult:
    value = text.strip()
    if not value:
        return _hint("no_answer_voice" if idiom == "voice" else "no_answer_text")
    if isinstance(pattern, str):
        pattern = patterns.compile_pattern(pattern)
    if pattern is not None and not pattern.fullmatch(value):
        return _hint("not_right")
    return InputResult(True, value)


# Greetings and lead-ins before a name: "hi, it's Maria", "this is Maria Lopez", "my name is
# Ana", "me llamo Ana", "his name is Rex" (a pet), "you can call me Sam".
def _name_prefix(greetings: Sequence[str], lead_ins: Sequence[str]) -> re.Pattern[str]:
    return re.compile(
        rf"^(?:(?:{'|'.join(greetings)})[\s,.!]+)*(?:(?:{'|'.join(lead_ins)})(?:\s+|$))+", re.IGNORECASE
    )


def _name_suffix(suffixes: Sequence[str]) -> re.Pattern[str]:
    return re.compile(rf"\s+(?:{'|'.join(suffixes)})$", re.IGNORECASE)


_NAME_PREFIX = _name_prefix(_en.NAME_GREETINGS, _en.NAME_LEAD_INS)
_NAME_SUFFIX = _name_suffix(_en.NAME_SUFFIXES)
_NAME_OK = re.compile(r"^[^\W\d_][^\W\d_'\u2019.\- ]*(?:['\u2019.\- ]+[^\W\d_]+)*\.?$")
# Where the name part of "Maria, and tomorrow at 10am would be great" ends.
_NAME_CLAUSE = re.compile(
    r"\s*(?:[,;:!?()\u2014\u2013]|(?<!\bdr)(?<!\bmr)(?<!\bmrs)(?<!\bms)(?<!\bst)\.(?:\s|$)|\s-\s"
    r"|\s(?:and|but|y|i'?d|i\s+would|i\s+need|i\s+want|calling|about|for)\s)",
    re.IGNORECASE,
)
# Words that never make a name: pronouns, articles, auxiliaries and everyday verbs, the
# nouns of a service call. "my furnace is out" and "I'd like to book" are sentences, not
# names. Names that are also words ("Will", "May", "Hope", "Rose", "Mark", "Bill") are
# left out on purpose.
_NOT_NAME_WORDS = frozenset({
    "i", "im", "id", "ive", "ill", "me", "my", "mine", "we", "us", "our", "you", "your", "youre", "it", "its",
    "this", "that", "these", "those", "there", "here", "the", "a", "an", "is", "are", "am", "was", "were", "be",
    "been", "being", "have", "has", "had", "do", "does", "did", "dont", "doesnt", "didnt", "cant", "cannot", "wont",
    "would", "could", "should", "shall", "can", "need", "needs", "want", "wants", "like", "likes", "love", "get",
    "got", "make", "book", "booking", "booked", "schedule", "reschedule", "cancel", "change", "move", "help",
    "call", "calling", "called", "broke", "broken", "out", "leak", "leaking", "leaks", "flooding", "flooded",
    "working", "work", "works", "not", "no", "yes", "yeah", "nope", "ok", "okay", "please", "thanks", "thank",
    "hello", "hi", "hey", "what", "why", "how", "when", "where", "who", "which", "just", "know", "sure", "so", "if",
    "or", "to", "for", "of", "in", "on", "at", "with", "from", "about", "by", "as", "up", "down", "off", "over",
    "into", "than", "then", "too", "very", "appointment", "cleaning", "checkup", "emergency", "repair", "repairs",
    "service", "quote", "price", "prices", "cost", "heat", "heater", "heating", "furnace", "boiler", "ac", "aircon",
    "pipe", "pipes", "toilet", "sink", "water", "hot", "cold", "tooth", "teeth", "pain", "hurts", "hurt", "urgent",
    "asap", "today", "tomorrow", "tonight", "morning", "afternoon", "evening", "monday", "tuesday", "wednesday",
    "thursday", "friday", "saturday", "sunday", "pm", "week", "next", "time", "sorry", "wrong", "number",
    "stop", "agent", "human", "person", "someone", "somebody", "anyone", "quiero", "necesito", "tengo",
    "una", "cita", "por", "favor",
})


def _name(
    text: str, idiom: Idiom = "text", first_only: bool = False, rules: LanguageRules | None = None
) -> InputResult:
    words_of = None if rules is None or rules.canonical else _words_of(rules)
    prefix, suffix, not_name = (
        (_NAME_PREFIX, _NAME_SUFFIX, _NOT_NAME_WORDS) if words_of is None
        else (words_of.name_prefix, words_of.name_suffix, words_of.not_name)
    )
    value = " ".join(text.replace("\u2019", "'").split()).strip(" ,.!?;:\"")
    value = prefix.sub("", value)
    value = _NAME_CLAUSE.split(value, maxsplit=1)[0]  # "Maria, and tomorrow at 10am ..." -> "Maria"
    value = prefix.sub("", value)
    value = suffix.sub("", value).strip(" ,.!?;:\"")
    words = value.split()
    reprompt = "first_name" if first_only else "name"
    if not value or len(value) > 60 or len(words) > 5 or not _NAME_OK.match(value):
        return _hint(reprompt)
    if first_only:  # "Rex the dog", "Maria Lopez": the name alone
        words = words[:1]
        value = words[0]
    plain = [normalise(w) for w in words]
    if any(w in not_name for w in plain) or (words_of is not None and plain[0] in words_of.particles):
        return _hint(reprompt)
    if value.islower() or value.isupper():
        value = " ".join(_title(part) for part in value.split())
    return InputResult(True, value)


def _title(word: str) -> str:
    """"o'brien" -> "O'Brien", "anne-marie" -> "Anne-Marie", "mcdonald" -> "McDonald"."""
    out = re.sub(r"[^\W\d_]+", lambda m: m.group().capitalize(), word.lower())
    return re.sub(r"^Mc(\w)", lambda m: "Mc" + m.group(1).upper(), out)


def _number(text: str, idiom: Idiom = "text", rules: LanguageRules | None = None) -> InputResult:
    value = parse_number(text) if rules is None else parse_number(text, rules.code)
    if value is None:
        return _hint("number")
    return InputResult(True, value)


_YES = _en.YES
_NO = _en.NO
_UNSURE = _en.UNSURE


@lru_cache(maxsize=1024)
def _yes_no_words(norm: str, rules: LanguageRules | None = None) -> bool | None:
    yes_words, no_words, unsure = (_YES, _NO, _UNSURE) if rules is None else _words_of(rules).yes_no
    if norm in yes_words:
        return True
    if norm in no_words:
        return False
    words = tuple(norm.split())
    if any(_contains(words, tuple(p.split())) for p in unsure):
        return None
    yes = any(_contains(words, tuple(p.split())) for p in yes_words if not p.isdigit())
    no = any(_contains(words, tuple(p.split())) for p in no_words if not p.isdigit())
    return yes if yes != no else None


def _yes_no(text: str, idiom: Idiom = "text", rules: LanguageRules | None = None) -> InputResult:
    answer = _yes_no_words(normalise(text), None if rules is None or rules.canonical else rules)
    if answer is None:
        return _hint("yes_no_voice" if idiom == "voice" else "yes_no_text")
    return InputResult(True, answer)


def _settings_now(now: float | dt.datetime, tz: str) -> dt.datetime:
    if isinstance(now, dt.datetime):
        return now
    return dt.datetime.fromtimestamp(now, _zone(tz))


@lru_cache(maxsize=32)
def _zone(tz: str) -> ZoneInfo:
    return ZoneInfo(tz)


@lru_cache(maxsize=32)
def _notice(duration: str) -> float:
    return schema.parse_duration(duration)


PREFERENCE_KEYS = {"asap": "asap", "any": "any_time"}  # catalogue keys of the preferences' labels
PREFERENCE_LABELS = {name: catalogue()[key] for name, key in PREFERENCE_KEYS.items()}


def _when(
    kind: str, text: str, settings: schema.Settings, now: float | dt.datetime, language: str | None = None
) -> InputResult:
    want: Want = "date" if kind == "date" else "time" if kind == "time" else "datetime"
    parsed = parse_when(
        text,
        now=_settings_now(now, settings.timezone),
        tz=settings.timezone,
        language=settings.language if language is None else language,
        business_hours=settings.business_hours,
        min_notice_seconds=_notice(settings.min_notice),
        want=want,
    )
    if parsed.kind in ("exact", "earliest") and parsed.value is not None:
        value = parsed.value
        if parsed.preference is not None and want != "date":
            # "asap" / "any time" names no time: never save a clock time the flow would then
            # promise ("we'll call you at 1 PM"). A mapping like a slot's: it prints as its
            # label, `.start` is the earliest bookable time, find_slots reads it as "earliest".
            return InputResult(True, {
                "start": value.isoformat(timespec="seconds"),
                "label": PREFERENCE_LABELS[parsed.preference],
                "preference": parsed.preference,
            })
        if want == "date":
            return InputResult(True, value.date().isoformat())
        if want == "time":
            return InputResult(True, f"{value.hour:02d}:{value.minute:02d}")
        return InputResult(True, value.isoformat(timespec="seconds"))
    if parsed.kind == "ambiguous" and parsed.value is not None and parsed.clarify:
        moment = Moment(parsed.value.isoformat(timespec="seconds"))
        key = "closed_today" if parsed.clarify.startswith("We're fully closed for today") else "ambiguous_time"
        return InputResult(False, reprompt=parsed.clarify, hint=(key, {"moment": moment}))
    if parsed.clarify:
        return _clarify(parsed.clarify, want)
    return _hint("date")


_SPOKEN_DIGITS = {
    "zero": "0", "oh": "0", "o": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
    "six": "6", "seven": "7", "eight": "8", "nine": "9", "double": "double", "triple": "triple",
    "plus": "+",
}
_FICTIONAL_NANP = re.compile(r"^\d{3}55501\d{2}$")  # 555-0100..0199: reserved for examples and tests


def _phone(text: str, settings: schema.Settings) -> InputResult:
    raw = text.strip()
    if re.search(r"[a-z]", raw.lower()):
        raw = _spoken_phone(raw)
    region = language_region(settings.language)
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        number = None
    national = str(number.national_number) if number is not None else ""
    valid = number is not None and (
        phonenumbers.is_valid_number(number)
        or (number.country_code == 1 and _FICTIONAL_NANP.match(national) is not None)
    )
    if number is None or not valid:
        return _hint("phone")
    return InputResult(True, phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


def _spoken_phone(text: str) -> str:
    """"five five five, oh one nine nine" -> "5550199"; "double five" -> "55"."""
    out: list[str] = []
    repeat = 1
    for word in re.findall(r"[a-z]+|\d+|\+", text.lower()):
        mapped = _SPOKEN_DIGITS.get(word, word if (word.isdigit() or word == "+") else None)
        if mapped is None:
            continue
        if mapped in ("double", "triple"):
            repeat = 2 if mapped == "double" else 3
            continue
        out.append(mapped * repeat if mapped.isdigit() and len(mapped) == 1 else mapped)
        repeat = 1
    return "".join(out)


_EMAIL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+"
                    r"[A-Za-z]{2,63}$")
_EMAIL_PREFIX = re.compile(r"^(?:(?:my|the)\s+)?(?:e-?mail(?:\s+address)?(?:'s|\s+is)?|it'?s|it\s+is)\s+", re.I)


def _email(text: str, idiom: Idiom = "text") -> InputResult:
    value = _EMAIL_PREFIX.sub("", text.strip()).strip(" <>\"'.,;")
    if " " in value:  # spoken: "alex dot morgan at example dot com"
        value = re.sub(r"\s+(?:at)\s+", "@", value, flags=re.I)
        value = re.sub(r"\s+(?:dot)\s+", ".", value, flags=re.I)
        value = value.replace(" ", "")
    if len(value) > 254 or not _EMAIL.match(value) or ".." in value:
        return _hint("email_voice" if idiom == "voice" else "email_text")
    local, _, domain = value.rpartition("@")
    return InputResult(True, f"{local}@{domain.lower()}")


def _choice(
    text: str, choices: Sequence[OutChoice] | ChoiceMatcher | None, idiom: Idiom, rules: LanguageRules | None = None
) -> InputResult:
    if choices is None:
        return _text(text, None, idiom)
    matcher = choices if isinstance(choices, ChoiceMatcher) else choice_matcher(choices)
    return matcher.match(text, idiom=idiom, language=rules.code if rules is not None else "en")


_SIMPLE: dict[str, Callable[[str, Idiom], InputResult]] = {"email": _email}
_WORDED: dict[str, Callable[[str, Idiom, LanguageRules | None], InputResult]] = {
    "number": _number, "yes_no": _yes_no,
}


def parse_input(
    kind: str | None,
    text: str,
    *,
    choices: Sequence[OutChoice] | ChoiceMatcher | None = None,
    settings: schema.Settings,
    now: float | dt.datetime,
    pattern: patterns.Pattern | str | None = None,
    confidence: float | None = None,
    idiom: Idiom = "text",
    first_only: bool = False,
    language: str | None = None,
) -> InputResult:
    """Read one answer of `kind` (`schema.INPUT_KINDS`; None: choice when choices are given,
    else text). `now` is epoch seconds (or an aware datetime). `idiom` picks the words of
    the reprompt hint: "voice" (say / press) or "text" (type / reply). `first_only` (a
    `name` ask's `first_only: true`) keeps the first name alone. `language` (a tag: "es",
    "es-MX"; default the flow's `settings.language`) picks the words read: its primary
    subtag the rules (`orchestrator.languages`), its region the order of numeric dates."""
    if kind is None:
        kind = "choice" if choices else "text"
    if confidence is not None and confidence < settings.speech_confidence:
        return _hint("not_heard_again")
    tag = settings.language if language is None else language
    rules = _RULES[tag]
    own = None if rules.canonical else rules
    if kind == "name":
        return _name(text, idiom, first_only, own)
    worded = _WORDED.get(kind)
    if worded is not None:
        return worded(text, idiom, own)
    simple = _SIMPLE.get(kind)
    if simple is not None:
        return simple(text, idiom)
    if kind == "choice":
        return _choice(text, choices, idiom, own)
    if kind == "text":
        return _text(text, pattern, idiom)
    if kind in ("date", "time", "datetime"):
        if not text.strip():
            return _hint("date")
        return _when(kind, text, settings, now, tag)
    if kind == "phone":
        return _phone(text, settings)
    raise FlowRuntimeError(
        f"ask input {kind!r} is not a known kind (fix: use one of {', '.join(schema.INPUT_KINDS)})"
    )


# ------------------------------------------------------------------ other languages


class _LanguageWords:
    """A language's tables (`orchestrator.languages`) as the readers above use them: folded
    like the text they are matched against, the patterns compiled. Built once per language."""

    def __init__(self, rules: LanguageRules) -> None:
        def fold(words: Iterable[str]) -> frozenset[str]:
            return frozenset(w for w in (normalise(x) for x in words) if w)

        self.yes_no = (fold(rules.yes), fold(rules.no), fold(rules.unsure))
        self.numbers = {normalise(k): v for k, v in rules.number_words.items()}
        self.scales = {normalise(k): v for k, v in rules.number_scales.items()}
        self.joiners = fold(rules.number_joiners)
        self.number_vocab = frozenset({*self.numbers, *self.scales, *self.joiners})
        self.ordinals = {normalise(k): v for k, v in rules.ordinals.items()}
        leads = _alternation([*(normalise(x) for x in rules.choice_lead_ins if normalise(x)), "#"])
        trailers = _alternation(normalise(x) for x in rules.choice_trailers)
        self.number_answer = re.compile(rf"^(?:(?:{leads})\s*)?(?P<n>\d{{1,2}}|[a-z]+(?: [a-z]+)?)$")
        self.ordinal_answer = re.compile(
            rf"^(?:(?:{leads})\s+)*(?P<o>{_alternation(self.ordinals)})(?:\s+(?:{trailers}))*$"
        )
        self.filler = _FILLER | fold(rules.fillers)
        self.name_prefix = _name_prefix(rules.name_greetings or ("hola",), rules.name_lead_ins or ("$^",))
        self.name_suffix = _name_suffix(rules.name_suffixes or ("$^",))
        self.particles = fold(rules.name_particles)
        self.not_name = _NOT_NAME_WORDS | fold(rules.not_name_words)
        self.negators = _NEGATORS | fold(rules.negators) - {_NO_WORD}

    def number(self, words: Sequence[str]) -> int | None:
        """Additive words and multiplying scales: "treinta y dos" 32, "dos mil trescientos" 2300."""
        total = current = 0
        seen = False
        for word in words:
            if word in self.joiners and seen:
                continue
            if word in self.numbers:
                current, seen = current + self.numbers[word], True
            elif word in self.scales:
                total, current, seen = total + (current or 1) * self.scales[word], 0, True
            elif seen:
                break
        return total + current if seen else None


def _alternation(words: Iterable[str]) -> str:
    return "|".join(re.escape(w) for w in sorted(set(words), key=len, reverse=True) if w)


@lru_cache(maxsize=16)
def _words_of(rules: LanguageRules) -> _LanguageWords:
    return _LanguageWords(rules)
