"""SPEC §8 items 1-4: fill ahead, corrections, read-backs (`confirm:`) and `answers:`, on the
engine itself (the dialogues over every channel are flow tests: flows/tests/
dental_understanding.test.yaml and examples/flow_tests/hvac_understanding.test.yaml)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import msgspec
import pytest
from flowkit import FIXED_NOW, FLOWS_DIR, ROOT, load_test_flow

from orchestrator.cli.flowtest import main as flowtest_main
from orchestrator.engine.compiler import compile_flow
from orchestrator.engine.turn import FILLED_KEY, Engine
from orchestrator.flow.validate import default_connectors, validate
from orchestrator.model import Event, Session, TurnResult
from orchestrator.plugins.connectors import Action, CallContext, ConnectorRegistry, ConnectorResult

CONTACT = "+15555550123"


class _Find(msgspec.Struct, kw_only=True):
    around: Any = None
    duration: str | None = None
    count: int = 3


class _Book(msgspec.Struct, kw_only=True):
    slot: Any
    title: str = ""
    name: str | None = None
    reason: str | None = None


class _Move(msgspec.Struct, kw_only=True):
    booking_id: str
    slot: Any = None


class Calendar:
    """Slots on the hour from the time asked for; records calls. `moves`: which of
    reschedule / cancel it offers."""

    name = "calendar"

    def __init__(self, moves: tuple[str, ...] = ("reschedule", "cancel")) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.actions = {"find_slots": Action(_Find, self.find_slots), "book": Action(_Book, self.book)}
        if "reschedule" in moves:
            self.actions["reschedule"] = Action(_Move, self.reschedule)
        if "cancel" in moves:
            self.actions["cancel"] = Action(_Move, self.cancel)

    async def find_slots(self, args: _Find, ctx: CallContext) -> ConnectorResult:
        self.calls.append(("find_slots", args.around))
        start = datetime.fromisoformat(str(args.around))
        slots = [{"start": (start + timedelta(hours=i)).isoformat(),
                  "label": (start + timedelta(hours=i)).strftime("%a %d %b, %H:%M")} for i in range(2)]
        return ConnectorResult(outcome="ok", value=slots)

    async def book(self, args: _Book, ctx: CallContext) -> ConnectorResult:
        self.calls.append(("book", args.slot["start"]))
        return ConnectorResult(outcome="ok", value={**args.slot, "id": f"bk{len(self.calls)}"})

    async def reschedule(self, args: _Move, ctx: CallContext) -> ConnectorResult:
        self.calls.append(("reschedule", args.booking_id))
        return ConnectorResult(outcome="ok", value={**args.slot, "id": args.booking_id})

    async def cancel(self, args: _Move, ctx: CallContext) -> ConnectorResult:
        self.calls.append(("cancel", args.booking_id))
        return ConnectorResult(outcome="ok", value=None)


def engine_for(source: Any, calendar: Calendar | None = None) -> Engine:
    registry = ConnectorRegistry()
    registry.register(calendar or Calendar())
    loaded = load_test_flow(source) if not isinstance(source, str) else load_test_flow(source, "t.yaml")
    return Engine(compile_flow(loaded), registry)


class Chat:
    def __init__(self, engine: Engine, channel: str = "sms") -> None:
        self.engine, self.channel, self.now = engine, channel, FIXED_NOW
        self.session: Session = engine.new_session(f"biz:{CONTACT}", business="biz", contact=CONTACT,
                                                   channel=channel, now=self.now)

    async def send(self, text: str | None = None, kind: str = "text") -> TurnResult:
        self.now += 5
        result = await self.engine.turn(self.session, Event(kind=kind, channel=self.channel, text=text),  # type: ignore[arg-type]
                                        self.now)
        self.session = result.session
        return result

    async def say(self, *lines: str) -> list[str]:
        out: list[str] = []
        for line in lines:
            out = [m.text or "" for m in (await self.send(line)).messages]
        return out

    def var(self, name: str) -> Any:
        return self.session.vars.get(name)


@pytest.fixture
def calendar() -> Calendar:
    return Calendar()


@pytest.fixture
def dental(calendar: Calendar) -> Engine:
    return engine_for(FLOWS_DIR / "dental_booking.yaml", calendar)


# ------------------------------------------------------------------ fill ahead


async def test_the_first_message_fills_name_reason_and_time(dental: Engine, calendar: Calendar) -> None:
    chat = Chat(dental)
    result = await chat.send("Hi, this is Maria Lopez, I'd like to book a cleaning tomorrow at 10am", kind="start")
    said = [m.text for m in result.messages]
    assert said[1] == "Thanks Maria — cleaning, Thu 26 Nov at 10:00 AM."  # after the greeting
    assert "Here are the closest times" in (said[2] or "") and chat.session.state == "offer"
    assert not any("What's your name" in (t or "") or "visit for" in (t or "") for t in said)
    assert (chat.var("patient_name"), chat.var("reason"), chat.var("wanted")) == (
        "Maria Lopez", "cleaning", "2026-11-26T10:00:00-05:00")
    assert calendar.calls == [("find_slots", "2026-11-26T10:00:00-05:00")]  # the call between still ran


async def test_name_and_time_at_the_name_question(dental: Engine) -> None:
    chat = Chat(dental)
    await chat.send(kind="start")
    said = await chat.say("book", "Maria, and tomorrow at 10am would be great")
    assert said[0] == "Thanks Maria — Thu 26 Nov at 10:00 AM." and "What is the visit for" in said[1]
    assert chat.var("patient_name") == "Maria" and chat.session.vars[FILLED_KEY] == {
        "ask_time": ["2026-11-26T10:00:00-05:00", None]}
    said = await chat.say("checkup")
    assert chat.session.state == "offer" and chat.var("wanted") == "2026-11-26T10:00:00-05:00"
    assert chat.session.vars[FILLED_KEY] == {}  # used once: a later visit to ask_time asks again


async def test_the_session_given_is_not_modified(dental: Engine) -> None:
    chat = Chat(dental)
    await chat.send(kind="start")
    await chat.say("book", "Maria, and tomorrow at 10am would be great")
    before = chat.session
    snapshot = msgspec.json.encode(before)
    await chat.say("checkup")
    assert msgspec.json.encode(before) == snapshot


async def test_fill_ahead_off_for_the_flow_and_for_one_ask(calendar: Calendar) -> None:
    text = (FLOWS_DIR / "dental_booking.yaml").read_text()
    off = text.replace("  max_retries: 2\n", "  max_retries: 2\n  fill_ahead: false\n")
    chat = Chat(engine_for(off, calendar))
    said = [m.text for m in (await chat.send("book a cleaning tomorrow at 10am, this is Maria", kind="start")).messages]
    assert "What's your name" in (said[-1] or "") and FILLED_KEY not in chat.session.vars
    one = text.replace("    input: datetime\n    save: wanted\n", "    input: datetime\n    save: wanted\n"
                       "    fill_ahead: false\n", 1)
    chat = Chat(engine_for(one, calendar))
    said = [m.text for m in (await chat.send("this is Maria, book a cleaning tomorrow at 10am", kind="start")).messages]
    assert "When would you like" in (said[-1] or "") and chat.var("reason") == "cleaning"


AMBIGUOUS = """
flow: two_times
start: ask_name
defaults: {fail: bye}
states:
  ask_name: {ask: "Name?", input: name, save: name, next: first}
  first: {ask: "First visit?", input: datetime, save: first, next: second}
  second: {ask: "Second visit?", input: datetime, save: second, next: bye}
  bye: {say: "Bye {{ name }}", end: done}
"""


async def test_a_value_two_asks_could_take_fills_neither() -> None:
    chat = Chat(engine_for(AMBIGUOUS))
    await chat.send(kind="start")
    said = await chat.say("Ann, tomorrow at 10am")
    assert said == ["First visit?"] and chat.var("name") == "Ann" and chat.var("first") is None


# ------------------------------------------------------------------ corrections


async def test_a_new_time_at_the_offer_looks_slots_up_again(dental: Engine, calendar: Calendar) -> None:
    chat = Chat(dental)
    await chat.send(kind="start")
    await chat.say("book", "Kay Lu", "cleaning", "tomorrow at 10am")
    said = await chat.say("actually can we do 3pm instead?")
    assert said[0] == "Got it: Thu 26 Nov at 3:00 PM." and chat.session.state == "offer"
    assert chat.var("wanted") == "2026-11-26T15:00:00-05:00"
    assert [c for c in calendar.calls if c[0] == "find_slots"][-1] == ("find_slots", "2026-11-26T15:00:00-05:00")


async def test_a_name_corrected_at_the_time_question(dental: Engine) -> None:
    chat = Chat(dental)
    await chat.send(kind="start")
    await chat.say("book", "Maria", "cleaning")
    said = await chat.say("sorry, my name is actually Ana")
    assert said[0] == "Got it, Ana." and "When would you like" in said[1] and len(said) == 2
    assert chat.session.state == "ask_time" and chat.var("patient_name") == "Ana" and chat.var("reason") == "cleaning"
    said = await chat.say("tomorrow at 10am", "1")
    assert "Ana" in said[0] and chat.session.outcome == "booked"


async def test_a_correction_in_the_same_message_wins(dental: Engine) -> None:
    chat = Chat(dental)
    await chat.send(kind="start")
    await chat.say("book", "Jo", "checkup", "Friday at 2, no actually Thursday at 2")
    assert chat.var("wanted") == "2026-11-26T14:00:00-05:00"


async def test_i_mean_in_a_free_text_answer() -> None:
    chat = Chat(engine_for(ROOT / "examples" / "flows" / "hvac_intake.yaml"))
    await chat.send(kind="start")
    await chat.say("no heat \u2013 I mean it's the AC")
    assert chat.var("problem") == "the AC"
    chat = Chat(engine_for(ROOT / "examples" / "flows" / "hvac_intake.yaml"))
    await chat.send(kind="start")
    await chat.say("no heat")
    assert chat.var("problem") == "no heat"


AFTER_BOOKING = """
flow: rebook
start: ask_time
defaults: {fail: bye, error: bye}
states:
  ask_time: {ask: "When?", input: datetime, save: wanted, next: find}
  find:
    call: calendar.find_slots
    args: {around: "{{ wanted }}"}
    save: slots
    next: offer
  offer: {ask: "Which?", choices_from: slots, save: slot, next: book}
  book:
    call: calendar.book
    args: {slot: "{{ slot }}"}
    save: booking
    next: more
  more: {ask: "Booked {{ booking.label }}. Anything else?", input: yes_no, on: {yes: bye, no: bye}}
  bye: {say: "Bye", end: booked}
"""


@pytest.mark.parametrize("moves,expected", [
    (("reschedule", "cancel"), ["book", "reschedule"]),
    (("cancel",), ["book", "cancel", "book"]),
])
async def test_a_booking_corrected_is_moved_not_doubled(moves: tuple[str, ...], expected: list[str]) -> None:
    calendar = Calendar(moves)
    chat = Chat(engine_for(AFTER_BOOKING, calendar))
    await chat.send(kind="start")
    await chat.say("tomorrow at 10am", "1")
    assert chat.session.state == "more"
    said = await chat.say("actually make it friday at 2pm", "1")
    assert said[0].startswith("Booked Fri 27 Nov, 14:00")
    assert [c[0] for c in calendar.calls if c[0] != "find_slots"] == expected
    assert chat.var("booking")["start"] == "2026-11-27T14:00:00+00:00"  # the flow is on UTC


# ------------------------------------------------------------------ confirm and answers


async def test_a_read_back_after_a_no_is_spelled_out() -> None:
    chat = Chat(engine_for(ROOT / "examples" / "flows" / "hvac_intake.yaml"))
    await chat.send(kind="start")
    assert await chat.say("no heat", "Ana") == ["Just to confirm: Ana. Is that right?"]
    assert chat.var("name") is None
    assert (await chat.say("no"))[0].startswith("Sorry about that.")
    assert await chat.say("Anna") == ["Just to confirm: Anna, spelled A-N-N-A. Is that right?"]
    await chat.say("yes")
    assert chat.var("name") == "Anna" and chat.session.state == "ask_phone"


async def test_a_question_is_answered_and_the_ask_repeated(dental: Engine) -> None:
    chat = Chat(dental)
    await chat.send(kind="start")
    await chat.say("book", "Wes", "cleaning")
    for _ in range(4):  # not a failed answer: never reaches on.fail
        said = await chat.say("are you open saturday?")
    assert said[0].startswith("We're open Monday to Friday") and "When would you like" in said[1]
    assert chat.session.state == "ask_time" and chat.session.retries == 0


def test_validate_checks_answers_and_confirm() -> None:
    text = """
flow: checks
start: ask
answers:
  hours: {say: "9 to 5"}
states:
  ask: {ask: "Ok?", input: yes_no, save: ok, confirm: true, on: {yes: bye, no: bye, fail: bye}}
  bye: {say: "Bye", end: done}
"""
    problems = [d.format() for d in validate(load_test_flow(text, "c.yaml"), default_connectors())]  # type: ignore[arg-type]
    assert any("answer 'hours' has no match" in p for p in problems)
    assert any("reads back a yes/no answer" in p for p in problems)


def test_the_hvac_example_dialogues_pass() -> None:
    import io

    out = io.StringIO()
    code = flowtest_main([str(ROOT / "examples" / "flow_tests" / "hvac_understanding.test.yaml")], out=out)
    assert code == 0, out.getvalue()
