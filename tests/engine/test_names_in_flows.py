"""Name asks in a running flow (#14 item 5): sentences re-asked, lead-ins stripped, `first_only`."""

from __future__ import annotations

from flowkit import FIXED_NOW, FLOWS_DIR, load_test_flow

from orchestrator.engine.compiler import compile_flow
from orchestrator.engine.turn import Engine
from orchestrator.flow.validate import validate
from orchestrator.model import Event, Session
from orchestrator.plugins.connectors import ConnectorRegistry

PETS = """\
flow: vet
start: ask_pet
states:
  ask_pet:
    ask: "What's your pet's name?"
    input: name
    first_only: true
    save: pet
    next: ask_owner
  ask_owner:
    ask: "And your name?"
    input: name
    save: owner
    next: done
  done:
    say: "Thanks {{ owner }}, we'll see {{ pet }} soon."
    end: booked
"""


async def run(engine: Engine, *lines: str, channel: str = "sms") -> tuple[Session, list[str]]:
    now = FIXED_NOW
    session = engine.new_session("biz:+15555550123", business="biz", contact="+15555550123", channel=channel, now=now)
    said: list[str] = []
    for kind, text in [("start", None), *(("text", line) for line in lines)]:
        now += 5
        result = await engine.turn(session, Event(kind=kind, text=text, channel=channel), now)  # type: ignore[arg-type]
        session = result.session
        said = [m.text for m in result.messages]
    return session, said


async def test_first_only_and_lead_ins() -> None:
    engine = Engine(compile_flow(load_test_flow(PETS, "vet.yaml")), ConnectorRegistry())
    session, said = await run(engine, "his name is rex the dog", "my dog is sick", "hi, it's maria lopez")
    assert session.vars["pet"] == "Rex" and session.vars["owner"] == "Maria Lopez"
    assert said[0] == "Thanks Maria Lopez, we'll see Rex soon."
    # a sentence is re-asked, never saved as a name
    session, said = await run(engine, "Luna", "my furnace is out")
    assert session.state == "ask_owner" and "owner" not in session.vars
    assert said[0].startswith("Sorry, I didn't catch your name.")


async def test_dental_name_question_keeps_the_name_part() -> None:
    engine = Engine(compile_flow(load_test_flow(FLOWS_DIR / "dental_booking.yaml")), ConnectorRegistry())
    session, _ = await run(engine, "1", "Maria, and tomorrow at 10am would be great")
    assert session.state == "ask_reason" and session.vars["patient_name"] == "Maria"
    session, said = await run(engine, "1", "I'd like to book a cleaning")
    assert session.state == "ask_name" and "patient_name" not in session.vars
    assert said[0] == "Sorry, I didn't catch that. What name should I put the booking under?"


def test_first_only_on_another_kind_is_a_warning() -> None:
    text = PETS.replace("input: name\n    first_only: true", "input: text\n    first_only: true")
    found = validate(load_test_flow(text, "vet.yaml"))  # type: ignore[arg-type]
    warnings = [d for d in found if "first_only" in d.message]
    assert warnings and all(d.severity == "warning" for d in warnings)
