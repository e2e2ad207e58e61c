"""The conversation engine: `Engine.turn(session, event, now) -> TurnResult`.

Channel-neutral and deterministic: the same session, event and clock give the same result;
its only I/O is connector calls. Channel adapters turn provider payloads into `Event`s and
render the `Outbound`s; the engine only picks a prompt's per-channel override (`voice:`,
`sms:`, `whatsapp:`) by the conversation's channel, and on messaging channels tells staff
about a handoff (a voice handoff dials them instead).

Semantics worth knowing (see also the README):
- `start` (or any conversational event after the conversation ended) starts afresh from
  the flow's start state, same session id; the opening text itself is not an answer.
  `hangup`, `timeout`, `dial`, `recording`, `empty`, `reaction` and `undelivered` after the
  end are recorded and ignored (a late recording is still saved), except an `undelivered`
  when the state the conversation ended at routes it (below).
- At an ask: a read-back waiting for yes/no (`confirm:`), global intents, a question an
  `answers:` entry replies to (the ask is repeated), a correction ("actually ...") of this
  or an earlier answer, then the typed answer; the same message fills the asks ahead whose
  values it holds (`reading`, SPEC §8), and those are skipped when reached.
- Retries: `max_retries` failed answers
  are re-asked; the next failure takes `on.fail`, else the flow's `defaults.fail`, else the
  built-in fallback: an apology, staff notified with what was collected (the summary), and
  the outcome `not_understood` (a lead is never silently dropped).
- `timeout`: the first reminds and re-asks, the second takes `on.timeout` or ends as
  `abandoned`. `hangup` ends as `hung_up`, unless `on_hangup: text_back` and the caller was
  being asked something: then the conversation moves to SMS and the question is re-sent.
- `undelivered` (a message to the contact could not be delivered; text = the provider's error
  code) applies to the state the session is at: its `on: {undelivered: ...}` route, else the
  end with outcome `undelivered` (staff are told). A say does not wait, so a session is at a
  say only when the conversation ended there (`end:`); its route then reopens the
  conversation (the goodbye or text-back never arrived). Ended elsewhere: ignored.
- Anything that cannot go on (loop of automatic states, missing route, a template that
  fails) ends the conversation politely with outcome `error` and a log line: never a hang.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import msgspec

from orchestrator.engine import reading as readers
from orchestrator.engine import reminders, sending, voice_phrases
from orchestrator.engine.compiler import INTENT_PREFIX, CompiledFlow, CompiledState, Prompt
from orchestrator.engine.inputs import PREFERENCE_KEYS, Idiom, choice_matcher, hint_in, parse_input
from orchestrator.engine.summary import CALL_RECORDING
from orchestrator.engine.summary import build as build_summary
from orchestrator.errors import FlowRuntimeError
from orchestrator.flow.templates import Formats
from orchestrator.logs import redact_phone
from orchestrator.model import (
    Event,
    Outbound,
    OutChoice,
    ReminderDue,
    Session,
    Timer,
    TranscriptEntry,
    TurnResult,
)
from orchestrator.plugins.connectors import CallContext, ConnectorRegistry, ConnectorResult
from orchestrator.understand import Extraction, Understander, ask_of, asks_ahead

log = logging.getLogger("orchestrator.engine.turn")

VOICE_CHANNELS = frozenset({"voice"})
# All the connector calls of one turn share this budget (from the turn's start), so a turn
# with several call states still saves inside the conversation lock (10 s) and answers
# inside Twilio's 15 s; a call past it takes its `error` route.
TURN_CALL_BUDGET_SECONDS = 8.5
TEXT_BACK_CHANNEL = "sms"
# Events that carry something the contact said or did: they update the session's channel
# and, after the end, start a new conversation.
CONVERSATIONAL = frozenset({"start", "text", "speech", "digits", "choice", "media", "location"})
ANSWERS = frozenset({"text", "speech", "digits", "choice", "media", "location"})
DIAL_NOT_CONNECTED = frozenset({"no-answer", "no_answer", "busy", "failed", "canceled", "cancelled"})
LANGUAGE_TARGET = "sys.language"  # `save: sys.language`: the contact's choice of language (SPEC §9)
CONTACT_KEY = "_contact"  # session.vars entry: {"name": ..., "known": ...} given at creation
FILLED_KEY = readers.FILLED_KEY  # session.vars entry: asks ahead already answered, {state: [value, choice]}
CONFIRM_KEY = readers.CONFIRM_KEY  # session.vars entry: a value waiting for its yes/no read-back
SILENT_KEY = "_silent"  # session.vars entry (voice): silences in a row at the current ask
STUCK_KEY = "_stuck"  # session.vars entry (voice): answers in a row that moved the call nowhere
WHISPER_KEY = "_whisper"  # session.vars entry (voice): the warm transfer's line for the person answering
SCREENED_KEY = "_screened"  # session.vars entry (voice): the call's first answer was checked for a machine
CALL_RECORDING_KEY = CALL_RECORDING  # session.vars entry (voice): the whole call's recording {url, duration}
_ENGINE_KEYS = (CONTACT_KEY, FILLED_KEY, CONFIRM_KEY, SILENT_KEY, STUCK_KEY, CALL_RECORDING_KEY, SCREENED_KEY,
                WHISPER_KEY)
_NO_CONTACT: dict[str, Any] = {"name": None, "known": False}


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b


class Engine:
    """Runs conversations of one compiled flow revision."""

    def __init__(
        self, compiled: CompiledFlow, connectors: ConnectorRegistry, understander: Understander | None = None
    ) -> None:
        self.compiled = compiled
        self.connectors = connectors
        self.understander = understander  # None: rules only (ORCHESTRATOR_UNDERSTAND=rules)

    def new_session(
        self,
        session_id: str,
        *,
        business: str,
        contact: str,
        channel: str,
        now: float,
        vars: Mapping[str, Any] | None = None,
        contact_name: str | None = None,
        known: bool = False,
    ) -> Session:
        """A fresh conversation at the start state (nothing run yet: send it a `start` event)."""
        flow = self.compiled.flow
        return Session(
            id=session_id, flow=flow.flow, revision=self.compiled.revision, state=flow.start,
            business=business, contact=contact, channel=channel,
            vars={**flow.vars, **(vars or {}), CONTACT_KEY: {"name": contact_name, "known": known}},
            started_at=now, updated_at=now, language=self.compiled.language_of(contact),
        )

    def stored_vars(self, vars: Mapping[str, Any]) -> dict[str, Any]:
        """The variables worth saving: those that differ from the flow's defaults (the flow's
        constants are not repeated in every stored session). `loaded_vars` restores the rest."""
        defaults = self.compiled.flow.vars
        return {
            k: v for k, v in vars.items()
            if not (k in defaults and _same(defaults[k], v)) and not (k == CONTACT_KEY and v == _NO_CONTACT)
        }

    def loaded_vars(self, stored: Mapping[str, Any]) -> dict[str, Any]:
        """A saved session's variables with the flow's defaults put back (`stored_vars`)."""
        return {**self.compiled.flow.vars, CONTACT_KEY: dict(_NO_CONTACT), **stored}

    async def turn(self, session: Session, event: Event, now: float) -> TurnResult:
        """Apply one event. The session passed in is not modified; the result holds the new one."""
        turn = _Turn(self, session, event, now)
        try:
            await turn.run()
        except FlowRuntimeError as exc:
            log.error("flow %s state %s: %s", self.compiled.id, turn.session.state, exc)
            turn.note(f"error: {exc}")
            turn.finish("error", turn.compiled.words["sorry_error"])
        return turn.result()


def _copy(session: Session) -> Session:
    return msgspec.structs.replace(session, vars=dict(session.vars), path=list(session.path))


class _Turn:
    """One turn's working state: the session copy, the messages and transcript produced."""

    __slots__ = ("_ctx", "_dt", "_ending_summary", "compiled", "deadline", "due_reminders", "engine", "event",
                 "messages", "now", "session", "steps", "summary", "transcript", "understand_language")

    def __init__(self, engine: Engine, session: Session, event: Event, now: float) -> None:
        self.engine = engine
        self.compiled = engine.compiled.variant(session.language)  # the contact's language (SPEC §9)
        self.session = _copy(session)
        self.event = event
        self.now = now
        self.messages: list[Outbound] = []
        self.transcript: list[TranscriptEntry] = []
        self.due_reminders: list[ReminderDue] = []
        self.steps = 0
        self.summary: dict[str, Any] | None = None
        self._ending_summary: dict[str, Any] | None = None  # built by a handoff that ends: finish reuses it
        self._ctx: dict[str, Any] | None = None
        self._dt: datetime | None = None
        # the language the contact's messages are read in (dates, numbers, yes/no, names)
        self.understand_language: str = self.compiled.settings.language
        self.deadline = time.perf_counter() + TURN_CALL_BUDGET_SECONDS

    # ------------------------------------------------------------------ dispatch
    async def run(self) -> None:
        s, ev = self.session, self.event
        s.turns += 1
        s.updated_at = self.now
        if ev.kind in CONVERSATIONAL:
            s.channel = ev.channel
            s.last_inbound_at = self.now
        if ev.profile_name:
            contact = s.vars.get(CONTACT_KEY) or {}
            if not contact.get("name"):
                s.vars[CONTACT_KEY] = {**contact, "name": ev.profile_name}
        self._log_inbound()
        if ev.kind in ("call_recording", "transcription"):  # arrives in the call or after it: kept either way
            self._attach_recording()
            return
        if s.status == "ended":
            if ev.kind in CONVERSATIONAL:
                self._restart()
                await self._begin()
            elif ev.kind == "undelivered" and "undelivered" in getattr(
                    self.compiled.states.get(s.state), "routes", {}):
                s.status, s.outcome = "active", None  # the last message never arrived: its route goes on
                await self._undelivered(self.compiled.states[s.state])
            else:
                self._after_end()
            return
        if ev.kind == "start":
            if s.turns > 1:
                self._restart()
            if ev.machine and s.channel in VOICE_CHANNELS:  # Twilio's machine detection (outbound call)
                await self._machine(self.compiled.states[self.compiled.flow.start])
                return
            await self._begin()
            await self._opening_answer()
            return
        state = self.compiled.states.get(s.state)
        if state is None:
            raise FlowRuntimeError(
                f"session is at state {s.state!r}, which revision {self.compiled.revision} does not have"
            )
        if ev.kind == "hangup":
            self._hangup(state)
        elif ev.kind == "timeout":
            await self._timeout(state)
        elif ev.kind == "dial":
            await self._dial(state)
        elif ev.kind == "undelivered":
            await self._undelivered(state)
        elif ev.kind == "recording" or (state.kind == "record" and ev.kind in ANSWERS):
            await self._recorded(state)
        elif state.kind == "ask" and (ev.kind in ANSWERS or ev.kind == "empty"):
            if s.channel in VOICE_CHANNELS:
                await self._guarded_answer(state)
            else:
                await self._answer(state)
        else:
            self.note(f"ignored {ev.kind} event at state {s.state!r}")

    # ------------------------------------------------------------------ voice runaway guards
    async def _guarded_answer(self, state: CompiledState) -> None:
        """An answer on a call, with the guards around it: a call past `max_call_seconds`, a
        second silence in a row, or `max_stuck_turns` answers in a row leaving the call where it
        was (no state change, nothing saved) take `on.stuck` / `defaults.stuck`, else end politely
        with a text-back (SPEC §13.30)."""
        s, settings = self.session, self.compiled.settings
        if settings.max_call_seconds and self.now - s.started_at >= settings.max_call_seconds:
            await self._runaway(state, "call_too_long")
            return
        if self.event.kind == "speech" and not s.vars.get(SCREENED_KEY):  # the call's first words
            s.vars[SCREENED_KEY] = True
            if voice_phrases.sounds_like_machine(self.event.text or "", settings):
                await self._machine(state)
                return
        if self.event.kind == "empty":
            silent = int(s.vars.get(SILENT_KEY) or 0) + 1
            if silent >= 2:
                await self._runaway(state, "silence")
                return
            s.vars[SILENT_KEY] = silent
        else:
            s.vars.pop(SILENT_KEY, None)
        messages, transcript = len(self.messages), len(self.transcript)
        reading = (s.vars.get(CONFIRM_KEY), s.vars.get(FILLED_KEY))  # a read-back or a fill is progress too
        await self._answer(state)
        moved = s.status != "active" or s.state != state.name or any(
            e.dir == "var" and not e.text.startswith("_") for e in self.transcript[transcript:]
        ) or reading != (s.vars.get(CONFIRM_KEY), s.vars.get(FILLED_KEY))
        if moved:
            s.vars.pop(STUCK_KEY, None)
            if s.state != state.name:
                s.vars.pop(SILENT_KEY, None)
            return
        stuck = int(s.vars.get(STUCK_KEY) or 0) + 1
        if settings.max_stuck_turns and stuck >= settings.max_stuck_turns:
            del self.messages[messages:]  # the question is not asked a fourth time
            del self.transcript[transcript:]
            await self._runaway(state, "stuck")
            return
        s.vars[STUCK_KEY] = stuck

    async def _machine(self, state: CompiledState) -> None:
        """A voicemail greeting or a call-screening assistant answered, not a person: the state's
        `on: {machine: ...}`, else `settings.on_machine` (text_back, hang_up, leave_message)."""
        s, settings = self.session, self.compiled.settings
        self.note("answered by a machine (voicemail or call screening)")
        if "machine" in state.routes:
            await self._enter(self._route(state, "machine"))
            return
        if settings.on_machine == "leave_message" and self.compiled.machine_message is not None:
            self.finish("machine", self._render(self.compiled.machine_message, "machine_message"))
            return
        if settings.on_machine == "text_back" and s.contact:
            self._emit(Outbound(kind="notify", text=self.compiled.words["voice_machine_text_back"],
                                state=state.name, target=s.contact))
        self.finish("machine")

    async def _runaway(self, state: CompiledState, why: str) -> None:
        s = self.session
        s.vars.pop(SILENT_KEY, None)
        s.vars.pop(STUCK_KEY, None)
        self.note(f"call going nowhere ({why})")
        if "stuck" in state.routes:
            await self._enter(self._route(state, "stuck"))
            return
        if s.contact:  # carried on by text: the contact's own number, through the staff path (SMS)
            self._emit(Outbound(kind="notify", text=self.compiled.words["voice_text_back"],
                                state=state.name, target=s.contact))
        self.finish(why, self.compiled.words[f"voice_end_{why}"])

    def _attach_recording(self) -> None:
        """The whole call's recording, or a recording's transcription, arrived (Twilio callbacks,
        usually after the hang-up): kept with the conversation (`_call_recording`, or the saved
        recording's `transcription`), in the summary, and sent to `staff_notify`."""
        ev, s, settings = self.event, self.session, self.compiled.settings
        who = (s.vars.get(CONTACT_KEY) or {}).get("name") or s.contact
        if ev.kind == "call_recording":
            if not ev.recording_url:
                return
            self._save(CALL_RECORDING_KEY, {"url": ev.recording_url, "duration": ev.duration_seconds})
            note = f"Recording of the call with {who}: {ev.recording_url}"
        else:
            found = [(k, v) for k, v in s.vars.items()
                     if isinstance(v, Mapping) and v.get("url") and v.get("url") == ev.recording_url]
            if not found or not ev.text:
                self.note("transcription of an unknown recording ignored")
                return
            for key, value in found:
                self._save(key, {**value, "transcription": ev.text})
            note = f"Transcription of the message from {who}: {ev.text}"
        if settings.staff_notify:
            self._emit(Outbound(kind="notify", text=note, state=s.state, target=settings.staff_notify))
        if s.status == "ended":  # the conversation's record and summary carry it now
            self.summary = self._summary()

    def _restart(self) -> None:
        """A new conversation in the same session: same id, contact and version, fresh data."""
        s, flow = self.session, self.compiled.flow
        s.vars = {**flow.vars, CONTACT_KEY: s.vars.get(CONTACT_KEY) or {"name": None, "known": False}}
        s.state, s.status, s.outcome = flow.start, "active", None
        s.retries = s.reminders = 0
        s.started_at, s.turns, s.path = self.now, 1, []
        self._ctx = None
        self.note("new conversation")

    async def _begin(self) -> None:
        settings = self.compiled.settings
        if self.session.language:  # recorded: the admin API shows it after the session expires
            self.transcript.append(TranscriptEntry(at=self.now, dir="var", text=LANGUAGE_TARGET,
                                                   data=self.session.language))
        if settings.recording and self.session.channel in VOICE_CHANNELS:
            self._emit(Outbound(kind="say", text=self._render(self.compiled.consent_notice, "consent")))
        await self._enter(self.compiled.start)

    async def _opening_answer(self) -> None:
        """The message that opened the conversation ("book") answers the first question when it
        is one of that question's choices; anything else stays just the opener (as before)."""
        ev, s = self.event, self.session
        text = (ev.text or "").strip()
        if (not text and not ev.choice_id) or s.status != "active" or not self.messages:
            return
        state = self.compiled.states.get(s.state)
        last = self.messages[-1]
        if state is None or state.kind != "ask" or last.kind != "ask" or last.state != state.name:
            return
        choices, values = self._choices(state)
        if not choices:
            return
        choice_id: str | None = ev.choice_id if ev.choice_id in {c.id for c in choices} else None
        if choice_id is None and text and not text.isdigit():  # "1" means nothing before the menu is seen
            result = parse_input("choice", text, choices=state.matcher or choices,
                                 settings=self.compiled.settings, now=self._now_dt(),
                                 language=self.understand_language)
            if result.ok and result.choice_id in {c.id for c in choices}:
                choice_id = result.choice_id
        if choice_id is None:
            return
        self.messages.pop()  # the question is answered already: not asked
        for i in range(len(self.transcript) - 1, -1, -1):
            entry = self.transcript[i]
            if entry.dir == "out" and isinstance(entry.data, dict) and entry.data.get("kind") == "ask":
                del self.transcript[i]
                break
        self.note(f"opening message answered {state.name}: {choice_id}")
        value: Any = values.get(choice_id, choice_id)
        self._fill_and_go_on(state, value, choice_id, text)
        await self._enter(self._accepted(state, value, choice_id))

    def _after_end(self) -> None:
        ev, s = self.event, self.session
        if ev.kind == "recording":
            state = self.compiled.states.get(s.state)
            if state is not None and state.kind == "record" and state.save:
                self._save(state.save, self._recording_value())
        self.note(f"ignored {ev.kind} event: the conversation already ended ({s.outcome})")

    # ------------------------------------------------------------------ automatic states
    async def _enter(self, name: str) -> None:
        """Enter `name` and run automatic states until one waits for the contact or ends."""
        limit = self.compiled.settings.max_auto_steps
        while True:
            self.steps += 1
            if self.steps > limit:
                raise FlowRuntimeError(
                    f"more than {limit} automatic states in one turn (last: {name!r}); a loop without "
                    "a question? add an `ask` to the loop or raise settings.max_auto_steps"
                )
            state = self.compiled.states[name]
            s = self.session
            s.state, s.retries, s.reminders = name, 0, 0
            if name not in s.path:  # first visits only: bounded by the flow, not by the turns
                s.path.append(name)
            self.transcript.append(TranscriptEntry(at=self.now, dir="state", text=name))
            kind = state.kind
            next_name: str | None
            if kind == "ask":
                filled = s.vars.get(FILLED_KEY)
                if not filled or name not in filled:
                    self._ask(state)
                    return
                rest = dict(filled)
                value, choice_id = rest.pop(name)
                s.vars[FILLED_KEY] = rest
                if state.confirms:
                    self._read_back(state, value, choice_id)
                    return
                self.note(f"filled ahead: {name}")
                name = self._accepted(state, value, choice_id)
                continue
            if kind == "say":
                self._say(state)
                if state.end:
                    self.finish(state.end)
                    return
                next_name = self._route(state, "next")
            elif kind == "branch":
                next_name = self._branch(state)
            elif kind == "call":
                next_name = await self._call(state)
            elif kind == "handoff":
                next_name = self._handoff(state)
            elif kind == "record":
                if state.notice is not None and s.channel in VOICE_CHANNELS:  # the consent notice first (§13.20)
                    self._emit(Outbound(kind="say", text=self._render(state.notice, name), state=name))
                self._emit(Outbound(kind="record", text=self._text(state), state=name,
                                    max_seconds=state.max_seconds))
                return
            else:  # end
                self._say(state)
                self.finish(state.end or "ended")
                return
            if next_name is None:
                return
            name = next_name

    def _route(self, state: CompiledState, trigger: str) -> str:
        if trigger not in state.routes:
            raise FlowRuntimeError(f"state {state.name!r} has no route {trigger!r}; add `{trigger}:` to it")
        return self.compiled.fire(state.name, trigger)

    def _say(self, state: CompiledState) -> None:
        text = self._text(state)
        media = self._render(state.media, state.name) if state.media is not None else None
        if text or media:
            self._emit(Outbound(kind="say", text=text, state=state.name, media_url=media or None))

    def _branch(self, state: CompiledState) -> str:
        ctx = self.ctx()
        for expr, trigger in state.branch:
            try:
                taken = expr is None or bool(expr.evaluate(ctx))
            except Exception as exc:
                raise FlowRuntimeError(f"state {state.name!r}: branch condition failed: {exc}") from exc
            if taken:
                return self._route(state, trigger)
        raise FlowRuntimeError(f"state {state.name!r}: no branch matched; add a last case without `when`")

    async def _call(self, state: CompiledState) -> str | None:
        s, settings = self.session, self.compiled.settings
        assert state.args is not None
        started = time.perf_counter()
        try:
            args = state.args.render(self.ctx())
        except Exception as exc:
            result = ConnectorResult(outcome="error", detail=f"arguments failed to render: {exc}")
        else:
            if sending.is_send(state.action):  # built in: queued with the turn, sent by the outbox
                message, result = sending.plan(state.name, args, staff=settings.staff_notify, channel=s.channel,
                                               text_back=TEXT_BACK_CHANNEL)
                if message is not None:
                    self._emit(message)
            else:
                ctx = CallContext(
                    session_id=s.id, flow=s.flow, contact=s.contact, timezone=settings.timezone,
                    language=settings.language, now=self.now, settings=settings, vars=s.vars,
                )
                result = await self._book_or_move(state, args, ctx)
        ms = round((time.perf_counter() - started) * 1000, 2)
        self.transcript.append(TranscriptEntry(
            at=self.now, dir="call", text=state.action,
            data={"outcome": result.outcome, "ms": ms, **({"detail": result.detail} if result.detail else {})},
        ))
        if result.outcome in ("ok", "empty") and state.save:
            value = result.value
            if self.compiled.english_formats is not None and value:
                value = self._relabelled(value, self.compiled.english_formats)
            self._save(state.save, value)
        if result.outcome == "ok" and settings.reminders and reminders.is_booking(state.action):
            self.due_reminders += reminders.plan(settings, result.value, now=self.now, channel=s.channel)
        if result.too_far and result.outcome in ("ok", "empty"):
            if "too_far" in state.routes:  # the flow says it in its own words
                return self._route(state, "too_far")
            self._day_notice(state, "too_far_notice", result.too_far)
        elif result.closed and result.outcome in ("ok", "empty"):
            if "closed" in state.routes:
                return self._route(state, "closed")
            if result.closed_for:
                self._day_notice(state, "staff_off_notice", result.closed, name=result.closed_for)
            else:
                self._day_notice(state, "closed_notice", result.closed)
        trigger = result.outcome
        if trigger not in state.routes:
            trigger = "error"
        if trigger not in state.routes:
            log.error("flow %s state %s: %s outcome %s has no route", self.compiled.id, state.name,
                      state.action, result.outcome)
            self.finish("error", self.compiled.words["sorry_error"])
            return None
        return self._route(state, trigger)

    async def _book_or_move(self, state: CompiledState, args: Any, ctx: CallContext) -> ConnectorResult:
        """A `*.book` reached again after a correction moves the booking already made (its
        `reschedule`, else `cancel` then `book`): a customer never ends up booked twice."""
        connectors, action = self.engine.connectors, state.action
        timeout = max(0.0, min(state.timeout_seconds, self.deadline - time.perf_counter()))
        made = self.session.vars.get(state.save) if state.save and action.endswith(".book") else None
        if not isinstance(made, Mapping) or not made.get("id") or not isinstance(args, dict):
            return await connectors.call(action, args, ctx, timeout)
        prefix = action.rsplit(".", 1)[0]
        if connectors.has_action(f"{prefix}.reschedule"):
            self.note(f"moving booking {made['id']} ({prefix}.reschedule)")
            return await connectors.call(f"{prefix}.reschedule", {"booking_id": made["id"], "slot": args.get("slot")},
                                         ctx, timeout)
        if connectors.has_action(f"{prefix}.cancel"):
            cancelled = await connectors.call(f"{prefix}.cancel", {"booking_id": made["id"]}, ctx,
                                              timeout)
            if cancelled.outcome not in ("ok", "empty"):
                return cancelled
            self.note(f"cancelled booking {made['id']} before booking the corrected slot")
        else:
            self.note(f"booking {made['id']} cannot be moved ({prefix} has no reschedule or cancel): booking again")
        return await connectors.call(action, args, ctx, timeout)

    def _relabelled(self, value: Any, english: Formats) -> Any:
        """Slots and bookings a connector labelled the built-in English way ("Thu 3 Dec, 10:00 AM")
        labelled in the contact's language ("jue 3 dic, 10:00"); a connector's own labels are kept."""
        if isinstance(value, list):
            return [self._relabelled(item, english) for item in value]
        if isinstance(value, dict) and isinstance(value.get("start"), str) and isinstance(value.get("label"), str):
            known = self.compiled.relabels
            key = (value["start"], value["label"])
            label = known.get(key)
            if label is None:
                # a slot with one of settings.staff is labelled "<time> · <name>": the time is relabelled
                who = f" · {value['staff_name']}" if isinstance(value.get("staff_name"), str) else ""
                try:
                    label = (self.compiled.templates.formats.datetime(key[0]) + who
                             if key[1] == english.datetime(key[0]) + who else key[1])
                except ValueError:
                    label = key[1]
                if len(known) < 4096:  # the same slots are offered to many contacts
                    known[key] = label
            return {**value, "label": label} if label != key[1] else value
        return value

    def _day_notice(self, state: CompiledState, key: str, day: str, **fields: str) -> None:
        try:
            when = self.compiled.templates.formats.date(day)
        except ValueError:
            when = day
        self._emit(Outbound(kind="say", text=self.compiled.words.say(key, day=when, **fields), state=state.name))

    def _handoff(self, state: CompiledState) -> str | None:
        s = self.session
        assert state.target is not None
        target = self._render(state.target, state.name)
        whisper = s.channel in VOICE_CHANNELS and getattr(state.spec, "whisper", True)
        if whisper:  # a warm transfer: the line the person answering hears
            s.vars[WHISPER_KEY] = self._whisper_line()
        self._emit(Outbound(kind="handoff", text=self._text(state), state=state.name, target=target,
                            max_seconds=state.max_seconds or None, whisper=whisper))
        if s.channel in VOICE_CHANNELS:
            if "no_answer" in state.routes:
                return None  # the call is being transferred: wait for the `dial` event
        else:
            staff = self.compiled.settings.staff_notify or target
            if state.end or "next" not in state.routes:
                self._ending_summary = self._summary(state.end or "handed_off")
                text = str(self._ending_summary["text"])
            else:
                text = self._staff_text()
            self._emit(Outbound(kind="notify", text=text, state=state.name, target=staff))
        return self._after_handoff(state)

    def _whisper_line(self) -> str:
        summary = self._summary()
        settings = self.compiled.settings
        who = summary.get("name") or self.compiled.summary.filters["phone"](self.session.contact) or "a caller"
        about = summary.get("reason") or next(
            (f["text"] for f in summary.get("fields") or () if f["text"] != summary.get("name")), None)
        return voice_phrases.whisper(settings, str(who), str(about) if about else None)

    def _after_handoff(self, state: CompiledState) -> str | None:
        if state.end or "next" not in state.routes:
            self.finish(state.end or "handed_off")
            return None
        return self._route(state, "next")

    # ------------------------------------------------------------------ waiting states
    def _ask(self, state: CompiledState, *, reprompt: str | None = None) -> None:
        choices, _ = self._choices(state)
        text = self._text(state)
        if reprompt is not None:
            text = reprompt
        self._emit(Outbound(
            kind="ask", text=text, state=state.name, choices=choices, input=state.input,
            reprompt=reprompt is not None,
        ))

    def _reask(self, state: CompiledState, hint: str | None) -> None:
        own = state.reprompt.get(self.session.channel)
        if own is not None:
            text = self._render(own, state.name)
        else:
            text = f"{hint or self.compiled.words['not_understood']} {self._text(state)}".strip()
        self._ask(state, reprompt=text)

    def _idiom(self) -> Idiom:
        return "voice" if self.session.channel in VOICE_CHANNELS else "text"

    def _choices(self, state: CompiledState) -> tuple[list[OutChoice], dict[str, Any]]:
        """The ask's choices now: items of `choices_from` (numbered 1..n), then static ones."""
        if not state.choices_from:
            return state.choices, {}
        items = self.session.vars.get(state.choices_from)
        out: list[OutChoice] = []
        values: dict[str, Any] = {}
        for i, item in enumerate(items if isinstance(items, list) else []):
            if isinstance(item, Mapping):
                cid = str(item.get("id") or f"{state.choices_from}_{i + 1}")
                label = str(item.get("label") or item.get("id") or i + 1)
            else:
                cid, label = f"{state.choices_from}_{i + 1}", str(item)
            out.append(OutChoice(id=cid, label=label, dtmf=str(i + 1)))
            values[cid] = item
        used: set[str | None] = {c.dtmf for c in out}
        for choice in state.choices:
            digit: str | None = choice.dtmf or str(len(out) + 1)
            if digit in used:
                digit = None
            out.append(msgspec.structs.replace(choice, dtmf=digit) if digit != choice.dtmf else choice)
            used.add(digit)
        return out, values

    async def _answer(self, state: CompiledState) -> None:
        ev, settings, s = self.event, self.compiled.settings, self.session
        idiom = self._idiom()
        if ev.kind == "empty":
            await self._failed(state, self.compiled.words["not_heard" if idiom == "voice" else "not_received"])
            return
        text = ev.text or ""
        if not text and ev.media:
            text = ev.media[0].caption or ""
        choices, values = self._choices(state)
        ids = {c.id for c in choices}
        picked = ev.choice_id if ev.kind == "choice" and ev.choice_id in ids else None
        pending = s.vars.get(CONFIRM_KEY)
        if pending is not None and pending.get("state") != state.name:
            pending = None
        if picked is None and pending is not None and pending.get("value") is not None and text:
            await self._confirming(state, pending, text)
            return
        intents = self.compiled.intent_matcher
        if picked is None and intents is not None and text and choices:
            # the ask's own choices outrank a global intent ("Me da igual" is that choice,
            # not an intent matching "da igual"); typos are left to the full parse below
            own = (state.matcher or choice_matcher(choices)).match(
                text, idiom=idiom, fuzzy=False, language=self.understand_language)
            if own.ok and own.choice_id in ids:
                picked = own.choice_id
        if picked is None and intents is not None and text:
            intent = intents.match(text, digits=text if ev.kind == "digits" else None,
                                   language=self.understand_language)
            if intent is not None:
                self.note(f"intent {intent}")
                target = self._route(state, INTENT_PREFIX + intent)
                if self._named_language(target, text):  # "español": switched, this question asked again in it
                    self._ask(self.compiled.states[state.name])
                    return
                await self._enter(target)
                return
        if picked is None and text and self.compiled.answer_matcher is not None and readers.is_question(text):
            answer = self.compiled.answer_matcher.match(text, language=self.understand_language)
            if answer is not None:
                self.note(f"answered question: {answer}")
                self._emit(Outbound(kind="say", text=self._render(self.compiled.answers[answer], state.name),
                                    state=state.name))
                self._ask(state)
                return
        if picked is None and ev.kind == "speech" and ev.confidence is not None \
                and ev.confidence < settings.speech_confidence:
            await self._failed(state, self.compiled.words["low_confidence"])
            return
        choice_id: str | None
        hint: str | None = None
        ok = False
        value: Any = None
        choice_id = None
        if picked is not None:
            ok, value, choice_id = True, picked, picked
        elif text and ev.kind != "digits":
            reading = readers.Reading(self, state, text, choices)
            if reading.correction is not None:
                found = reading.current_corrected()
                if found is not None:
                    ok, value, choice_id = True, found.value, found.choice_id
                elif await self._correct_earlier(state, reading):
                    return
        if not ok:
            result = parse_input(
                state.input, text, choices=state.matcher or choices, settings=settings, now=self._now_dt(),
                pattern=state.pattern, confidence=ev.confidence, idiom=idiom,
                first_only=getattr(state.spec, "first_only", False), language=self.understand_language,
            )
            ok, value, choice_id, hint = result.ok, result.value, result.choice_id, result.reprompt
            words = self.compiled.words
            if words.language != "en":  # the hint and a preference's words in the contact's language
                if result.hint is not None:
                    hint = hint_in(words, *result.hint, self.compiled.templates.formats)
                elif ok and isinstance(value, dict) and value.get("preference") in PREFERENCE_KEYS:
                    value = {**value, "label": words[PREFERENCE_KEYS[value["preference"]]]}
            if not ok and text and ev.kind != "digits" and state.fill:
                found = readers.Reading(self, state, text, choices).current_in_message()
                if found is not None:
                    ok, value, choice_id = True, found.value, found.choice_id
        if not ok and text and self.engine.understander is not None:
            extracted = await self._understood(state, text, choices)
            if (extracted is not None and extracted.intent is not None
                    and INTENT_PREFIX + extracted.intent in state.routes):
                await self._enter(self._route(state, INTENT_PREFIX + extracted.intent))
                return
            if extracted is not None and state.name in extracted.values:
                ok, value, choice_id = True, extracted.values[state.name], extracted.choice
        if not ok:
            await self._failed(state, hint)
            return
        if choice_id is not None and choice_id in values:
            value = values[choice_id]
        if state.confirms:
            if ev.kind not in ("digits", "choice"):
                self._fill_and_go_on(state, value, choice_id, text, acknowledge=False)
            self._read_back(state, value, choice_id, spell=bool(pending and pending.get("spell")))
            return
        if ev.kind not in ("digits", "choice"):
            self._fill_and_go_on(state, value, choice_id, text)
        await self._enter(self._accepted(state, value, choice_id))

    def _accepted(self, state: CompiledState, value: Any, choice_id: str | None) -> str:
        """An ask's answer taken: saved, and the route it picks (its choice, yes/no, or next)."""
        if choice_id is None and state.input == "yes_no" and isinstance(value, bool):
            choice_id = "yes" if value else "no"  # `on: {yes: ..., no: ...}`
        if state.save:
            self._save(state.save, value)
        trigger = choice_id if choice_id is not None and choice_id in state.routes else "next"
        return self._route(state, trigger)

    def _fill_and_go_on(self, state: CompiledState, value: Any, choice_id: str | None, text: str,
                        *, acknowledge: bool = True) -> None:
        """Fill the asks ahead that this message answers too, and say what was understood."""
        if not self.compiled.settings.fill_ahead or len(text.split()) < 2:
            return  # one word answers one question (a menu digit, "cleaning", "tomorrow")
        fills = readers.Reading(self, state, text, []).ahead(value, choice_id)
        if not fills:
            return
        filled = dict(self.session.vars.get(FILLED_KEY) or {})
        for ahead, found in fills:
            filled[ahead.name] = [found.value, found.choice_id]
        self.session.vars[FILLED_KEY] = filled
        self.note("understood ahead: " + ", ".join(ahead.name for ahead, _ in fills))
        if acknowledge:
            said = readers.acknowledgement(self, [(state, value, choice_id)] + [
                (ahead, found.value, found.choice_id) for ahead, found in fills])
            if said:
                self._emit(Outbound(kind="say", text=said, state=state.name))

    async def _correct_earlier(self, state: CompiledState, reading: readers.Reading) -> bool:
        """"actually / sorry / I mean" + a value of something collected before: replace it and
        go on from the ask that collected it (asks answered since are kept, calls run again)."""
        earlier = reading.earlier_corrected()
        if earlier is None:
            return False
        asked, found = earlier
        s = self.session
        self.note(f"corrected {asked.name}")
        filled = dict(s.vars.get(FILLED_KEY) or {})
        after = False
        for name in s.path:
            if name == asked.name:
                after = True
                continue
            other = self.compiled.states.get(name)
            if (after and other is not None and other.kind == "ask" and other.save and name != state.name
                    and not other.choices_from and other.save in s.vars and name not in filled):
                saved = s.vars[other.save]
                filled[name] = [saved, saved if isinstance(saved, str) and saved in other.routes else None]
        s.vars[FILLED_KEY] = filled
        s.vars.pop(CONFIRM_KEY, None)
        said = readers.acknowledgement(self, [(asked, found.value, found.choice_id)], correction=True)
        if said:
            self._emit(Outbound(kind="say", text=said, state=state.name))
        await self._enter(self._accepted(asked, found.value, found.choice_id))
        return True

    def _read_back(self, state: CompiledState, value: Any, choice_id: str | None, *, spell: bool = False) -> None:
        """`confirm:`: wait at the ask with the value read back (spelled out after a "no")."""
        shown = readers.shown(self, state, value, choice_id, spell=spell)
        self.session.vars[CONFIRM_KEY] = {"state": state.name, "value": value, "choice": choice_id, "spell": spell}
        self._ctx = None
        if state.confirm is not None:
            text = self._render_with(state.confirm, state.name, value=shown)
        else:
            text = self.compiled.words.say("confirm", value=shown)
        self._emit(Outbound(kind="ask", text=text, state=state.name, input="yes_no"))

    async def _confirming(self, state: CompiledState, pending: Mapping[str, Any], text: str) -> None:
        s = self.session
        verdict, new = readers.Reading(self, state, text, self._choices(state)[0]).confirmation()
        if new is not None:
            self._read_back(state, new.value, new.choice_id, spell=True)
            return
        if verdict is True:
            s.vars.pop(CONFIRM_KEY, None)
            self.note(f"confirmed {state.name}")
            await self._enter(self._accepted(state, pending.get("value"), pending.get("choice")))
            return
        if verdict is False:
            s.vars[CONFIRM_KEY] = {"state": state.name, "value": None, "choice": None, "spell": True}
            self.note(f"not confirmed {state.name}")
            self._ask(state, reprompt=f"{self.compiled.words['sorry_again']} {self._text(state)}".strip())
            return
        s.retries += 1
        if s.retries > state.max_retries:
            s.vars.pop(CONFIRM_KEY, None)
            await self._failed(state, None)
            return
        shown = readers.shown(self, state, pending.get("value"), pending.get("choice"),
                                 spell=bool(pending.get("spell")))
        self._emit(Outbound(kind="ask", text=self.compiled.words.say("confirm_again", value=shown), state=state.name,
                            input="yes_no", reprompt=True))

    async def _understood(self, state: CompiledState, text: str, choices: list[OutChoice]) -> Extraction | None:
        """The language model's reading of an answer the rules did not understand (SPEC §8),
        its values already checked against the asks' types; recorded without the values."""
        understander = self.engine.understander
        assert understander is not None
        ask = ask_of(state.name, self._text(state), state.input, choices)
        ahead = asks_ahead(self.compiled.states, state.routes.get("next"))
        found = await understander.extract(
            ask, ahead, text, settings=self.compiled.settings, now=self._now_dt(),
            intents=[t.removeprefix(INTENT_PREFIX) for t in state.routes if t.startswith(INTENT_PREFIX)],
        )
        self.transcript.append(TranscriptEntry(
            at=self.now, dir="note", text="understand", data=getattr(understander, "last", {}),
        ))
        return found

    async def _failed(self, state: CompiledState, hint: str | None) -> None:
        s = self.session
        s.retries += 1
        self.note(f"not understood at {state.name} (try {s.retries})")
        if s.retries <= state.max_retries:
            self._reask(state, hint)
        elif "fail" in state.routes:
            await self._enter(self._route(state, "fail"))
        else:
            self.finish("not_understood", self.compiled.words["sorry_failed"])

    async def _timeout(self, state: CompiledState) -> None:
        s = self.session
        if not state.waits:
            self.note(f"ignored timeout at state {s.state!r}")
            return
        if s.reminders == 0:
            s.reminders = 1
            self._emit(Outbound(kind="say", text=self._render(self.compiled.reminder, "reminder"),
                                state=state.name))
            if state.kind == "ask":
                self._ask(state, reprompt=self._text(state))
            return
        if "timeout" in state.routes:
            await self._enter(self._route(state, "timeout"))
        else:
            self.finish("abandoned")

    def _hangup(self, state: CompiledState) -> None:
        s = self.session
        if self.compiled.settings.on_hangup == "text_back" and state.kind == "ask" and s.contact:
            s.channel = TEXT_BACK_CHANNEL
            self.note(f"call ended mid-flow: continuing by {TEXT_BACK_CHANNEL}")
            self._emit(Outbound(kind="say", text=self.compiled.words["text_back_note"], state=state.name))
            self._ask(state)
            return
        self.finish("hung_up")

    async def _dial(self, state: CompiledState) -> None:
        status = (self.event.text or "").strip().lower()
        if state.kind != "handoff":
            self.note(f"ignored dial status {status!r} at state {state.name!r}")
            return
        if status in DIAL_NOT_CONNECTED and "no_answer" in state.routes:
            await self._enter(self._route(state, "no_answer"))
            return
        next_name = self._after_handoff(state)
        if next_name is not None:
            await self._enter(next_name)

    async def _undelivered(self, state: CompiledState) -> None:
        """The contact could not be reached by message: there is no one to re-ask, so take the
        state's own route or end (nothing is said: it would not arrive either)."""
        code = (self.event.text or "").strip()
        self.note(f"message undelivered at {state.name!r}" + (f": {code}" if code else ""))
        if "undelivered" in state.routes:
            await self._enter(self._route(state, "undelivered"))
        else:
            self.finish("undelivered")

    async def _recorded(self, state: CompiledState) -> None:
        if state.kind != "record":
            self.note(f"ignored {self.event.kind} event at state {state.name!r}")
            return
        if state.save:
            self._save(state.save, self._recording_value())
        if state.end:
            self.finish(state.end)
        else:
            await self._enter(self._route(state, "next"))

    def _recording_value(self) -> dict[str, Any]:
        ev = self.event
        url = ev.recording_url or (ev.media[0].url if ev.media else None)
        return {"url": url, "duration": ev.duration_seconds, "transcription": ev.text}

    # ------------------------------------------------------------------ output and record
    def finish(self, outcome: str, text: str | None = None) -> None:
        s = self.session
        if text:
            self._emit(Outbound(kind="say", text=text, state=s.state))
        self._emit(Outbound(kind="end", state=s.state, outcome=outcome))
        s.status, s.outcome = "ended", outcome
        self.transcript.append(TranscriptEntry(at=self.now, dir="note", text=f"outcome {outcome}",
                                               data={"outcome": outcome}))
        ready = self._ending_summary
        self.summary = ready if ready is not None and ready["outcome"] == outcome else self._summary()

    def note(self, text: str) -> None:
        self.transcript.append(TranscriptEntry(at=self.now, dir="note", text=text))

    def _named_language(self, target: str, text: str) -> bool:
        """An intent leading to the language question (`save: sys.language`) whose words name one
        of its languages ("español") chooses it at once."""
        asked = self.compiled.states.get(target)
        if asked is None or asked.save != LANGUAGE_TARGET or asked.matcher is None:
            return False
        found = asked.matcher.match(text, fuzzy=False)
        if not found.ok or found.choice_id not in self.engine.compiled.variants:
            return False
        self.note(f"language named: {found.choice_id}")
        self._choose_language(found.choice_id)
        return True

    def _choose_language(self, value: Any) -> None:
        """`save: sys.language`: from here on the conversation (and its follow-ups) is in it."""
        variants = self.engine.compiled.variants
        language = str(value) if value in variants else None
        if language is None:
            self.note(f"language {value!r} is not one the flow speaks: kept {self.compiled.language}")
            return
        self.session.language = language
        self.compiled = self.engine.compiled.variant(language)
        self._ctx = None
        self.transcript.append(TranscriptEntry(at=self.now, dir="var", text=LANGUAGE_TARGET, data=language))

    def _emit(self, message: Outbound) -> None:
        if message.language is None:
            message.language = self.compiled.settings.language
        if message.voice is None and self.compiled.voice is not None:
            message.voice = self.compiled.voice
        self.messages.append(message)
        self.transcript.append(TranscriptEntry(
            at=self.now, dir="out", text=message.text,
            data={"kind": message.kind, "state": message.state, **({"via": message.via} if message.via else {})},
        ))

    def _save(self, name: str, value: Any) -> None:
        if name == LANGUAGE_TARGET:
            self._choose_language(value)
            return
        self.session.vars[name] = value
        self._ctx = None
        self.transcript.append(TranscriptEntry(at=self.now, dir="var", text=name, data=value))

    def _log_inbound(self) -> None:
        ev = self.event
        data: dict[str, Any] = {"kind": ev.kind, "channel": ev.channel}
        if ev.confidence is not None:
            data["confidence"] = ev.confidence
        if ev.choice_id:
            data["choice_id"] = ev.choice_id
        if ev.media:
            data["media"] = [
                {k: v for k, v in (("url", m.url), ("id", m.id), ("type", m.content_type),
                                   ("caption", m.caption)) if v is not None}
                for m in ev.media
            ]
        if ev.location is not None:
            loc = ev.location
            data["location"] = {k: v for k, v in (("latitude", loc.latitude), ("longitude", loc.longitude),
                                                  ("name", loc.name), ("address", loc.address)) if v is not None}
        self.transcript.append(TranscriptEntry(at=self.now, dir="in", text=ev.text or "", data=data))

    def _text(self, state: CompiledState) -> str:
        template = state.text.get(self.session.channel)
        return self._render(template, state.name) if template is not None else ""

    def _render(self, template: Prompt | None, where: str) -> str:
        if template is None:
            return ""
        try:
            return template.render(self.ctx())
        except Exception as exc:
            raise FlowRuntimeError(f"state {where!r}: template failed to render: {exc}") from exc

    def _render_with(self, template: Prompt, where: str, **extra: Any) -> str:
        try:
            return template.render({**self.ctx(), **extra})
        except Exception as exc:
            raise FlowRuntimeError(f"state {where!r}: template failed to render: {exc}") from exc

    def _now_dt(self) -> datetime:
        if self._dt is None:  # once per turn: the clock does not move within it
            self._dt = datetime.fromtimestamp(self.now, self.compiled.timezone)
        return self._dt

    def ctx(self) -> dict[str, Any]:
        """Template context: the built-in names, then the flow's variables over them (a name the
        flow defines wins); the built-ins stay reachable as `sys.<name>` (ARCHITECTURE.md)."""
        if self._ctx is None:
            s = self.session
            contact = s.vars.get(CONTACT_KEY) or {}
            name_var = self.compiled.summary_vars.name
            now = self._now_dt()
            builtins: dict[str, Any] = {
                "contact": {"phone": s.contact, "name": (s.vars.get(name_var) if name_var else None)
                            or contact.get("name"), "known": bool(contact.get("known"))},
                "channel": s.channel, "business": s.business,
                "now": now.isoformat(timespec="seconds"),
                "flow_title": self.compiled.title, "last_input": self.event.text or "",
                # the language this turn speaks (the contact's), as its code: `{% if language == "es" %}`
                "language": (s.language or self.compiled.settings.language).replace("_", "-").split("-")[0].lower(),
            }
            if self.compiled.uses_hours:
                hours = self.compiled.hours
                opening = hours.next_open(now)
                builtins["open_now"] = hours.is_open(now)
                builtins["next_open"] = opening.isoformat(timespec="seconds") if opening else None
            ctx = dict(builtins)
            ctx.update(s.vars)
            for key in _ENGINE_KEYS:
                ctx.pop(key, None)
            ctx["sys"] = builtins
            self._ctx = ctx
        return self._ctx

    def _summary(self, outcome: str | None = None) -> dict[str, Any]:
        contact = self.session.vars.get(CONTACT_KEY) or {}
        return build_summary(self.engine.compiled, self.session, self.now, self.ctx(),
                             profile_name=contact.get("name"), outcome=outcome)

    def _staff_text(self) -> str:
        return str(self._summary()["text"])

    def result(self) -> TurnResult:
        s = self.session
        timer = None
        no_reply = self.compiled.no_reply_seconds
        if (s.status == "active" and no_reply and s.channel not in VOICE_CHANNELS
                and self.compiled.states[s.state].waits):
            timer = Timer(session_id=s.id, due=self.now + no_reply, turns=s.turns)
        if self.summary is not None:
            log.info("conversation %s ended: %s", redact_phone(s.id), s.outcome)
        return TurnResult(
            session=s, messages=self.messages, transcript=self.transcript, timer=timer,
            ended=s.status == "ended", summary=self.summary, reminders=self.due_reminders,
        )
