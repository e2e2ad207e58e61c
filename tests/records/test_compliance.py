"""Compliance on the voice channel: the consent notice is spoken first, once, when the flow
records; recording and transcription happen only when the flow enables them."""

from __future__ import annotations

import pytest
from flowkit import load_test_flow

from channels.twilio_voice import TwilioVoiceChannel
from orchestrator.engine.compiler import compile_flow
from orchestrator.engine.turn import Engine
from orchestrator.model import Event
from orchestrator.plugins.channels import ReplyContext
from orchestrator.plugins.connectors import ConnectorRegistry

FLOW = """\
flow: vm
title: Clinic
start: greet
settings: {{recording: {recording}, transcription: {transcription}, consent_notice: "This call is recorded."}}
states:
  greet:
    say: "Hello."
    next: leave
  leave:
    record: "Leave a message after the beep."
    save: voicemail
    max_length: 1m
    next: bye
  bye:
    say: "Thanks."
    end: message_taken
"""


async def twiml(recording: bool, transcription: bool) -> str:
    loaded = load_test_flow(FLOW.format(recording=str(recording).lower(), transcription=str(transcription).lower()))
    compiled = compile_flow(loaded)  # type: ignore[arg-type]
    engine = Engine(compiled, ConnectorRegistry())
    session = engine.new_session("b:c", business="+15555550100", contact="+15555550123", channel="voice", now=0)
    result = await engine.turn(session, Event(kind="start", channel="voice"), 0)
    ctx = ReplyContext(settings=compiled.settings, public_url="https://example.test", event_kind="start")
    return TwilioVoiceChannel(auth_token="x" * 32, public_url="https://example.test").render(
        result.messages, ctx).body.decode()


async def test_consent_is_spoken_once_before_anything_is_recorded() -> None:
    body = await twiml(recording=True, transcription=True)
    assert body.count("This call is recorded.") == 1, body
    # the notice, then the call's own recording starts (#20), then the flow; the voicemail is recorded too
    assert body.index("This call is recorded.") < body.index("<Start><Recording ") < body.index("Hello.") \
        < body.index("<Record ")
    assert 'transcribe="true"' in body


@pytest.mark.parametrize(("recording", "transcription"), [(False, False), (True, False)])
async def test_no_transcription_unless_enabled(recording: bool, transcription: bool) -> None:
    body = await twiml(recording=recording, transcription=transcription)
    assert "transcribe" not in body
    assert ("This call is recorded." in body) is recording
