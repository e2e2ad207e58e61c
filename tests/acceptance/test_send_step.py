"""Acceptance: `call: message.send` (issue #18). A caller books by phone and the confirmation
goes out by SMS through the outbox; a WhatsApp send outside the 24 h window goes as the
template; a contact who said STOP is sent nothing; staff get theirs on the staff number."""

from __future__ import annotations

import json
from pathlib import Path

from fakes.graph import FakeGraph
from fakes.signing import CALLER, sms_form, voice_form
from fakes.twilio import FakeTwilio
from litestar.testing import AsyncTestClient

from orchestrator.web.app import create_app

from .conftest import make_settings, sms_texts, twilio_post, twilio_post_url, twiml, wait_for

STAFF = "+15555550199"
FLOW = """
flow: confirm_by_text
start: ask_name
settings: {timezone: America/New_York, staff_notify: "+15555550199", whatsapp_template: visit_update}
states:
  ask_name:
    ask: "What's your name?"
    input: name
    save: name
    next: confirm
  confirm:
    call: message.send
    args: {text: "Hi {{ name }}, you're booked for Thursday at 10.", channel: sms}
    on: {ok: wa, error: wa}
  wa:
    call: message.send
    args: {text: "Your visit is confirmed, {{ name }}.", channel: whatsapp, template: booking_confirmed}
    on: {ok: tell_staff, error: tell_staff}
  tell_staff:
    call: message.send
    args: {to: staff, text: "{{ name }} booked by phone"}
    on: {ok: bye, error: bye}
  bye:
    say: "Done, {{ name }}. We've sent you the details by text."
    end: booked
"""


def settings_for(tmp_path: Path, fake_twilio: FakeTwilio, graph: FakeGraph):  # type: ignore[no-untyped-def]
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "confirm_by_text.yaml").write_text(FLOW)
    return make_settings(flows, fake_twilio, graph, default_flow="confirm_by_text")


def sms_to(fake_twilio: FakeTwilio, number: str) -> list[str]:
    return [m["Body"][0] for m in fake_twilio.messages() if m.get("To") == [number]]


async def test_a_phone_booking_is_confirmed_by_sms_whatsapp_template_and_staff(
    tmp_path: Path, fake_twilio: FakeTwilio, graph: FakeGraph,
) -> None:
    async with AsyncTestClient(create_app(settings_for(tmp_path, fake_twilio, graph))) as client:
        root = twiml(await twilio_post(client, "/webhooks/twilio/voice", voice_form()))
        gather = root.find("Gather")
        assert gather is not None
        done = twiml(await twilio_post_url(client, gather.get("action", ""),
                                           [*voice_form(status="in-progress"), ("SpeechResult", "Maria Lopez"),
                                            ("Confidence", "0.9")]))
        spoken = " ".join(e.text or "" for e in done.iter("Say"))
        assert "We've sent you the details" in spoken
        assert "booked for Thursday" not in spoken  # the SMS is not spoken on the call
        await wait_for(lambda: sms_to(fake_twilio, CALLER) and sms_to(fake_twilio, STAFF) and graph.sent())
    assert sms_to(fake_twilio, CALLER) == ["Hi Maria Lopez, you're booked for Thursday at 10."]
    assert sms_to(fake_twilio, STAFF) == ["Maria Lopez booked by phone"]
    [call] = graph.sent()
    assert call["type"] == "template" and call["template"]["name"] == "booking_confirmed"  # no window on WhatsApp
    assert call["to"] == CALLER.lstrip("+")
    assert "Your visit is confirmed, Maria Lopez." in json.dumps(call["template"]["components"])


async def test_nothing_is_sent_to_a_contact_who_opted_out(
    tmp_path: Path, fake_twilio: FakeTwilio, graph: FakeGraph,
) -> None:
    async with AsyncTestClient(create_app(settings_for(tmp_path, fake_twilio, graph))) as client:
        [ack] = sms_texts(await twilio_post(client, "/webhooks/twilio/sms", sms_form("STOP")))
        assert "unsubscribed" in ack.lower() or "stop" in ack.lower()
        root = twiml(await twilio_post(client, "/webhooks/twilio/voice", voice_form()))
        gather = root.find("Gather")
        assert gather is not None  # a call still works after STOP: STOP is about texts
        await twilio_post_url(client, gather.get("action", ""),
                              [*voice_form(status="in-progress"), ("SpeechResult", "Maria Lopez"),
                               ("Confidence", "0.9")])
        store = client.app.state.runtime.store
        await wait_for(lambda: bool(sms_to(fake_twilio, STAFF)) and not store._outbox)  # every item settled
    assert sms_to(fake_twilio, CALLER) == []
    assert graph.sent() == []
