"""Flow -> one `transitions.Machine` per revision, plus everything a turn needs, precompiled.

This is the only module importing `transitions`. A machine is built once per flow revision
with `model=None` and `auto_transitions=False`; a turn never calls `add_model`: it fires
`machine.events[trigger].trigger(cursor)` on a light `__slots__` cursor holding the state
(PERFORMANCE.md: ~10 µs whatever the flow's size). Every edge of the flow is a transition
whose trigger is the route label: `next`, `ok`, `empty`, `conflict`, `error`, `fail`,
`timeout`, `no_answer`, a choice id, `branch_<i>`, and `intent:<name>` from every ask.

Templates, choice lists, durations and the settings are compiled here too, so a turn does
no template compilation, YAML parsing or regex compiling. `FlowCache` keeps compiled
revisions (LRU) so every conversation on a revision shares one `CompiledFlow`.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import msgspec
from transitions import Machine, MachineError

from orchestrator.engine import sending
from orchestrator.engine.hours import OpeningHours
from orchestrator.engine.inputs import ChoiceMatcher, IntentMatcher, choice_matcher
from orchestrator.engine.summary import SummaryPlan
from orchestrator.engine.summary import plan as summary_plan
from orchestrator.errors import Diagnostic, FlowError, FlowRuntimeError
from orchestrator.flow import localize, patterns, schema
from orchestrator.flow.templates import (
    CompiledArgs,
    Expression,
    Formats,
    Template,
    TemplateEngine,
    flow_choice_durations,
    flow_choice_labels,
)
from orchestrator.languages.messages import Catalogue, catalogue
from orchestrator.model import OutChoice
from orchestrator.plugins.connectors import ConnectorRegistry

# `transitions` logs INFO on every state change (two records per turn): only its warnings matter.
logging.getLogger("transitions").setLevel(logging.WARNING)

CHANNEL_KEYS: tuple[str, ...] = schema.CHANNELS  # per-channel overrides: voice, sms, whatsapp
INTENT_PREFIX = "intent:"


class Prompt(Protocol):
    def render(self, ctx: Mapping[str, Any]) -> str: ...


class _Cursor:
    """The only object the machine ever sees: a conversation's state name, for one firing."""

    __slots__ = ("state",)

    def __init__(self, state: str) -> None:
        self.state = state


@dataclass(slots=True)
class Texts:
    """A prompt with its per-channel overrides, compiled; `get(channel)` picks one."""

    default: Prompt | None
    by_channel: dict[str, Prompt] = field(default_factory=dict)

    def get(self, channel: str) -> Prompt | None:
        return self.by_channel.get(channel, self.default)


@dataclass(slots=True)
class CompiledState:
    name: str
    kind: str  # say | ask | branch | call | handoff | record | end
    spec: schema.State
    routes: dict[str, str]  # trigger -> destination state
    text: Texts  # say / ask / handoff message / record prompt / end message
    reprompt: Texts
    media: Prompt | None = None
    target: Prompt | None = None  # handoff: staff number
    args: CompiledArgs | None = None  # call
    action: str = ""  # call: connector.action
    timeout_seconds: float = 0.0  # call
    max_seconds: float = 0.0  # record
    branch: list[tuple[Expression | None, str]] = field(default_factory=list)  # (when, trigger)
    input: str = "text"  # ask
    choices: list[OutChoice] = field(default_factory=list)  # ask: static choices
    choices_from: str | None = None  # ask: variable holding a list
    matcher: ChoiceMatcher | None = None  # ask: the static choices' matcher, built once
    pattern: patterns.Pattern | None = None  # ask: `pattern:` on the linear-time engine, compiled once
    max_retries: int = 2
    save: str | None = None
    end: str | None = None  # outcome when the state ends the conversation
    waits: bool = False  # ask / record: the turn stops here for an answer
    fill: bool = False  # ask: may be filled by a message answering an earlier ask (fill ahead)
    confirms: bool = False  # ask: `confirm:` reads the value back before going on
    confirm: Prompt | None = None  # ask: the read-back template (`confirm: "..."`), else the built-in words
    branches: bool = False  # ask: some choice has its own route (the path ahead depends on the answer)
    notice: Prompt | None = None  # record: the recording notice said before the prompt


@dataclass(slots=True)
class SummaryVars:
    """Which flow variables feed a conversation's summary (found by input kind / action)."""

    name: str | None = None
    reason: str | None = None
    wanted: str | None = None
    booking: str | None = None


@dataclass(slots=True)
class CompiledFlow:
    flow: schema.Flow
    revision: str
    machine: Machine
    states: dict[str, CompiledState]
    settings: schema.Settings
    templates: TemplateEngine
    timezone: ZoneInfo
    title: str
    no_reply_seconds: float | None
    intents: dict[str, schema.Intent]
    intent_matcher: IntentMatcher | None
    summary_vars: SummaryVars
    summary: SummaryPlan  # every collected field, labelled, and settings.summary compiled
    reminder: Prompt
    consent_notice: Prompt
    hours: OpeningHours
    uses_hours: bool = False  # a template or condition reads open_now / next_open
    answers: dict[str, Prompt] = field(default_factory=dict)  # `answers:` name -> its reply
    answer_matcher: IntentMatcher | None = None  # the answers' phrases (negation-aware, like intents)
    filename: str = "<flow>"
    machine_message: Prompt | None = None  # voice: said to a voicemail (settings.on_machine: leave_message)
    # SPEC §9: the language these texts are in (a key of settings.languages, else the tag),
    # the engine's own words in it, and the flow compiled in each other declared language
    language: str = "en-US"
    words: Catalogue = field(default_factory=catalogue)
    voice: str | None = None  # set on each message when it differs from the flow default's voice
    variants: dict[str, CompiledFlow] = field(default_factory=dict)
    by_country: tuple[tuple[str, str], ...] = ()  # settings.language_by_country, longest prefix first
    english_formats: Formats | None = None  # a language other than English: how connectors label slots
    relabels: dict[tuple[str, str], str] = field(default_factory=dict)  # (start, connector's label) -> ours


    def variant(self, language: str | None) -> CompiledFlow:
        """This revision in `language` (a declared language), else in its default."""
        if language is None or not self.variants:
            return self
        return self.variants.get(language, self)

    def for_tag(self, tag: str | None) -> CompiledFlow:
        """The language copy whose messages carry `tag` (an Outbound's `language`), else this one."""
        if tag is None or not self.variants or tag == self.settings.language:
            return self
        return next((v for v in self.variants.values() if v.settings.language == tag), self)

    def language_of(self, contact: str) -> str | None:
        """The declared language of a contact's number by its country code (`+34...` -> es)."""
        if not self.by_country or not contact.startswith("+"):
            return None
        digits = contact[1:]
        for prefix, language in self.by_country:
            if digits.startswith(prefix):
                return language
        return None

    @property
    def id(self) -> str:
        return self.flow.flow

    @property
    def start(self) -> str:
        return self.flow.start

    def fire(self, state: str, trigger: str) -> str:
        """Fire `trigger` from `state` through the machine; returns the destination.

        The machine is the source of truth for the graph: a missing edge is a bug
        (the engine only fires routes it found in `CompiledState.routes`)."""
        event = self.machine.events.get(trigger)
        if event is None:
            raise FlowRuntimeError(
                f"flow {self.id!r} (revision {self.revision}): no transition {trigger!r} anywhere in the "
                f"flow (fired from state {state!r}); add `{trigger}:` under that state's `on:`"
            )
        cursor = _Cursor(state)
        try:
            moved = event.trigger(cursor)
        except (MachineError, ValueError) as exc:
            raise FlowRuntimeError(
                f"flow {self.id!r} (revision {self.revision}): cannot fire {trigger!r} from state "
                f"{state!r}: {exc}; add `{trigger}:` under that state's `on:`"
            ) from exc
        if not moved:
            raise FlowRuntimeError(
                f"flow {self.id!r}: transition {trigger!r} from {state!r} did not happen"
            )
        return cursor.state


def _revision_of(flow: schema.Flow) -> str:
    return hashlib.sha256(msgspec.json.encode(flow)).hexdigest()[:12]


_SUBSTITUTION = re.compile(r"\{\{\s*([A-Za-z][A-Za-z0-9_]*(?:\.[A-Za-z][A-Za-z0-9_]*)*)\s*\}\}")
_DICT_METHODS = frozenset(name for name in dir(dict) if not name.startswith("_"))
_MISSING: Any = object()


class SubstitutionTemplate:
    """A prompt that only substitutes variables (`"Thanks, {{ name }}! {{ booking.label }}"`).

    Most prompts are like this; jinja compiles each in ~1 ms, which dominates compiling a
    large flow. This renders them directly with jinja's output rules (None -> "", a mapping
    with a `label` -> its label), and hands anything unusual (a missing variable, a
    non-mapping in a dotted path, a name shadowing a dict method) to the real sandboxed
    template, compiled on that first need, so errors and edge cases are jinja's own."""

    __slots__ = ("_engine", "_jinja", "_paths", "_texts", "constant", "source")

    def __init__(self, engine: TemplateEngine, source: str, texts: list[str], names: list[str]) -> None:
        self.source = source
        self.constant = False
        self._engine = engine
        self._texts = texts
        self._paths = [tuple(name.split(".")) for name in names]
        self._jinja: Template | None = None

    def render(self, ctx: Mapping[str, Any]) -> str:
        texts = self._texts
        out = [texts[0]]
        for i, path in enumerate(self._paths):
            value = ctx.get(path[0], _MISSING)
            for key in path[1:]:
                if not isinstance(value, dict) or key in _DICT_METHODS:
                    return self._slow(ctx)
                value = value.get(key, _MISSING)
            if value is _MISSING:
                return self._slow(ctx)
            if value is None:
                value = ""
            elif isinstance(value, dict) and "label" in value:
                value = value["label"]
            out.append(value if isinstance(value, str) else str(value))
            out.append(texts[i + 1])
        return "".join(out)

    def _slow(self, ctx: Mapping[str, Any]) -> str:
        if self._jinja is None:
            self._jinja = self._engine.compile(self.source)
        return self._jinja.render(ctx)


def compile_text(engine: TemplateEngine, source: str) -> Template | SubstitutionTemplate:
    """A prompt template: plain substitutions fast, anything else through jinja."""
    if "{%" not in source and "{#" not in source:
        parts = _SUBSTITUTION.split(source)
        texts, names = parts[0::2], parts[1::2]
        if names and not any("{{" in t or "}}" in t for t in texts):
            return SubstitutionTemplate(engine, source, texts, names)
    return engine.compile(source)


def _texts(
    engine: TemplateEngine, default: schema.Text | None, state: schema.State, attr: str, fallback: str | None = None
) -> Texts:
    by_channel: dict[str, Prompt] = {}
    for channel in CHANNEL_KEYS:
        override = getattr(state, channel, None)
        if override is None:
            continue
        src = getattr(override, attr, None)
        if src is None and fallback is not None:
            src = getattr(override, fallback, None)
        if src is not None:
            by_channel[channel] = compile_text(engine, schema.plain(src))
    return Texts(compile_text(engine, schema.plain(default)) if default is not None else None, by_channel)


def static_choices(state: schema.AskState) -> list[OutChoice]:
    """An ask's static choices as the engine offers them (a label defaults to the id)."""
    return [
        OutChoice(
            id=cid,
            label=schema.plain(choice.label or cid.replace("_", " ")),
            dtmf=choice.dtmf,
            match=schema.plain_words(choice.match),
            description=schema.plain(choice.description) if choice.description else None,
        )
        for cid, choice in (state.choices or {}).items()
    ]


def _routes(
    state: schema.State, intents: Mapping[str, schema.Intent], defaults: schema.Defaults | None = None
) -> dict[str, str]:
    routes: dict[str, str] = {}
    if isinstance(state, schema.BranchState):
        for i, case in enumerate(state.branch):
            routes[f"branch_{i}"] = case.goto
        return routes
    nxt = getattr(state, "next", None)
    if nxt:
        routes["next"] = nxt
    routes.update(getattr(state, "on", None) or {})
    if isinstance(state, schema.CallState) and "ok" not in routes and nxt:
        routes["ok"] = nxt
    if defaults is not None:  # the flow's defaults, for what the state does not route itself
        wanted = {"fail": defaults.fail, "timeout": defaults.timeout, "stuck": defaults.stuck} \
            if isinstance(state, schema.AskState) else (
            {"error": defaults.error} if isinstance(state, schema.CallState) else {})
        for key, target in wanted.items():
            if target:
                routes.setdefault(key, target)
    if isinstance(state, schema.AskState):
        for name, intent in intents.items():
            routes[INTENT_PREFIX + name] = intent.goto
    return routes


def _summary_vars(flow: schema.Flow) -> SummaryVars:
    found = SummaryVars()
    for name, state in flow.states.items():
        if isinstance(state, schema.AskState) and state.save:
            kind = state.input or ("choice" if state.choices or state.choices_from else "text")
            if kind == "name" and found.name is None:
                found.name = state.save
            elif kind in ("datetime", "date", "time") and found.wanted is None:
                found.wanted = state.save
            elif found.reason is None and ("reason" in state.save or "reason" in name):
                found.reason = state.save
        if isinstance(state, schema.CallState) and state.save and state.call.endswith(".book"):
            found.booking = found.booking or state.save
    return found


def _compile_state(
    name: str, state: schema.State, flow: schema.Flow, engine: TemplateEngine, where: str
) -> CompiledState:
    routes = _routes(state, flow.intents, flow.defaults)
    empty = Texts(None)
    if isinstance(state, schema.SayState):
        return CompiledState(
            name, "say", state, routes, _texts(engine, state.say, state, "say"), empty,
            media=compile_text(engine, state.media) if state.media else None, end=state.end,
        )
    if isinstance(state, schema.AskState):
        kind = state.input or ("choice" if state.choices or state.choices_from else "text")
        if state.pattern and (bad := patterns.problem(state.pattern)) is not None:
            raise FlowError([Diagnostic(file=where, line=1, col=1, path=f"$.states.{name}.pattern",
                                        message=f"state {name!r}: bad pattern {state.pattern!r}: {bad.message}",
                                        hint=bad.hint)])
        choices = static_choices(state)
        fill = flow.settings.fill_ahead if state.fill_ahead is None else state.fill_ahead
        return CompiledState(
            name, "ask", state, routes, _texts(engine, state.ask, state, "ask"),
            _texts(engine, state.reprompt, state, "reprompt"),
            input=kind, choices=choices, choices_from=state.choices_from,
            pattern=patterns.compile_pattern(state.pattern) if state.pattern else None,
            matcher=choice_matcher(choices) if choices and not state.choices_from else None,
            max_retries=flow.settings.max_retries if state.max_retries is None else state.max_retries,
            save=state.save, waits=True,
            fill=fill and not state.choices_from, confirms=bool(state.confirm),
            confirm=compile_text(engine, state.confirm) if isinstance(state.confirm, str) else None,
            branches=any(cid in routes for cid in (state.choices or {})),
        )
    if isinstance(state, schema.CallState):
        return CompiledState(
            name, "call", state, routes, empty, empty, args=engine.compile_args(state.args),
            action=state.call, save=state.save,
            timeout_seconds=min(schema.parse_duration(state.timeout), schema.MAX_CALL_TIMEOUT_SECONDS),
        )
    if isinstance(state, schema.BranchState):
        cases: list[tuple[Expression | None, str]] = [
            (engine.compile_expression(case.when) if case.when else None, f"branch_{i}")
            for i, case in enumerate(state.branch)
        ]
        return CompiledState(name, "branch", state, routes, empty, empty, branch=cases)
    if isinstance(state, schema.HandoffState):
        return CompiledState(
            name, "handoff", state, routes, _texts(engine, state.say, state, "say", "handoff"), empty,
            target=compile_text(engine, state.handoff), end=state.end,
            max_seconds=schema.parse_duration(state.timeout) if state.timeout else 0.0,
        )
    if isinstance(state, schema.RecordState):
        return CompiledState(
            name, "record", state, routes, _texts(engine, state.record, state, "record"), empty,
            max_seconds=schema.parse_duration(state.max_length), save=state.save, end=state.end, waits=True,
            notice=None if not state.notice else compile_text(
                engine, schema.plain(flow.settings.consent_notice if state.notice is True else state.notice)),
        )
    assert isinstance(state, schema.EndState)
    return CompiledState(name, "end", state, routes, _texts(engine, state.say, state, "say"), empty, end=state.end)


def _check_connectors(flow: schema.Flow, connectors: ConnectorRegistry, where: str) -> None:
    problems = [
        Diagnostic(
            file=where, line=1, col=1, path=f"$.states.{name}.call",
            message=f"state {name!r} calls unknown action {state.call!r}",
            hint=f"registered connectors: {', '.join(connectors.names()) or 'none'}",
        )
        for name, state in flow.states.items()
        if isinstance(state, schema.CallState) and not connectors.has_action(state.call)
        and not sending.is_send(state.call)
    ]
    if problems:
        raise FlowError(problems)


def build_machine(flow: schema.Flow, routes: Mapping[str, Mapping[str, str]]) -> Machine:
    """One machine for the revision: states are the flow's, every route is a transition."""
    transitions = [
        {"trigger": trigger, "source": source, "dest": dest}
        for source, table in routes.items()
        for trigger, dest in table.items()
    ]
    try:
        return Machine(
            model=None, states=list(flow.states), transitions=transitions, initial=flow.start,
            auto_transitions=False, send_event=False,
        )
    except ValueError as exc:  # a route to an unknown state
        raise FlowRuntimeError(
            f"flow {flow.flow!r}: cannot build its state machine: {exc}; run `orchestrator validate`"
        ) from exc


def compile_flow(
    source: Any, revision: str | None = None, *, connectors: ConnectorRegistry | None = None
) -> CompiledFlow:
    """`LoadedFlow` (or a bare `schema.Flow`) -> `CompiledFlow`. Raises FlowError/FlowRuntimeError."""
    if isinstance(source, schema.Flow):
        flow, where = source, "<flow>"
    else:
        flow, where = source.flow, getattr(source, "filename", "<flow>")
        revision = revision or getattr(source, "revision", None)
    revision = revision or _revision_of(flow)
    if connectors is not None:
        _check_connectors(flow, connectors, where)
    if not flow.settings.languages:
        return _compile_language(flow, revision, where, None, None)
    languages = localize.declared(flow.settings)
    base = _compile_language(localize.localize(flow, languages[0]), revision, where, languages[0], None)
    base.variants = {languages[0]: base}
    for language in languages[1:]:
        base.variants[language] = _compile_language(
            localize.localize(flow, language), revision, where, language, base)
    base.summary.slot_labels = [v.templates.formats.datetime for v in base.variants.values() if v is not base]
    base.by_country = tuple(sorted(
        ((code.lstrip("+"), language) for code, language in flow.settings.language_by_country.items()),
        key=lambda item: -len(item[0])))
    return base


def _compile_language(
    flow: schema.Flow, revision: str, where: str, language: str | None, base: CompiledFlow | None
) -> CompiledFlow:
    """One language's compilation (`flow` already localized); a variant shares `base`'s machine."""
    settings = flow.settings
    tag = settings.language if language is None else localize.tag_of(
        language, settings, localize.region(catalogue(language).tag))
    words = catalogue(tag)
    voice = schema.plain(settings.voice) if settings.voice else words.voice_for(tag)
    # the schema's defaults are the English catalogue's words: another language says its own
    said = {key: words[key] for key in ("reminder", "consent_notice")
            if words.language != "en" and getattr(settings, key) == catalogue()[key]}
    settings = msgspec.structs.replace(settings, language=tag, voice=voice, **said)
    engine = TemplateEngine(settings.timezone, tag, flow_choice_labels(flow), words.formats,
                            flow_choice_durations(flow))
    states = {name: _compile_state(name, st, flow, engine, where) for name, st in flow.states.items()}
    machine = base.machine if base is not None else build_machine(
        flow, {name: cs.routes for name, cs in states.items()})
    texts = msgspec.json.encode([flow.states, flow.settings, flow.answers])  # only to see whether hours are asked
    timezone = ZoneInfo(settings.timezone)
    return CompiledFlow(
        flow=flow, revision=revision, machine=machine, states=states, settings=settings,
        templates=engine, timezone=timezone, title=flow.title or flow.flow,
        no_reply_seconds=schema.parse_duration(settings.no_reply_timeout) if settings.no_reply_timeout else None,
        intents=dict(flow.intents), intent_matcher=IntentMatcher(flow.intents) if flow.intents else None,
        summary_vars=_summary_vars(flow), summary=summary_plan(flow, states, engine, words),
        reminder=compile_text(engine, schema.plain(settings.reminder)),
        consent_notice=compile_text(engine, schema.plain(settings.consent_notice)),
        hours=OpeningHours.from_settings(settings, timezone),
        uses_hours=b"open_now" in texts or b"next_open" in texts,
        answers={name: compile_text(engine, schema.plain(a.say)) for name, a in flow.answers.items()},
        answer_matcher=IntentMatcher({name: schema.Intent(goto=name, match=schema.plain_words(a.match))
                                      for name, a in flow.answers.items()}) if flow.answers else None,
        filename=where, language=language or tag, words=words,
        english_formats=Formats(settings.timezone, "en-US") if words.language != "en" else None,
        voice=voice if base is not None and voice != base.settings.voice else None,
        machine_message=compile_text(engine, schema.plain(settings.machine_message)),
    )


class FlowCache:
    """Compiled flows by revision, least recently used dropped first (bounded)."""

    def __init__(self, max_size: int = 64) -> None:
        if max_size < 1:
            raise ValueError(f"FlowCache max_size must be >= 1, got {max_size}")
        self.max_size = max_size
        self._items: OrderedDict[str, CompiledFlow] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, revision: object) -> bool:
        return revision in self._items

    def get(self, revision: str) -> CompiledFlow | None:
        compiled = self._items.get(revision)
        if compiled is not None:
            self._items.move_to_end(revision)
        return compiled

    def put(self, compiled: CompiledFlow) -> CompiledFlow:
        self._items[compiled.revision] = compiled
        self._items.move_to_end(compiled.revision)
        while len(self._items) > self.max_size:
            self._items.popitem(last=False)
        return compiled

    def get_or_compile(self, source: Any, *, connectors: ConnectorRegistry | None = None) -> CompiledFlow:
        """The cached compilation of a LoadedFlow's revision, compiling it on first use."""
        revision = getattr(source, "revision", None) or _revision_of(
            source if isinstance(source, schema.Flow) else source.flow
        )
        return self.get(revision) or self.put(compile_flow(source, revision, connectors=connectors))
