"""The owner's summary of a conversation (orchestrator/engine/summary.py): every collected field,
labelled and readable, in the staff SMS and in the admin API's conversation detail."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from flowkit import FIXED_NOW, load_test_flow

from orchestrator.engine import summary
from orchestrator.engine.compiler import compile_flow
from orchestrator.engine.turn import Engine
from orchestrator.errors import FlowError
from orchestrator.flow import validate
from orchestrator.model import Event, Session, TurnResult
from orchestrator.plugins.channels import Address, Capabilities, ChannelRegistry, Inbound, Outbound, ReplyContext
from orchestrator.plugins.connectors import ConnectorRegistry
from orchestrator.runtime.pipeline import Runtime
from orchestrator.settings import AppSettings
from orchestrator.stores.memory import MemoryStore
from orchestrator.web.app import create_app

CONTACT = "+13035550123"
STAFF = "+13035550199"
BIZ = "+13035550100"
TOKEN = "test-admin-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

# An HVAC company's first flow: who, where, what is wrong, how urgent, when to call back.
HVAC = f"""
flow: hvac_service
title: Peak HVAC
start: ask_name
settings:
  timezone: America/Denver
  language: en-US
  staff_notify: "{STAFF}"
{{settings}}
states:
  ask_name:
    ask: "Hi, this is Peak HVAC. What's your name?"
    input: name
    save: customer_name
    next: ask_address
  ask_address:
    ask: "What's the address of the job?"
    save: address
    next: ask_problem
  ask_problem:
    ask: "What's going on with your system?"
    save: problem
    next: ask_urgency
  ask_urgency:
    ask: "How urgent is it?"
    choices:
      emergency: {{label: "Emergency (no heat)", match: [emergency, no heat, urgent]}}
      this_week: {{label: This week, match: [week, soon]}}
      no_rush: {{label: No rush, match: [no rush, whenever]}}
    save: urgency
    next: ask_callback
  ask_callback:
    ask: "When should our technician call you back?"
    input: datetime
    save: callback_time
    label: Call back at
    next: ask_number
  ask_number:
    ask: "And the best number to reach you?"
    input: phone
    save: callback_number
    next: thanks
  thanks:
    say: "Thanks {{{{ customer_name }}}}, a technician will call you."
    end: callback_requested
"""
ANSWERS = ["hi", "Dana Scully", "42 Elm St, Boulder", "The furnace blows cold air", "no heat",
           "tomorrow at 3pm", "303 555 0144"]
# FIXED_NOW is Wed 25 Nov 2026 10:00 in Denver: "tomorrow at 3pm" is Thursday 15:00 MST.
CALLBACK_ISO = "2026-11-26T15:00:00-07:00"


def hvac(settings: str = "") -> str:
    return HVAC.replace("{settings}", settings)


def engine_of(source: str) -> Engine:
    return Engine(compile_flow(load_test_flow(source, "hvac.yaml")), ConnectorRegistry())


async def converse(engine: Engine, lines: list[str], channel: str = "sms") -> list[TurnResult]:
    now = FIXED_NOW
    session: Session = engine.new_session(f"biz:{CONTACT}", business=BIZ, contact=CONTACT, channel=channel, now=now)
    results = []
    for i, line in enumerate(lines):
        now += 10
        event = Event(kind="start" if i == 0 else "text", channel=channel, text=line)
        result = await engine.turn(session, event, now)
        session = result.session
        results.append(result)
    return results


# ------------------------------------------------------------------ the engine's summary


async def test_every_collected_field_is_labelled_and_readable() -> None:
    done = (await converse(engine_of(hvac()), ANSWERS))[-1]
    assert done.ended and done.summary is not None
    fields = done.summary["fields"]
    assert [(f["name"], f["label"], f["text"]) for f in fields] == [
        ("customer_name", "Customer name", "Dana Scully"),
        ("address", "Address", "42 Elm St, Boulder"),
        ("problem", "Problem", "The furnace blows cold air"),
        ("urgency", "Urgency", "Emergency (no heat)"),  # the choice's label, not its id
        ("callback_time", "Call back at", "Thu 26 Nov, 3:00 PM"),  # local, as the `datetime` filter writes it
        ("callback_number", "Callback number", "(303) 555-0144"),  # national form
    ]
    assert [f["value"] for f in fields][3:] == ["emergency", CALLBACK_ISO, "+13035550144"]  # the data stays data
    # the keys other code reads are still there
    s = done.summary
    assert (s["flow"], s["contact"], s["channel"], s["name"], s["outcome"]) == (
        "hvac_service", CONTACT, "sms", "Dana Scully", "callback_requested")
    assert s["wanted"] == CALLBACK_ISO and s["booking"] is None and s["recording"] is None
    assert s["turns"] == len(ANSWERS) and s["duration"] == 10.0 * len(ANSWERS)  # from new_session


async def test_the_staff_sms_carries_every_field_with_a_readable_local_time() -> None:
    engine = engine_of(hvac())
    done = (await converse(engine, ANSWERS))[-1]
    from orchestrator.runtime.notify import staff_messages

    [note] = staff_messages(engine.compiled, done)
    assert note.target == STAFF
    assert note.text == (
        "Peak HVAC: Dana Scully ((303) 555-0123) via sms, outcome callback_requested. "
        "Address: 42 Elm St, Boulder. Problem: The furnace blows cold air. Urgency: Emergency (no heat). "
        "Call back at: Thu 26 Nov, 3:00 PM. Callback number: (303) 555-0144."
    )
    assert "2026-11-26T" not in note.text and note.text == done.summary["text"]  # type: ignore[index]


async def test_a_handoff_tells_staff_what_was_collected_so_far() -> None:
    source = hvac().replace("    next: ask_callback\n", "    on: {emergency: dispatch}\n    next: ask_callback\n")
    source += f"""  dispatch:
    handoff: "{STAFF}"
    say: "Connecting you to our on-call technician."
    end: handed_off
"""
    done = (await converse(engine_of(source), ANSWERS[:5]))[-1]
    [note] = [m for m in done.messages if m.kind == "notify"]
    assert note.text == (
        "Peak HVAC: Dana Scully ((303) 555-0123) needs a follow-up via sms. "
        "Address: 42 Elm St, Boulder. Problem: The furnace blows cold air. Urgency: Emergency (no heat)."
    )
    assert done.summary is not None and done.summary["text"] == note.text


async def test_settings_summary_shapes_the_text() -> None:
    template = (
        '  summary: |-\n'
        '    JOB for {{ customer_name }} ({{ contact.phone | phone }})\n'
        '    {% for f in fields if f.name != "customer_name" %}- {{ f.label }}: {{ f.text }}\n'
        '    {% endfor %}Outcome: {{ summary.outcome }} after {{ summary.turns }} messages'
    )
    engine = engine_of(hvac(template))
    done = (await converse(engine, ANSWERS))[-1]
    from orchestrator.runtime.notify import staff_messages

    [note] = staff_messages(engine.compiled, done)
    assert note.text == (
        "JOB for Dana Scully ((303) 555-0123)\n"
        "- Address: 42 Elm St, Boulder\n- Problem: The furnace blows cold air\n- Urgency: Emergency (no heat)\n"
        "- Call back at: Thu 26 Nov, 3:00 PM\n- Callback number: (303) 555-0144\n"
        "Outcome: callback_requested after 7 messages"
    )


async def test_a_summary_template_that_fails_sends_the_default(caplog: pytest.LogCaptureFixture) -> None:
    engine = engine_of(hvac('  summary: "{{ summary.turns // 0 }} per turn"'))
    with caplog.at_level(logging.WARNING, logger="orchestrator.engine.summary"):
        done = (await converse(engine, ANSWERS))[-1]
    assert done.summary is not None and done.summary["text"].startswith("Peak HVAC: Dana Scully")
    assert "settings.summary failed to render" in caplog.text and CONTACT not in caplog.text


async def test_a_voicemail_is_its_link_and_the_summary_names_the_recording() -> None:
    source = """
flow: after_hours
start: take_message
settings: {staff_notify: "+15555550199"}
states:
  take_message:
    record: "Leave a message after the beep."
    save: voicemail
    label: Voicemail
    end: message_taken
"""
    engine = engine_of(source)
    url = "https://api.twilio.com/2010-04-01/Accounts/AC1/Recordings/RE1"
    now = FIXED_NOW
    session = engine.new_session("v1", business=BIZ, contact=CONTACT, channel="voice", now=now)
    first = await engine.turn(session, Event(kind="start", channel="voice"), now + 1)
    done = await engine.turn(first.session, Event(kind="recording", channel="voice", recording_url=url,
                                                  duration_seconds=12.0, text="My furnace is out"), now + 20)
    assert done.ended and done.summary is not None
    assert done.summary["recording"] == url
    # Twilio's transcription rides with the link (#20)
    assert [(f["label"], f["text"]) for f in done.summary["fields"]] == [("Voicemail", f'{url} ("My furnace is out")')]
    assert f"Voicemail: {url}" in done.summary["text"]

    texted = engine.new_session("s1", business=BIZ, contact=CONTACT, channel="sms", now=now)
    first = await engine.turn(texted, Event(kind="start", channel="sms"), now + 1)
    done = await engine.turn(first.session, Event(kind="text", channel="sms", text="My furnace is out"), now + 20)
    assert done.summary is not None and done.summary["recording"] is None
    assert done.summary["text"].endswith("Voicemail: My furnace is out.")  # on SMS the message is the voicemail


def test_fields_follow_the_order_the_flow_asks_them_not_the_file_order() -> None:
    source = """
flow: ordered
start: first
states:
  later:
    ask: "Phone?"
    input: phone
    save: phone_number
    next: done
  first:
    ask: "Name?"
    input: name
    save: patient_name
    label: Patient
    next: middle
  middle:
    call: calendar.lookup
    save: lookup_result
    label: Found in CRM
    next: later
  done: {end: ok}
"""
    compiled = compile_flow(load_test_flow(source, "o.yaml"))
    assert [(f.name, f.label, f.kind) for f in compiled.summary.fields] == [
        ("patient_name", "Patient", "name"), ("lookup_result", "Found in CRM", "call"),
        ("phone_number", "Phone number", "phone"),
    ]
    assert summary.humanise("patient_name") == "Patient name"


def test_readable_values() -> None:
    compiled = compile_flow(load_test_flow(hvac(), "hvac.yaml"))
    filters = compiled.summary.filters
    slot = {"start": "2026-11-26T17:00:00-07:00", "label": "Thu 26 Nov, 5:00 PM"}
    assert summary.readable([slot, {"start": "2026-11-27T09:00:00-07:00"}], None, filters) == (
        "Thu 26 Nov, 5:00 PM, Fri 27 Nov, 9:00 AM")
    assert summary.readable(True, None, filters) == "Yes" and summary.readable(3, None, filters) == "3"
    assert summary.readable("2026-11-26T22:00:00Z", None, filters) == "Thu 26 Nov, 3:00 PM"  # in the flow's zone
    assert summary.readable({"street": "42 Elm St", "unit": None, "city": "Boulder"}, None, filters) == (
        "Street: 42 Elm St, City: Boulder")
    assert summary.readable("not a date", summary.FieldSpec("x", "X", "date"), filters) == "not a date"


# ------------------------------------------------------------------ validate


def test_validate_checks_settings_summary() -> None:
    good = load_test_flow(hvac('  summary: "{{ summary.name }}: {{ fields | length }} fields, {{ address }}"'),
                          "hvac.yaml")
    validate.check(good, ConnectorRegistry())  # summary and fields are known there
    typo = load_test_flow(hvac('  summary: "{{ adress }}"'), "hvac.yaml")
    with pytest.raises(FlowError, match=r"hvac.yaml:9:12: settings.summary uses variable 'adress', which nothing "
                                        r"sets \(hint: did you mean 'address'\?\)"):
        validate.check(typo, ConnectorRegistry())
    shout = load_test_flow(hvac('  summary: "{{ summary.name | shout }}"'), "hvac.yaml")
    with pytest.raises(FlowError, match=r"settings\.summary uses unknown filter 'shout'"):
        validate.check(shout, ConnectorRegistry())
    elsewhere = load_test_flow(hvac().replace("Thanks {{ customer_name }}", "Thanks {{ fields }}"), "hvac.yaml")
    with pytest.raises(FlowError, match=r"state 'thanks' uses variable 'fields', which nothing sets"):
        validate.check(elsewhere, ConnectorRegistry())  # only the summary template sees them


# ------------------------------------------------------------------ the runtime and the admin API


class FakeSms:
    name = "fake_sms"

    def __init__(self) -> None:
        self.capabilities = Capabilities(idiom="sms", sync_reply=True)
        self.sent: list[tuple[str, list[Outbound]]] = []

    def verify(self, request: object) -> None: ...
    def parse(self, request: object) -> list[Inbound]: return []
    def render(self, messages: list[Outbound], ctx: ReplyContext) -> object: return None

    async def send(self, to: Address, messages: list[Outbound], ctx: ReplyContext) -> list[str]:
        self.sent.append((to.contact, list(messages)))
        return [f"M{len(self.sent)}"]


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[Runtime, FakeSms, httpx.AsyncClient]]:
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "hvac_service.yaml").write_text(hvac())
    sms = FakeSms()
    channels = ChannelRegistry()
    channels.register(sms)  # type: ignore[arg-type]
    settings = AppSettings(flows_dir=str(flows), admin_token=TOKEN, default_flow="hvac_service",
                           twilio_from_number=BIZ)
    clock = iter(FIXED_NOW + 10 * i for i in range(1000))
    runtime = await Runtime.create(settings, ConnectorRegistry(), channels, store=MemoryStore(),
                                   clock=lambda: next(clock))
    app = create_app(settings, runtime=runtime, start_background=False)
    app.state.runtime = runtime
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as client:
        yield runtime, sms, client


async def test_staff_sms_and_admin_detail_show_the_same_summary(
    served: tuple[Runtime, FakeSms, httpx.AsyncClient],
) -> None:
    runtime, sms, client = served
    for line in ANSWERS:
        event = Event(kind="text", channel="sms", text=line, provider_id=f"SM{uuid.uuid4().hex}")
        await runtime.handle("fake_sms", Inbound(kind="event", address=Address(business=BIZ, contact=CONTACT),
                                                 route_key=BIZ, event=event))
    await runtime.send_outbox()
    [note] = [m for to, msgs in sms.sent if to == STAFF for m in msgs]
    assert note.kind == "notify" and "Call back at: Thu 26 Nov, 3:00 PM." in note.text
    assert "Address: 42 Elm St, Boulder." in note.text and "Urgency: Emergency (no heat)." in note.text

    [row] = (await client.get("/api/conversations", headers=AUTH)).json()
    detail: dict[str, Any] = (await client.get(f"/api/conversations/{row['id']}", headers=AUTH)).json()
    shown = detail["summary"]
    assert shown["text"] == note.text
    assert [f["label"] for f in shown["fields"]] == [
        "Customer name", "Address", "Problem", "Urgency", "Call back at", "Callback number"]
    assert shown["fields"][4] == {"name": "callback_time", "label": "Call back at", "value": CALLBACK_ISO,
                                  "text": "Thu 26 Nov, 3:00 PM"}
