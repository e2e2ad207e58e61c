"""The engine: every state kind, answers, retries, intents, timers, hangups, connectors."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
import transitions
from flowkit import FIXED_NOW, FLOWS_DIR, load_test_flow

from orchestrator.engine import compiler
from orchestrator.engine.compiler import compile_flow
from orchestrator.engine.turn import Engine
from orchestrator.model import Event, Session, TurnResult
from orchestrator.plugins.connectors import Action, CallContext, ConnectorRegistry, ConnectorResult

CONTACT = "+15555550123"


class FindArgs(msgspec.Struct, kw_only=True):
    around: Any = None  # an ISO time, or a datetime answer such as "asap" (a mapping)
    duration: str | None = None
    count: int = 3


class BookArgs(msgspec.Struct, kw_only=True):
    slot: Any
    title: str = ""
    name: str | None = None
    reason: str | None = None


class FakeCalendar:
    """A scripted calendar: outcomes are queued per action; records every call."""

    name = "calendar"

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.script: dict[str, list[str]] = {"find_slots": [], "book": []}
        self.actions = {"find_slots": Action(FindArgs, self.find_slots), "book": Action(BookArgs, self.book)}

    def _next(self, action: str) -> str:
        return self.script[action].pop(0) if self.script[action] else "ok"

    async def find_slots(self, args: FindArgs, ctx: CallContext) -> ConnectorResult:
        self.calls.append(("find_slots", args))
        outcome = self._next("find_slots")
        if outcome == "ok":
            slots = [{"start": f"2026-11-26T{h}:00:00-05:00", "end": f"2026-11-26T{h}:30:00-05:00",
                      "label": f"Thu 26 Nov, {h}:00 AM"} for h in (10, 11)]
            return ConnectorResult(outcome="ok", value=slots)
        if outcome == "raise":
            raise RuntimeError("calendar exploded")
        return ConnectorResult(outcome=outcome, value=[] if outcome == "empty" else None)  # type: ignore[arg-type]

    async def book(self, args: BookArgs, ctx: CallContext) -> ConnectorResult:
        self.calls.append(("book", args))
        outcome = self._next("book")
        if outcome == "ok":
            return ConnectorResult(outcome="ok", value={**args.slot, "id": "bk1", "calendar": "fake"})
        return ConnectorResult(outcome=outcome)  # type: ignore[arg-type]


@pytest.fixture
def calendar() -> FakeCalendar:
    return FakeCalendar()


def make_engine(source: Any, calendar: FakeCalendar | None = None) -> Engine:
    registry = ConnectorRegistry()
    if calendar is not None:
        registry.register(calendar)
    loaded = load_test_flow(source) if not isinstance(source, str) else load_test_flow(source, "t.yaml")
    return Engine(compile_flow(loaded), registry)


@pytest.fixture
def dental(calendar: FakeCalendar) -> Engine:
    return make_engine(FLOWS_DIR / "dental_booking.yaml", calendar)


class Talk:
    """Drives one conversation through an engine, keeping the session and the clock."""

    def __init__(self, engine: Engine, channel: str = "sms") -> None:
        self.engine, self.channel, self.now = engine, channel, FIXED_NOW
        self.session: Session = engine.new_session(f"biz:{CONTACT}", business="biz", contact=CONTACT,
                                                   channel=channel, now=self.now)
        self.results: list[TurnResult] = []

    async def send(self, kind: str = "text", text: str | None = None, **kw: Any) -> TurnResult:
        self.now += 5
        kw.setdefault("channel", self.channel)
        result = await self.engine.turn(self.session, Event(kind=kind, text=text, **kw), self.now)  # type: ignore[arg-type]
        self.session = result.session
        self.results.append(result)
        return result

    async def say(self, *lines: str) -> TurnResult:
        result = None
        for line in lines:
            result = await self.send("text", line)
        assert result is not None
        return result

    @property
    def state(self) -> str:
        return self.session.state


def kinds(result: TurnResult) -> list[str]:
    return [m.kind for m in result.messages]


async def test_sms_booking_end_to_end(dental: Engine, calendar: FakeCalendar) -> None:
    talk = Talk(dental)
    first = await talk.send("start")
    assert kinds(first) == ["say", "ask"]
    assert first.messages[0].text == "Hi! Thanks for contacting Bright Smile Dental."
    menu = first.messages[1]
    assert [c.id for c in menu.choices] == ["book", "hours", "talk", "change"] and menu.input == "choice"
    assert first.timer is not None and first.timer.due == talk.now + 600 and first.timer.turns == 1
    await talk.say("1", "Alex Morgan")
    assert talk.state == "ask_reason"
    offer = await talk.say("cleaning", "tomorrow at 10am")
    assert talk.state == "offer"
    assert [c.label for c in offer.messages[-1].choices] == ["Thu 26 Nov, 10:00 AM", "Thu 26 Nov, 11:00 AM",
                                                             "None of these"]
    assert [c.dtmf for c in offer.messages[-1].choices] == ["1", "2", "3"]
    done = await talk.say("2")
    assert done.ended and talk.session.outcome == "booked" and talk.session.status == "ended"
    assert kinds(done) == ["say", "end"]
    assert "Thu 26 Nov, 11:00 AM" in done.messages[0].text and "Alex Morgan" in done.messages[0].text
    assert done.timer is None
    book_args = calendar.calls[-1][1]
    assert book_args.slot["label"] == "Thu 26 Nov, 11:00 AM"
    assert book_args.title == "Cleaning - Alex Morgan" and book_args.reason == "cleaning"
    summary = done.summary
    assert summary is not None
    assert summary["name"] == "Alex Morgan" and summary["reason"] == "cleaning"
    assert summary["wanted"].startswith("2026-11-26T10:00") and summary["booking"]["id"] == "bk1"
    assert summary["outcome"] == "booked" and summary["turns"] == 6 and summary["contact"] == CONTACT
    assert summary["duration"] == 30.0  # from new_session to the last turn
    path = talk.session.path
    assert path[:3] == ["greet", "menu", "ask_name"] and path[-2:] == ["book", "confirm"]
    entries = [e for r in talk.results for e in r.transcript]
    dirs = {e.dir for e in entries}
    assert {"in", "out", "state", "var", "call", "note"} <= dirs
    calls = [e for e in entries if e.dir == "call"]
    assert [c.text for c in calls] == ["calendar.find_slots", "calendar.book"]
    assert all(c.data["outcome"] == "ok" and c.data["ms"] >= 0 for c in calls)
    saved = {e.text: e.data for e in entries if e.dir == "var"}
    assert saved["patient_name"] == "Alex Morgan" and saved["slot"]["label"] == "Thu 26 Nov, 11:00 AM"
    assert entries[-1].data == {"outcome": "booked"}


async def test_input_session_is_not_mutated(dental: Engine) -> None:
    talk = Talk(dental)
    before = msgspec.structs.replace(talk.session)
    await talk.send("start")
    assert talk.session is not before and before.path == [] and before.turns == 0


async def test_voice_override_dtmf_and_consent_notice(calendar: FakeCalendar) -> None:
    source = (FLOWS_DIR / "dental_booking.yaml").read_text().replace("recording: false", "recording: true")
    engine = make_engine(source, calendar)
    talk = Talk(engine, "voice")
    first = await talk.send("start")
    assert [m.text for m in first.messages[:2]] == [
        "This call may be recorded for quality and training purposes.", "Thanks for calling Bright Smile Dental."]
    assert first.timer is None  # no no-reply timer on a call
    await talk.send("digits", "1")
    assert talk.state == "ask_name"
    sms = Talk(engine, "sms")
    assert "recorded" not in (await sms.send("start")).messages[0].text


async def test_retries_then_fail_route_and_staff_notify(dental: Engine) -> None:
    talk = Talk(dental)
    await talk.send("start")
    for attempt in (1, 2):
        again = await talk.say("banana")
        assert talk.state == "menu" and talk.session.retries == attempt
        assert kinds(again) == ["ask"] and again.messages[0].reprompt
    done = await talk.say("banana")
    assert done.ended and talk.session.outcome == "handed_off"
    handoff, notify = done.messages[0], done.messages[1]
    assert handoff.kind == "handoff" and handoff.target == "+15555550199"
    assert notify.kind == "notify" and notify.target == "+15555550199" and "(555) 555-0123" in notify.text


async def test_own_reprompt_and_empty_and_low_confidence(dental: Engine) -> None:
    talk = Talk(dental, "voice")
    await talk.send("start")
    await talk.send("digits", "1")
    quiet = await talk.send("empty")
    assert quiet.messages[0].reprompt
    assert quiet.messages[0].text == "Sorry, I didn't catch that. What name should I put the booking under?"
    unsure = await talk.send("speech", "alex morgan", confidence=0.1)
    assert talk.state == "ask_name" and talk.session.retries == 2 and unsure.messages[0].reprompt
    await talk.send("speech", "alex morgan", confidence=0.9)
    assert talk.state == "ask_reason" and talk.session.retries == 0


async def test_global_intent_interrupts_an_ask(dental: Engine) -> None:
    talk = Talk(dental, "voice")
    await talk.send("start")
    await talk.send("digits", "1")
    result = await talk.send("speech", "can I talk to a receptionist", confidence=0.9)
    assert talk.state == "handoff" and not result.ended  # voice waits for the dial result
    assert kinds(result) == ["handoff"]
    assert result.messages[0].text == "Please hold while I connect you to our front desk."
    dtmf = Talk(dental, "voice")
    await dtmf.send("start")
    await dtmf.send("digits", "0")
    assert dtmf.state == "handoff"


async def test_dial_no_answer_takes_a_voicemail(dental: Engine) -> None:
    talk = Talk(dental, "voice")
    await talk.send("start")
    await talk.send("digits", "3")
    record = await talk.send("dial", "no-answer")
    assert talk.state == "take_message" and kinds(record) == ["record"]
    assert record.messages[0].max_seconds == 120
    done = await talk.send("recording", "please call me", recording_url="https://rec/1", duration_seconds=12.0)
    assert done.ended and talk.session.outcome == "message_taken"
    assert talk.session.vars["voicemail"] == {"url": "https://rec/1", "duration": 12.0,
                                              "transcription": "please call me"}
    answered = Talk(dental, "voice")
    await answered.send("start")
    await answered.send("digits", "3")
    assert (await answered.send("dial", "completed")).ended and answered.session.outcome == "handed_off"


async def test_timeout_reminds_then_abandons(dental: Engine) -> None:
    talk = Talk(dental)
    await talk.send("start")
    first = await talk.send("timeout")
    assert kinds(first) == ["say", "ask"] and first.messages[0].text.startswith("Are you still there?")
    assert talk.session.reminders == 1 and first.timer is not None and first.timer.turns == talk.session.turns
    second = await talk.send("timeout")
    assert second.ended and talk.session.outcome == "abandoned" and second.timer is None


async def test_timeout_route_when_the_ask_defines_one() -> None:
    engine = make_engine("""
flow: t
start: q
states:
  q: {ask: Name?, input: name, save: n, next: bye, on: {timeout: late}}
  late: {say: Too late, end: late}
  bye: {end: ok}
settings: {no_reply_timeout: 1m}
""")
    talk = Talk(engine)
    await talk.send("start")
    await talk.send("timeout")
    result = await talk.send("timeout")
    assert result.ended and talk.session.outcome == "late" and result.messages[0].text == "Too late"


async def test_hangup_text_back_continues_by_sms(dental: Engine) -> None:
    talk = Talk(dental, "voice")
    await talk.send("start")
    await talk.send("digits", "1")
    result = await talk.send("hangup")
    assert not result.ended and talk.session.status == "active" and talk.session.channel == "sms"
    assert kinds(result) == ["say", "ask"] and result.messages[1].state == "ask_name"
    assert result.timer is not None  # now a messaging conversation
    await talk.send("text", "Alex Morgan", channel="sms")
    assert talk.state == "ask_reason"


async def test_hangup_ends_when_not_texting_back() -> None:
    engine = make_engine("""
flow: t
start: q
states:
  q: {ask: Name?, input: name, save: n, next: bye}
  bye: {end: ok}
""")
    talk = Talk(engine, "voice")
    await talk.send("start")
    result = await talk.send("hangup")
    assert result.ended and talk.session.outcome == "hung_up" and result.summary is not None


async def test_loop_guard_ends_with_error_instead_of_hanging() -> None:
    engine = make_engine("""
flow: loop
start: a
states:
  a: {say: A, next: b}
  b:
    branch:
      - {when: "true", goto: a}
settings: {max_auto_steps: 10}
""")
    talk = Talk(engine)
    result = await talk.send("start")
    assert result.ended and talk.session.outcome == "error"
    assert kinds(result)[-2:] == ["say", "end"] and "went wrong" in result.messages[-2].text
    assert talk.session.path == ["a", "b"]  # each state once: a session's size never grows with its turns


async def test_connector_outcomes_route(dental: Engine, calendar: FakeCalendar) -> None:
    calendar.script["find_slots"] = ["empty", "raise"]
    talk = Talk(dental)
    await talk.send("start")
    await talk.say("book", "Alex Morgan", "checkup")
    nothing = await talk.say("tomorrow at 10am")
    assert talk.state == "ask_time" and nothing.messages[0].text == "Sorry, we have nothing free around then."
    broken = await talk.say("tomorrow at 10am")
    assert broken.ended and talk.session.outcome == "handed_off"
    assert "can't reach our calendar" in broken.messages[0].text
    call = next(e for e in broken.transcript if e.dir == "call")
    assert call.data["outcome"] == "error" and "exploded" in call.data["detail"]


async def test_conflict_finds_slots_again(dental: Engine, calendar: FakeCalendar) -> None:
    calendar.script["book"] = ["conflict"]
    talk = Talk(dental)
    await talk.send("start")
    result = await talk.say("book", "Alex Morgan", "cleaning", "tomorrow at 10am", "1")
    assert talk.state == "offer"
    assert result.messages[0].text == "Sorry, that slot was just taken. Let me look again."
    assert [c[0] for c in calendar.calls] == ["find_slots", "book", "find_slots"]
    assert (await talk.say("1")).ended and talk.session.outcome == "booked"


async def test_missing_error_route_ends_politely(calendar: FakeCalendar) -> None:
    calendar.script["find_slots"] = ["conflict"]
    engine = make_engine("""
flow: t
start: c
states:
  c: {call: calendar.find_slots, next: bye}
  bye: {end: ok}
""", calendar)
    talk = Talk(engine)
    result = await talk.send("start")
    assert result.ended and talk.session.outcome == "error" and "went wrong" in result.messages[0].text


async def test_branch_and_builtins() -> None:
    engine = make_engine("""
flow: t
title: Shop
start: route
vars: {vip: false}
states:
  route:
    branch:
      - {when: "vip", goto: vip}
      - {when: "channel == 'whatsapp'", goto: wa}
      - {goto: plain}
  vip: {say: VIP, end: vip}
  wa: {say: "{{ flow_title }} on {{ channel }} for {{ contact.phone }}", end: wa}
  plain: {say: "Plain {{ now[:10] }}", end: plain}
""")
    wa = Talk(engine, "whatsapp")
    result = await wa.send("start")
    assert result.messages[0].text == f"Shop on whatsapp for {CONTACT}" and wa.session.outcome == "wa"
    plain = Talk(engine, "sms")
    assert (await plain.send("start")).messages[0].text == "Plain 2026-11-25"


async def test_whatsapp_button_reply_picks_the_choice(dental: Engine) -> None:
    talk = Talk(dental, "whatsapp")
    await talk.send("start")
    await talk.send("choice", "Opening hours", choice_id="hours")
    assert talk.state == "anything_else"
    assert talk.results[-1].messages[0].text.startswith("We're open Monday to Friday")


async def test_after_the_end_a_message_starts_afresh_and_late_events_are_ignored(dental: Engine) -> None:
    talk = Talk(dental)
    await talk.send("start")
    await talk.say("2", "No, thanks")
    assert talk.session.outcome == "info_given"
    ignored = await talk.send("timeout")
    assert ignored.messages == [] and ignored.summary is None and talk.session.status == "ended"
    again = await talk.say("hello")
    assert talk.session.status == "active" and talk.state == "menu" and talk.session.turns == 1
    assert kinds(again) == ["say", "ask"] and talk.session.path == ["greet", "menu"]


async def test_hours_then_cancel_intent(dental: Engine) -> None:
    talk = Talk(dental)
    await talk.send("start")
    await talk.say("book", "Alex Morgan")
    result = await talk.say("never mind")
    assert result.ended and talk.session.outcome == "cancelled"


async def test_missed_call_textback_takes_a_message() -> None:
    engine = make_engine(FLOWS_DIR / "missed_call_textback.yaml")
    talk = Talk(engine)
    first = await talk.send("start")
    assert first.messages[0].text.startswith("Sorry we missed your call at Bright Smile Dental!")
    result = await talk.say("Dana Scully", "My crown came loose", "tomorrow at 10am")
    assert result.ended and talk.session.outcome == "message_taken"
    notify = next(m for m in result.messages if m.kind == "notify")
    assert "Dana Scully" in notify.text and "Reason: My crown came loose." in notify.text
    assert "(555) 555-0123" in notify.text and "Callback time: Thu 26 Nov, 10:00 AM." in notify.text
    assert result.summary is not None and result.summary["reason"] == "My crown came loose"


async def test_hundred_turns_build_no_machine_and_add_no_model(
    monkeypatch: pytest.MonkeyPatch, calendar: FakeCalendar
) -> None:
    counts = {"machines": 0, "add_model": 0}
    init, add_model = transitions.Machine.__init__, transitions.Machine.add_model

    def counting_init(self, *a, **kw):  # type: ignore[no-untyped-def]
        counts["machines"] += 1
        init(self, *a, **kw)

    def counting_add_model(self, *a, **kw):  # type: ignore[no-untyped-def]
        counts["add_model"] += 1
        return add_model(self, *a, **kw)

    monkeypatch.setattr(transitions.Machine, "__init__", counting_init)
    monkeypatch.setattr(transitions.Machine, "add_model", counting_add_model)
    engine = make_engine(FLOWS_DIR / "dental_booking.yaml", calendar)
    assert counts == {"machines": 1, "add_model": 0}
    turns = 0
    while turns < 100:
        talk = Talk(engine)
        for step in (("start", None), ("text", "1"), ("text", "Alex"), ("text", "cleaning"),
                     ("text", "tomorrow at 10am"), ("text", "1")):
            await talk.send(*step)
            turns += 1
        assert talk.session.outcome == "booked"
    assert counts == {"machines": 1, "add_model": 0}
    assert compiler.Machine is transitions.Machine


async def test_ask_without_fail_route_takes_the_builtin_fallback() -> None:
    engine = make_engine("""
flow: t
start: q
states:
  q: {ask: "Pick", choices: {a: {label: A}}, next: bye, max_retries: 0}
  bye: {end: ok}
""")
    talk = Talk(engine)
    await talk.send("start")
    result = await talk.say("zzz")
    assert result.ended and talk.session.outcome == "not_understood"
    assert "trouble understanding" in result.messages[0].text and "get back to you" in result.messages[0].text
    assert result.summary is not None and result.summary["outcome"] == "not_understood"


async def test_defaults_route_fail_timeout_and_error_for_states_without_their_own() -> None:
    engine = make_engine("""
flow: t
start: q
defaults: {fail: sorry, timeout: gone, error: sorry}
settings: {no_reply_timeout: 10m}
states:
  q: {ask: "Pick", choices: {a: {label: A}}, on: {a: c}, max_retries: 0}
  c: {call: calendar.find_slots, args: {around: "2026-01-01T10:00:00"}, next: bye}
  sorry: {say: "Let me get someone.", end: handed_off}
  gone: {end: abandoned_here}
  bye: {end: ok}
""")
    talk = Talk(engine)
    await talk.send("start")
    await talk.say("zzz")
    assert talk.session.outcome == "handed_off"
    talk = Talk(engine)
    await talk.send("start")
    await talk.send("timeout")
    await talk.send("timeout")
    assert talk.session.outcome == "abandoned_here"
    talk = Talk(engine)
    await talk.send("start")
    result = await talk.say("a")  # no calendar registered: the call fails -> defaults.error
    assert talk.session.outcome == "handed_off" and "Let me get someone." in [m.text for m in result.messages]


async def test_record_on_messaging_takes_the_typed_message() -> None:
    engine = make_engine("""
flow: t
start: rec
states:
  rec: {record: "Leave a message", save: msg, next: bye}
  bye: {say: "Got it", end: ok}
settings: {no_reply_timeout: 5m}
""")
    talk = Talk(engine)
    first = await talk.send("start")
    assert kinds(first) == ["record"] and first.timer is not None
    result = await talk.say("please call back")
    assert result.ended and talk.session.vars["msg"] == {"url": None, "duration": None,
                                                         "transcription": "please call back"}


async def test_start_mid_conversation_restarts_with_fresh_vars(dental: Engine) -> None:
    talk = Talk(dental)
    await talk.send("start")
    await talk.say("1", "Alex Morgan")
    assert talk.session.vars["patient_name"] == "Alex Morgan"
    result = await talk.send("start")
    assert talk.state == "menu" and "patient_name" not in talk.session.vars and talk.session.turns == 1
    assert kinds(result) == ["say", "ask"]


async def test_a_template_failing_at_runtime_ends_politely() -> None:
    engine = make_engine("""
flow: t
start: s
states:
  s: {say: "{{ 1 // 0 }}", end: ok}
""")
    talk = Talk(engine)
    result = await talk.send("start")
    assert result.ended and talk.session.outcome == "error" and "went wrong" in result.messages[0].text
    assert any("template failed" in e.text for e in result.transcript if e.dir == "note")


async def test_an_opening_message_that_names_a_first_choice_answers_it() -> None:
    flow = load_test_flow(FLOWS_DIR / "dental_booking.yaml")
    engine = Engine(compile_flow(flow), ConnectorRegistry())  # type: ignore[arg-type]

    async def opened_with(text: str) -> TurnResult:
        session = engine.new_session("b:c", business="b", contact=CONTACT, channel="sms", now=FIXED_NOW)
        return await engine.turn(session, Event(kind="start", channel="sms", text=text), FIXED_NOW)

    booked = await opened_with("I'd like to book a visit")
    assert booked.session.state == "ask_name"
    assert [m.kind for m in booked.messages] == ["say", "ask"] and booked.messages[-1].state == "ask_name"
    assert [e.data["state"] for e in booked.transcript if e.dir == "out"] == ["greet", "ask_name"]
    for opener in ("hi", "1", "hello there"):  # not a choice (a bare number means nothing yet)
        plain = await opened_with(opener)
        assert (plain.session.state, plain.messages[-1].state) == ("menu", "menu"), opener


async def test_inbound_media_and_location_are_recorded_in_the_transcript() -> None:
    from orchestrator.model import Location, Media

    flow = load_test_flow(FLOWS_DIR / "dental_booking.yaml")
    engine = Engine(compile_flow(flow), ConnectorRegistry())  # type: ignore[arg-type]
    session = engine.new_session("b:c", business="b", contact=CONTACT, channel="sms", now=FIXED_NOW)
    session = (await engine.turn(session, Event(kind="start", channel="sms"), FIXED_NOW)).session
    photo = Event(kind="media", channel="whatsapp", media=[
        Media(url="https://x/m1", id="m1", content_type="image/jpeg", caption="my tooth")])
    result = await engine.turn(session, photo, FIXED_NOW)
    [entry] = [e for e in result.transcript if e.dir == "in"]
    assert entry.data["media"] == [{"url": "https://x/m1", "id": "m1", "type": "image/jpeg", "caption": "my tooth"}]
    where = Event(kind="location", channel="whatsapp", location=Location(latitude=40.7, longitude=-74.0, name="Home"))
    [entry] = [e for e in (await engine.turn(result.session, where, FIXED_NOW)).transcript if e.dir == "in"]
    assert entry.data["location"] == {"latitude": 40.7, "longitude": -74.0, "name": "Home"}


async def test_builtin_reprompts_use_the_channel_idiom(dental: Engine) -> None:
    sms = Talk(dental, "sms")
    await sms.send("start")
    typed = await sms.send("text", "banana split")
    assert typed.messages[0].reprompt
    assert "reply with its number" in typed.messages[0].text and "press" not in typed.messages[0].text
    quiet = await sms.send("empty")
    assert "didn't hear" not in (quiet.messages[0].text or "")
    voice = Talk(dental, "voice")
    await voice.send("start")
    spoken = await voice.send("speech", "banana split", confidence=0.9)
    assert spoken.messages[0].reprompt
    assert "press its number" in spoken.messages[0].text and "reply" not in spoken.messages[0].text


YES_NO_FLOW = """
flow: confirm
start: ok
states:
  ok:
    ask: "Shall I book it?"
    input: yes_no
    save: agree
    next: done
    on: {fail: done}
  done: {end: completed, say: "Bye."}
"""


async def test_yes_no_reprompt_on_sms_never_says_press() -> None:
    talk = Talk(make_engine(YES_NO_FLOW), "whatsapp")
    await talk.send("start")
    result = await talk.send("text", "hmm banana")
    assert "press" not in result.messages[0].text and "yes or no" in result.messages[0].text
    voice = Talk(make_engine(YES_NO_FLOW), "voice")
    await voice.send("start")
    result = await voice.send("speech", "hmm banana", confidence=0.9)
    assert "press 1 for yes" in result.messages[0].text


CHOICE_VS_INTENT = """
flow: citas
start: when
settings: {language: es}
intents:
  cancel: {match: [da igual, cancelar], goto: bye}
  urgent: {match: [urgente, emergency], goto: bye}
states:
  when:
    ask: "¿Mañana o el viernes?"
    choices:
      manana: {label: Mañana}
      viernes: {label: Viernes}
      any: {label: Me da igual}
    save: day
    next: done
  done: {end: completed, say: "Vale: {{ day }}."}
  bye: {end: cancelled, say: "Adiós."}
"""


async def test_an_answer_matching_the_asks_own_choice_beats_a_global_intent() -> None:
    talk = Talk(make_engine(CHOICE_VS_INTENT))
    await talk.send("start")
    result = await talk.send("text", "Me da igual")
    assert result.session.outcome == "completed" and result.session.vars["day"] == "any"
    other = Talk(make_engine(CHOICE_VS_INTENT))
    await other.send("start")
    cancelled = await other.send("text", "mejor cancelar")  # no choice says this: the intent
    assert cancelled.session.outcome == "cancelled"


async def test_a_negated_intent_phrase_is_answered_not_jumped_on(dental: Engine) -> None:
    talk = Talk(dental, "sms")
    await talk.send("start")
    await talk.send("text", "book")
    result = await talk.send("text", "No, I don't want an agent")
    assert talk.state == "ask_name" and "handoff" not in kinds(result)
    assert result.messages[0].reprompt  # an answer to the name question (not a name): asked again


class ClosedCalendar(FakeCalendar):
    async def find_slots(self, args: FindArgs, ctx: CallContext) -> ConnectorResult:
        found = await super().find_slots(args, ctx)
        return msgspec.structs.replace(found, closed="2026-11-29")


CLOSED_FLOW = """
flow: closed
start: find
states:
  find:
    call: calendar.find_slots
    args: {around: "2026-11-29T10:00:00-05:00"}
    save: slots
    on: {ok: offer, empty: done, error: done%s}
  offer:
    ask: "Which time? {{ slots | join(', ') }}"
    choices_from: slots
    save: slot
    next: done
  own:
    say: "Sundays we rest."
    next: offer
  done: {end: completed}
"""


async def test_a_closed_day_notice_comes_before_the_offer_unless_the_flow_routes_closed() -> None:
    talk = Talk(make_engine(CLOSED_FLOW % "", ClosedCalendar()))
    first = await talk.send("start")
    assert [m.text for m in first.messages][:1] == ["We're closed on Sunday, November 29."]
    assert first.messages[-1].kind == "ask" and talk.state == "offer"
    own = Talk(make_engine(CLOSED_FLOW % ", closed: own", ClosedCalendar()))
    first = await own.send("start")
    assert first.messages[0].text == "Sundays we rest."
    assert own.session.vars["slots"]  # the nearest times are saved for the flow's own words


def test_validate_accepts_a_closed_route_on_a_call() -> None:
    from orchestrator.flow import validate

    loaded = load_test_flow(CLOSED_FLOW % ", closed: own", "closed.yaml")
    registry = ConnectorRegistry()
    registry.register(ClosedCalendar())
    validate.check(loaded, registry)  # type: ignore[arg-type]


@pytest.mark.parametrize(("answer", "words"), [("asap", "as soon as possible"), ("anytime", "any time")])
async def test_an_asap_or_anytime_callback_is_never_promised_as_a_clock_time(answer: str, words: str) -> None:
    talk = Talk(make_engine(FLOWS_DIR / "missed_call_textback.yaml"))
    await talk.send("start")
    result = await talk.say("Dana Scully", "My crown came loose", answer)
    assert talk.session.vars["callback_time"]["label"] == words
    texts = " ".join(m.text or "" for m in result.messages)
    assert "1:00" not in texts and "13:00" not in texts and "{" not in texts  # no invented time, no raw value
    notify = next(m for m in result.messages if m.kind == "notify")
    assert f"time: {words}." in notify.text and ":00" not in notify.text.split("time:")[-1]


async def test_asap_at_a_booking_ask_offers_the_earliest_times(calendar: FakeCalendar, dental: Engine) -> None:
    talk = Talk(dental)
    await talk.send("start")
    await talk.say("book", "Alex Morgan", "cleaning", "as soon as possible")
    assert talk.state == "offer"
    around = calendar.calls[-1][1].around
    assert around["preference"] == "asap" and around["start"].startswith("2026-11-25T13:00")
