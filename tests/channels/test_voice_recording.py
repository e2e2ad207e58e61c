"""Recording that records (#20): `recording: true` records the call after the notice
(`<Start><Recording>`, twilio's own TwiML), the recording and transcription callbacks (signed,
with no From/To, as Twilio sends them) reach the conversation, the summary and staff, a
`record` state without a notice before it is refused by validate, and erasing the contact
deletes the recordings at Twilio (the fake REST)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import msgspec
import pytest
from fakes.signing import ACCOUNT, CALL_SID, CALLER, CLINIC, PUBLIC_URL, twilio_signature, voice_form
from fakes.twilio import ACCOUNT_SID, AUTH_TOKEN, FakeTwilio
from twilio.twiml.voice_response import VoiceResponse

from channels._twilio import XML_HEADER
from channels.twilio_voice import TwilioVoiceChannel
from orchestrator.flow.loader import load_flow_text
from orchestrator.flow.validate import validate
from orchestrator.model import Session
from orchestrator.plugins.connectors import ConnectorRegistry
from orchestrator.runtime.pipeline import Runtime
from orchestrator.settings import AppSettings
from orchestrator.web.app import build_channels, create_app

STAFF = "+15555550199"
ADMIN = "recording-admin-token-0123"
FLOW = f"""\
flow: vm
title: Bright Smile
start: leave
settings:
  recording: true
  transcription: true
  consent_notice: "This call is recorded."
  staff_notify: "{STAFF}"
states:
  leave:
    record: "Please leave a message after the beep."
    save: voicemail
    label: Voicemail
    end: message_taken
"""
CALL_REC = "RE" + "c" * 32
VOICEMAIL = "RE" + "d" * 32
REC_URL = f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT}/Recordings/"


@pytest.fixture
def twilio() -> Iterator[FakeTwilio]:
    with FakeTwilio() as fake:
        yield fake


@pytest.fixture
async def app(tmp_path: Path, twilio: FakeTwilio) -> AsyncIterator[tuple[httpx.AsyncClient, Runtime]]:
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "vm.yaml").write_text(FLOW)
    settings = AppSettings(
        flows_dir=str(flows), public_url=PUBLIC_URL, default_flow="vm", reload_seconds=0, admin_token=ADMIN,
        retention_interval_seconds=0, twilio_account_sid=ACCOUNT_SID, twilio_auth_token=AUTH_TOKEN,
        twilio_from_number=CLINIC, twilio_api_base=twilio.url,
    )
    runtime = await Runtime.create(settings, ConnectorRegistry(), build_channels(settings))
    web = create_app(settings, runtime=runtime, start_background=False)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=web), base_url="http://testserver") as c:
            yield c, runtime
    finally:
        await runtime.close()


async def post(client: httpx.AsyncClient, url: str, form: list[tuple[str, str]], *, signed: bool = True) -> Any:
    path = url[len(PUBLIC_URL):] if url.startswith(PUBLIC_URL) else url
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if signed:
        headers["X-Twilio-Signature"] = twilio_signature(AUTH_TOKEN, f"{PUBLIC_URL}{path}", form)
    return await client.post(path, content=urlencode(form).encode(), headers=headers)


def twiml(response: Any) -> ET.Element:
    assert response.status_code == 200, (response.status_code, response.text)
    return ET.fromstring(response.content)


def recording_callback(sid: str) -> list[tuple[str, str]]:
    """What Twilio posts to a recordingStatusCallback: no From, no To."""
    return [("AccountSid", ACCOUNT), ("CallSid", CALL_SID), ("RecordingSid", sid),
            ("RecordingUrl", REC_URL + sid), ("RecordingStatus", "completed"), ("RecordingDuration", "42"),
            ("RecordingChannels", "2"), ("RecordingSource", "StartCallRecordingTwiML")]


async def staff_texts(runtime: Runtime, twilio: FakeTwilio) -> list[str]:
    await runtime.send_outbox()
    return [m["Body"][0] for m in twilio.messages() if m["To"] == [STAFF]]


async def session_vars(runtime: Runtime) -> dict[str, Any]:
    raw = await runtime.store.load(f"{CLINIC}:{CALLER}")
    assert raw is not None
    return msgspec.msgpack.decode(raw, type=Session).vars


async def call_and_leave_a_message(client: httpx.AsyncClient) -> ET.Element:
    root = twiml(await post(client, "/webhooks/twilio/voice", voice_form()))
    record = root.find("Record")
    assert record is not None
    form = [*voice_form(status="in-progress"), ("RecordingSid", VOICEMAIL), ("RecordingUrl", REC_URL + VOICEMAIL),
            ("RecordingDuration", "9")]
    twiml(await post(client, record.get("action", ""), form))
    return root


def test_start_recording_twiml_is_twilios_own() -> None:
    ours = TwilioVoiceChannel._start_recording("https://bot.example", {"s": "%2B1:%2B2"})
    theirs = VoiceResponse()
    theirs.start().recording(recording_status_callback="https://bot.example/webhooks/twilio/voice/call-recording?s=%2B1:%2B2",
                             recording_status_callback_event="completed", recording_status_callback_method="POST")
    assert (XML_HEADER + f"<Response>{ours}</Response>") == str(theirs)


async def test_the_call_is_recorded_right_after_the_notice(app: tuple[httpx.AsyncClient, Runtime]) -> None:
    client, _ = app
    root = twiml(await post(client, "/webhooks/twilio/voice", voice_form()))
    assert [e.tag for e in root] == ["Say", "Start", "Say", "Record"]
    assert root[0].text == "This call is recorded."
    recording = root.find("Start/Recording")
    assert recording is not None and recording.get("recordingStatusCallbackEvent") == "completed"
    url = recording.get("recordingStatusCallback", "")
    assert url.startswith(f"{PUBLIC_URL}/webhooks/twilio/voice/call-recording?")
    assert parse_qs(urlsplit(url).query)["s"] == [f"{CLINIC}:{CALLER}"]  # Twilio's callback names no caller
    record = root.find("Record")
    assert record is not None and record.get("transcribe") == "true"
    assert record.get("transcribeCallback", "").startswith(f"{PUBLIC_URL}/webhooks/twilio/voice/transcription?")


async def test_the_call_recording_and_the_transcription_reach_the_conversation_summary_and_staff(
    app: tuple[httpx.AsyncClient, Runtime], twilio: FakeTwilio,
) -> None:
    client, runtime = app
    root = await call_and_leave_a_message(client)
    first = await staff_texts(runtime, twilio)
    assert len(first) == 1 and REC_URL + VOICEMAIL in first[0]  # the voicemail's link in the summary
    callback = root.find("Start/Recording").get("recordingStatusCallback", "")  # type: ignore[union-attr]
    assert (await post(client, callback, recording_callback(CALL_REC), signed=False)).status_code == 403
    twiml(await post(client, callback, recording_callback(CALL_REC)))
    again = await post(client, callback, recording_callback(CALL_REC))  # Twilio's retry: nothing twice
    assert again.status_code == 200
    assert (await session_vars(runtime))["_call_recording"]["url"] == REC_URL + CALL_REC
    texts = await staff_texts(runtime, twilio)
    assert texts[1] == f"Recording of the call with {CALLER}: {REC_URL + CALL_REC}"
    assert len(texts) == 2
    transcribed = root.find("Record").get("transcribeCallback", "")  # type: ignore[union-attr]
    form = [("AccountSid", ACCOUNT), ("CallSid", CALL_SID), ("RecordingSid", VOICEMAIL),
            ("RecordingUrl", REC_URL + VOICEMAIL), ("TranscriptionSid", "TR" + "e" * 32),
            ("TranscriptionStatus", "completed"), ("TranscriptionText", "My tooth hurts, please call back.")]
    twiml(await post(client, transcribed, form))
    assert (await session_vars(runtime))["voicemail"]["transcription"] == "My tooth hurts, please call back."
    texts = await staff_texts(runtime, twilio)
    assert texts[2] == f"Transcription of the message from {CALLER}: My tooth hurts, please call back."
    detail = await client.get("/api/conversations", params={"contact": CALLER},
                              headers={"Authorization": f"Bearer {ADMIN}"})
    assert detail.status_code == 200, detail.text
    summary = detail.json()[0]["summary"]
    assert summary["call_recording"] == REC_URL + CALL_REC
    assert "My tooth hurts" in summary["text"]


async def test_erasing_the_contact_deletes_the_recordings_at_twilio(
    app: tuple[httpx.AsyncClient, Runtime], twilio: FakeTwilio,
) -> None:
    client, _ = app
    root = await call_and_leave_a_message(client)
    callback = root.find("Start/Recording").get("recordingStatusCallback", "")  # type: ignore[union-attr]
    twiml(await post(client, callback, recording_callback(CALL_REC)))
    erased = await client.delete(f"/api/contacts/{CALLER}", headers={"Authorization": f"Bearer {ADMIN}"})
    assert erased.status_code == 200, erased.text
    assert sorted(twilio.deleted_recordings) == sorted([CALL_REC, VOICEMAIL])
    assert erased.json()["connectors"]["twilio_voice.recordings"] == 2
    again = await client.delete(f"/api/contacts/{CALLER}", headers={"Authorization": f"Bearer {ADMIN}"})
    assert again.status_code == 200  # nothing left to find: safe to repeat


def test_validate_refuses_a_record_with_no_notice_before_it() -> None:
    text = FLOW.replace("  recording: true\n", "")
    found = [d for d in validate(load_flow_text(text, "vm.yaml"), ConnectorRegistry()) if d.severity == "error"]
    assert len(found) == 1, found
    assert (found[0].line, found[0].col) == (10, 13)
    assert "no recording notice" in found[0].message and found[0].hint and "notice: true" in found[0].hint
    knowingly = text.replace("  transcription: true\n", "  transcription: true\n  recording_notice: false\n")
    assert [d for d in validate(load_flow_text(knowingly, "vm.yaml"), ConnectorRegistry()) if d.is_error] == []
    noticed = text.replace("    save: voicemail\n", "    notice: true\n    save: voicemail\n")
    assert [d for d in validate(load_flow_text(noticed, "vm.yaml"), ConnectorRegistry()) if d.is_error] == []


async def test_a_record_states_notice_is_said_before_its_prompt(tmp_path: Path, twilio: FakeTwilio) -> None:
    text = FLOW.replace("  recording: true\n", "")
    text = text.replace("    save: voicemail\n", "    notice: true\n    save: voicemail\n")
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "vm.yaml").write_text(text)
    settings = AppSettings(flows_dir=str(flows), public_url=PUBLIC_URL, default_flow="vm", reload_seconds=0,
                           twilio_account_sid=ACCOUNT_SID, twilio_auth_token=AUTH_TOKEN, twilio_from_number=CLINIC,
                           twilio_api_base=twilio.url)
    runtime = await Runtime.create(settings, ConnectorRegistry(), build_channels(settings))
    web = create_app(settings, runtime=runtime, start_background=False)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=web), base_url="http://testserver") as c:
            root = twiml(await post(c, "/webhooks/twilio/voice", voice_form()))
    finally:
        await runtime.close()
    assert [e.tag for e in root] == ["Say", "Say", "Record"]  # no call recording: only the message is
    assert [e.text for e in root.iter("Say")] == ["This call is recorded.", "Please leave a message after the beep."]


async def test_retention_deletes_the_recordings_of_the_conversations_it_purges(
    app: tuple[httpx.AsyncClient, Runtime], twilio: FakeTwilio,
) -> None:
    import time

    from orchestrator.records.retention import RetentionJob

    client, runtime = app
    root = await call_and_leave_a_message(client)
    callback = root.find("Start/Recording").get("recordingStatusCallback", "")  # type: ignore[union-attr]
    twiml(await post(client, callback, recording_callback(CALL_REC)))
    voice = runtime.channels.get("twilio_voice")
    job = RetentionJob(runtime.store, retention_seconds=3600, delete_recordings=voice.delete_recordings)
    kept = await job.run_once(now=time.time())  # nothing old enough yet
    assert kept is not None and kept.recordings == 0 and twilio.deleted_recordings == []
    report = await job.run_once(now=time.time() + 2 * 3600)
    assert report is not None and report.recordings == 2 and report.records >= 1
    assert sorted(twilio.deleted_recordings) == sorted([CALL_REC, VOICEMAIL])
