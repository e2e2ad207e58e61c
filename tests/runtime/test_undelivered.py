"""The `undelivered` event: a message to the contact could not be delivered (a provider's
permanent send failure). The state's `on: {undelivered}` route, else the end `undelivered`,
and staff are told."""

from __future__ import annotations

from flowkit import FIXED_NOW, load_test_flow

from orchestrator.engine.compiler import compile_flow
from orchestrator.engine.turn import Engine
from orchestrator.errors import Diagnostic
from orchestrator.flow.validate import validate
from orchestrator.model import Event, Session, TurnResult
from orchestrator.plugins.connectors import ConnectorRegistry
from orchestrator.runtime import notify

CONTACT = "+15555550123"
FLOW = """\
flow: undelivered_demo
title: Demo
start: hello
settings: {staff_notify: "+15555550199"}
states:
  hello:
    say: "Sorry we missed your call. What's your name?"
    next: ask_name
  ask_name:
    ask: "What's your name?"
    save: name
    next: ask_reason
    on: {undelivered: tell_staff}
  ask_reason:
    ask: "What is it about?"
    save: reason
    next: bye
  bye:
    say: "Thanks, we'll call you."
    end: message_taken
    on: {undelivered: tell_staff}
  tell_staff:
    handoff: "+15555550199"
    end: unreachable
"""


def engine(source: str = FLOW) -> Engine:
    return Engine(compile_flow(load_test_flow(source, "u.yaml")), ConnectorRegistry())  # type: ignore[arg-type]


async def started(eng: Engine) -> Session:
    session = eng.new_session(f"b:{CONTACT}", business="+15555550100", contact=CONTACT, channel="sms", now=FIXED_NOW)
    return (await eng.turn(session, Event(kind="start", channel="sms"), FIXED_NOW)).session


async def undelivered(eng: Engine, session: Session, code: str = "30006") -> TurnResult:
    return await eng.turn(session, Event(kind="undelivered", channel="sms", text=code), FIXED_NOW + 5)


async def test_an_ask_that_routes_undelivered_goes_there() -> None:
    eng = engine()
    session = await started(eng)
    assert session.state == "ask_name"
    result = await undelivered(eng, session)
    assert result.ended and result.session.outcome == "unreachable"
    assert [m.kind for m in result.messages] == ["handoff", "notify", "end"]
    assert any(e.text == "message undelivered at 'ask_name': 30006" for e in result.transcript)


async def answer(eng: Engine, session: Session, *texts: str) -> Session:
    for i, text in enumerate(texts):
        session = (await eng.turn(session, Event(kind="text", channel="sms", text=text), FIXED_NOW + 1 + i)).session
    return session


async def test_without_a_route_the_conversation_ends_undelivered_and_staff_are_told() -> None:
    eng = engine()
    session = await answer(eng, await started(eng), "Ann")
    assert session.state == "ask_reason"
    result = await undelivered(eng, session, "")
    assert result.ended and result.session.outcome == "undelivered"
    assert [m.kind for m in result.messages] == ["end"]  # nothing said: it would not arrive either
    staff = notify.staff_messages(eng.compiled, result)
    assert len(staff) == 1 and staff[0].target == "+15555550199" and "outcome undelivered" in staff[0].text
    assert "undelivered" in notify.NOTIFY_OUTCOMES


async def test_a_say_that_ended_the_conversation_reopens_it_by_its_route() -> None:
    eng = engine()
    session = await answer(eng, await started(eng), "Ann", "a loose crown")
    assert session.state == "bye" and session.outcome == "message_taken"
    result = await undelivered(eng, session)
    assert result.session.outcome == "unreachable" and result.session.path[-1] == "tell_staff"


async def test_after_an_end_without_a_route_undelivered_is_ignored() -> None:
    eng = engine(FLOW.replace("end: message_taken\n    on: {undelivered: tell_staff}", "end: message_taken"))
    session = await answer(eng, await started(eng), "Ann", "a loose crown")
    result = await undelivered(eng, session)
    assert result.session.outcome == "message_taken" and not result.messages


def errors(source: str) -> list[Diagnostic]:
    return [d for d in validate(load_test_flow(source, "u.yaml")) if d.is_error]  # type: ignore[arg-type]


def test_validate_allows_undelivered_on_ask_say_handoff_and_record_only() -> None:
    flow = FLOW + """\
  voicemail:
    record: "Leave a message."
    notice: true
    end: voicemail
    on: {undelivered: tell_staff}
"""
    flow = flow.replace("    end: unreachable\n", "    end: unreachable\n    on: {undelivered: voicemail}\n")
    assert errors(flow) == []
    call = FLOW.replace("  ask_reason:\n    ask: \"What is it about?\"\n    save: reason\n",
                        "  ask_reason:\n    call: crm.log\n    on: {undelivered: tell_staff}\n")
    found = errors(call)
    assert [d.message for d in found] == ["state 'ask_reason' has no outcome 'undelivered' to route"], found
    assert "ok, empty, conflict, error" in str(found[0].hint)
