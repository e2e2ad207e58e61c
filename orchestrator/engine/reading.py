"""What one message says beyond the answer to the question asked (SPEC §8): values for the asks
ahead (fill ahead), a correction of something said before, a yes/no to a read-back.

The engine (`turn`) decides what happens; this module reads. The path ahead is static, from
the compiled flow: from the ask being answered, follow the route its answer takes, then each
say's `next` and each call's success route (`ok`), collecting the asks met, and stop at a
branch, a handoff, a record, an end, an ask whose choices come from a variable (slots are not
known yet), or an ask whose choices route apart when the message does not answer it (unless
every one of those routes meets again at the same next ask, as a "toothache" say does).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import phonenumbers

from orchestrator.engine import extract
from orchestrator.engine.compiler import CompiledState
from orchestrator.engine.inputs import choice_matcher, parse_input
from orchestrator.flow.templates import language_region
from orchestrator.model import OutChoice

if TYPE_CHECKING:
    from orchestrator.engine.turn import _Turn

FILLED_KEY = "_filled"
CONFIRM_KEY = "_confirm"
_MAX_AHEAD = 40  # states walked looking for asks ahead (a flow's path, not a loop)
_QUESTION = re.compile(
    r"\?|^\s*(?:are|is|do|does|did|what|whats|what's|when|where|wheres|where's|how|hows|how's|can|could|"
    r"will|would|which|who|why)\b",
    re.IGNORECASE,
)
_AUTOMATIC = frozenset({"say", "call"})


def is_question(text: str) -> bool:
    """A question ("are you open saturday?", "what's your address"): only then may an
    `answers:` entry reply instead of reading the message as the answer."""
    return _QUESTION.search(text) is not None


class Reading:
    """One message read against the ask it answers (`state`) and the flow around it."""

    __slots__ = ("choices", "correction", "state", "text", "turn")

    def __init__(self, turn: _Turn, state: CompiledState, text: str, choices: Sequence[OutChoice]) -> None:
        self.turn = turn
        self.state = state
        self.text = text
        self.choices = choices
        self.correction = extract.split_correction(text, turn.understand_language)

    # ------------------------------------------------------------------ the ask itself
    def _read(
        self, state: CompiledState, text: str, choices: Sequence[OutChoice] | None = None
    ) -> extract.Found | None:
        """`text` as a whole answer to `state` (names and free text read the way a
        correction says them: "my name is Ana", "it's the AC")."""
        if not text:
            return None
        kind, settings, language = state.input, self.turn.compiled.settings, self.turn.understand_language
        if kind == "name":
            value = extract.name_answer(text, language)
            return extract.Found(value) if value is not None else None
        if kind == "text":
            if state.pattern is not None:
                result = parse_input("text", text, settings=settings, now=0.0, pattern=state.pattern,
                                     language=language)
                return extract.Found(result.value) if result.ok else None
            said = extract.as_text_answer(text)
            return extract.Found(said) if said else None
        if kind == "yes_no":
            return None
        if kind in ("date", "time", "datetime") and not extract.has_date_word(text, language):
            return None
        if kind == "choice":
            offered = choices if choices is not None else self.choices
            if not offered:
                return None
            result = (state.matcher or choice_matcher(offered)).match(text, fuzzy=False, language=language)
            return extract.Found(result.choice_id, result.choice_id) if result.ok else None
        result = parse_input(kind, text, settings=settings, now=self.turn._now_dt(), pattern=state.pattern,
                             language=language)
        return extract.Found(result.value, result.choice_id) if result.ok else None

    def current_corrected(self) -> extract.Found | None:
        """The answer to this ask given as a correction ("Friday at 2, no actually Thursday at 2")."""
        if self.correction is None:
            return None
        return self._read(self.state, self.correction[1])

    def current_in_message(self) -> extract.Found | None:
        """This ask's value inside a longer message the whole-answer reader refused
        ("Maria, and tomorrow at 10am would be great")."""
        turn = self.turn
        return extract.find(self.state.input, self.text, choices=self.state.matcher or self.choices or None,
                            settings=turn.compiled.settings, now=turn._now_dt(), lead_in=False,
                            language=turn.understand_language)

    # ------------------------------------------------------------------ corrections
    def earlier_corrected(self) -> tuple[CompiledState, extract.Found] | None:
        """The ask answered before whose value the correction replaces (the latest first)."""
        if self.correction is None or not self.correction[1]:
            return None
        said = self.correction[1]
        turn = self.turn
        s, states = turn.session, turn.compiled.states
        for name in reversed(s.path):
            asked = states.get(name)
            if (asked is None or asked.kind != "ask" or not asked.save or asked is self.state
                    or asked.choices_from or asked.input not in extract.FILLABLE or asked.save not in s.vars):
                continue
            found = extract.find(asked.input, said, choices=asked.matcher or asked.choices or None,
                                 settings=turn.compiled.settings, now=turn._now_dt(),
                                 language=turn.understand_language)
            if found is None:
                continue
            old = s.vars.get(asked.save)
            if asked.input == "datetime" and isinstance(old, str) and isinstance(found.value, str) \
                    and "T" in old and not extract.names_a_day(said, turn.understand_language):
                # "actually, 3pm": the day already chosen stays
                found = extract.Found(old.split("T", 1)[0] + "T" + found.value.split("T", 1)[1])
            if found.value != old:
                return asked, found
        return None

    # ------------------------------------------------------------------ fill ahead
    def ahead(self, value: Any, choice_id: str | None) -> list[tuple[CompiledState, extract.Found]]:
        """The asks ahead on the path that this message answers, each with its value."""
        turn, state = self.turn, self.state
        states = turn.compiled.states
        settings, now = turn.compiled.settings, turn._now_dt()
        if choice_id is None and state.input == "yes_no" and isinstance(value, bool):
            choice_id = "yes" if value else "no"
        name = state.routes.get(choice_id) if choice_id is not None else None
        name = name or state.routes.get("next")
        visited = {state.name}
        # a bare answer ("opt0", "cleaning") answers the question on screen only: the same
        # words do not also pick a choice further on
        bare = choice_id is not None and state.matcher is not None and extract.is_one_phrase(
            self.text, state.matcher, choice_id)
        path: list[tuple[CompiledState, extract.Found | None]] = []
        for _ in range(_MAX_AHEAD):
            if name is None or name in visited:
                break
            visited.add(name)
            st = states[name]
            if st.kind in _AUTOMATIC:
                if st.end:
                    break
                name = st.routes.get("ok" if st.kind == "call" else "next")
                continue
            if st.kind != "ask" or st.choices_from:
                break
            found = None
            if st.fill and st.input in extract.FILLABLE and not (bare and st.input == "choice"):
                found = extract.find(st.input, self.text, choices=st.matcher or st.choices or None,
                                     settings=settings, now=now, language=turn.understand_language)
            path.append((st, found))
            if found is not None and found.choice_id is not None and found.choice_id in st.routes:
                name = st.routes[found.choice_id]
            elif st.branches:
                name = self._meeting_point(st)
            else:
                name = st.routes.get("next")
        # a value two asks of the same kind could take fills neither (nor one of the kind just answered)
        kinds = Counter(st.input for st, _ in path if st.input != "choice")
        return [(st, found) for st, found in path if found is not None
                and (st.input == "choice" or (kinds[st.input] == 1 and st.input != state.input))]

    def _meeting_point(self, ask: CompiledState) -> str | None:
        """The ask every answer of `ask` leads to (through says and calls), if they all meet."""
        states = self.turn.compiled.states
        ids = {c.id for c in ask.choices}
        met: set[str | None] = set()
        for trigger, dest in ask.routes.items():
            if trigger != "next" and trigger not in ids:
                continue
            name: str | None = dest
            for _ in range(_MAX_AHEAD):
                st = states.get(name) if name is not None else None
                if st is None or st.kind not in _AUTOMATIC or st.end:
                    break
                name = st.routes.get("ok" if st.kind == "call" else "next")
            met.add(name if name is not None and states[name].kind == "ask" else None)
        return met.pop() if len(met) == 1 else None

    # ------------------------------------------------------------------ read-back
    def confirmation(self) -> tuple[bool | None, extract.Found | None]:
        """A reply to a read-back: (yes / no / neither, a corrected value if it gives one)."""
        text = self.text
        if self.correction is not None and self.correction[1]:
            new = self._read(self.state, self.correction[1])
            if new is not None:
                return False, new
        result = parse_input("yes_no", text, settings=self.turn.compiled.settings, now=0.0,
                             language=self.turn.understand_language)
        if result.ok:
            return bool(result.value), None
        return None, self._read(self.state, text)


# ------------------------------------------------------------------ what the bot says back


def _label(state: CompiledState, choice_id: str | None, value: Any) -> str:
    for choice in state.choices:
        if choice.id == choice_id:
            label = choice.label
            return label if label.isupper() else label[:1].lower() + label[1:]
    if isinstance(value, Mapping) and value.get("label") is not None:
        return str(value["label"])
    return str(value)


def _spelled(word: str, voice: bool) -> str:
    letters = [ch.upper() for ch in word if ch.isalnum()]
    return ", ".join(letters) if voice else "-".join(letters)


def _phone_shown(turn: _Turn, value: str, *, grouped: bool) -> str:
    region = language_region(turn.compiled.settings.language)
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        return value
    national = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
    if not grouped:
        return national
    groups = [g for g in re.split(r"\D+", national) if g]
    return ", ".join(" ".join(group) for group in groups)


def describe(turn: _Turn, state: CompiledState, value: Any, choice_id: str | None) -> str:
    """A collected value as a receptionist says it back ("cleaning", "Thu 26 Nov at 10:00 AM")."""
    formats = turn.compiled.templates.formats
    words = turn.compiled.words
    kind = state.input
    if isinstance(value, Mapping) and value.get("preference"):
        return str(value.get("label"))
    try:
        if kind == "datetime":
            return words.say("date_at_time", date=formats.short_date(value), time=formats.time(value))
        if kind == "date":
            return formats.date(value)
        if kind == "time":
            return words.say("at_time", time=formats.time(value))
    except (TypeError, ValueError):
        return str(value)
    if kind == "phone" and isinstance(value, str):
        return _phone_shown(turn, value, grouped=False)
    if kind == "choice" or choice_id is not None:
        return _label(state, choice_id, value)
    if kind == "yes_no" and isinstance(value, bool):
        return words["word_yes" if value else "word_no"]
    return str(value)


def shown(turn: _Turn, state: CompiledState, value: Any, choice_id: str | None, *, spell: bool) -> str:
    """The value in a read-back; after a "no", names and emails spelled out and phone digits
    grouped on voice."""
    voice = turn._idiom() == "voice"
    words = turn.compiled.words
    if spell and isinstance(value, str):
        if state.input == "name":
            return words.say("spelled", value=value, letters=" ".join(_spelled(w, voice) for w in value.split()))
        if state.input == "email":
            local, _, domain = value.partition("@")
            domain_said = domain.replace(".", words["dot"]) if voice else domain
            return words.say("spelled_email", value=value, local=_spelled(local, voice), domain=domain_said)
        if state.input == "phone":
            return _phone_shown(turn, value, grouped=voice)
    if state.input == "phone" and isinstance(value, str) and voice:
        return _phone_shown(turn, value, grouped=True)
    return describe(turn, state, value, choice_id)


def acknowledgement(turn: _Turn, items: Sequence[tuple[CompiledState, Any, str | None]], *,
                    correction: bool = False) -> str:
    """"Thanks Maria — cleaning, Thu 26 Nov at 10:00 AM." for what one message told us."""
    first: str | None = None
    parts: list[str] = []
    for state, value, choice_id in items:
        if not state.save:
            continue
        if state.input == "name" and isinstance(value, str) and value.split():
            first = value.split()[0]
        else:
            parts.append(describe(turn, state, value, choice_id))
    listed = ", ".join(p for p in parts if p)
    words = turn.compiled.words
    if correction:
        if first and not listed:
            return words.say("got_it_name", name=first)
        return words.say("got_it_list", items=listed) if listed else ""
    if first and listed:
        return words.say("thanks_name_list", name=first, items=listed)
    if listed:
        return words.say("got_it_dash_list", items=listed)
    return words.say("thanks_name", name=first) if first else ""
