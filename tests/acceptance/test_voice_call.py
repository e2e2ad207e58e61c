"""Acceptance: a caller phones the clinic (Twilio Voice). Real app, shipped dental flow,
webhooks signed with Twilio's RequestValidator, TwiML parsed element by element."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from fakes.signing import CALL_SID, CALLER, CLINIC, PUBLIC_URL, sms_form, voice_form
from fakes.twilio import FakeTwilio
from litestar import Litestar
from litestar.testing import AsyncTestClient

from orchestrator.settings import AppSettings
from orchestrator.web.app import create_app

from .conftest import conversation_of, sms_texts, twilio_post, twilio_post_url, twiml, wait_for

IN_PROGRESS = voice_form(status="in-progress")


async def call(client: AsyncTestClient[Litestar]) -> ET.Element:
    return twiml(await twilio_post(client, "/webhooks/twilio/voice", voice_form()))


def gather(root: ET.Element) -> ET.Element:
    found = root.find("Gather")
    assert found is not None, ET.tostring(root)
    return found


async def answer(client: AsyncTestClient[Litestar], root: ET.Element, **fields: str) -> ET.Element:
    """Answer the Gather in `root` at its own absolute action URL (speech and/or digits)."""
    return twiml(await twilio_post_url(client, gather(root).get("action", ""), [*IN_PROGRESS, *fields.items()]))


def spoken(root: ET.Element) -> str:
    return " ".join((e.text or "") for e in root.iter("Say"))


async def test_incoming_call_greets_and_gathers_speech_and_keypad_with_hints(
    client: AsyncTestClient[Litestar],
) -> None:
    root = await call(client)
    assert [e.tag for e in root] == ["Say", "Gather"]
    say = root[0]
    assert say.text == "Thanks for calling Bright Smile Dental."  # the flow's voice override
    assert say.get("language") == "en-US" and say.get("voice")
    g = root[1]
    assert g.get("input") == "speech dtmf"
    assert g.get("numDigits") == "1"  # the menu's choices are single digits
    assert g.get("actionOnEmptyResult") == "true"  # silence comes back to us for a reprompt
    assert g.get("action", "").startswith(f"{PUBLIC_URL}/webhooks/twilio/voice/gather?")
    hints = [h.strip() for h in g.get("hints", "").split(",")]
    assert {"book", "appointment", "hours", "talk"} <= set(hints)
    prompt = spoken(g)
    assert "press 1" in prompt and "Book a visit" in prompt


async def test_free_text_ask_has_no_numdigits_and_speech_advances(client: AsyncTestClient[Litestar]) -> None:
    root = await answer(client, await call(client), SpeechResult="I'd like to book an appointment",
                        Confidence="0.91")
    g = gather(root)
    assert spoken(g) == "Great! What's your name?"
    assert g.get("numDigits") is None  # a name is not typed on the keypad


async def test_low_confidence_speech_is_asked_again(client: AsyncTestClient[Litestar]) -> None:
    name_q = await answer(client, await call(client), Digits="1")
    again = await answer(client, name_q, SpeechResult="Maria Lopez", Confidence="0.12")
    assert "didn't catch" in spoken(again)
    assert "Maria" not in spoken(again)
    ok = await answer(client, again, SpeechResult="Maria Lopez", Confidence="0.88")
    assert "Thanks, Maria Lopez" in spoken(ok)


async def test_silence_is_reprompted_once_then_the_call_ends_politely_with_a_text_back(
    client: AsyncTestClient[Litestar], fake_twilio: FakeTwilio,
) -> None:
    root = await answer(client, await call(client), Digits="1")
    root = await answer(client, root)  # nothing said (actionOnEmptyResult)
    assert "What name should I put the booking under" in spoken(root)
    root = await answer(client, root)  # a second silence in a row: nobody is there
    assert root.find("Gather") is None and root[-1].tag == "Hangup"
    assert "can't hear anything" in spoken(root)
    await wait_for(lambda: any(m["To"] == [CALLER] for m in fake_twilio.messages()))
    [text_back] = [m for m in fake_twilio.messages() if m["To"] == [CALLER]]
    assert "Reply here to carry on" in text_back["Body"][0]
    conv = await conversation_of(client, CALLER)
    assert conv["conversation"].get("outcome") == "silence"


async def test_agent_keypad_zero_dials_front_desk_and_no_answer_takes_a_message(
    client: AsyncTestClient[Litestar],
) -> None:
    name_q = await answer(client, await call(client), Digits="1")
    root = await answer(client, name_q, Digits="0")  # global intent from inside another question
    dial = root.find("Dial")
    assert dial is not None
    assert [n.text for n in dial.iter("Number")] == ["+15555550199"]
    assert dial.get("action", "").startswith(f"{PUBLIC_URL}/webhooks/twilio/voice/")
    root = twiml(await twilio_post_url(client, dial.get("action", ""),
                                       [*IN_PROGRESS, ("DialCallStatus", "no-answer")]))
    record = root.find("Record")
    assert record is not None, ET.tostring(root)
    assert "leave your name" in spoken(root)
    assert record.get("maxLength") == "120"
    assert record.get("action", "").startswith(PUBLIC_URL)
    url = "https://api.twilio.com/2010-04-01/Accounts/AC1/Recordings/RE" + "7" * 32
    root = twiml(await twilio_post_url(client, record.get("action", ""), [
        *IN_PROGRESS, ("RecordingUrl", url), ("RecordingSid", "RE" + "7" * 32), ("RecordingDuration", "14")]))
    assert "call you back" in spoken(root)
    assert root[-1].tag == "Hangup"
    conv = await conversation_of(client, CALLER)
    assert conv["conversation"].get("outcome") == "message_taken"
    assert url in str(conv["variables"].get("voicemail")) or url in str(conv["transcript"])


STAFF_LEG = [("AccountSid", "AC" + "0" * 31 + "1"), ("CallSid", "CA" + "f0" * 16), ("CallStatus", "in-progress"),
             ("Direction", "outbound-dial"), ("From", CALLER), ("To", "+15555550199"), ("ParentCallSid", CALL_SID)]


async def test_a_transfer_is_warm_the_person_answering_hears_who_and_accepts_with_1(
    client: AsyncTestClient[Litestar],
) -> None:
    name_q = await answer(client, await call(client), Digits="1")
    root = await answer(client, name_q, SpeechResult="Maria Lopez", Confidence="0.9")
    root = await answer(client, root, Digits="0")  # the front desk, please
    dial = root.find("Dial")
    assert dial is not None and dial.get("timeout") == "20"
    number = dial.find("Number")
    assert number is not None and number.text == "+15555550199"
    whisper_url = number.get("url", "")
    assert whisper_url.startswith(f"{PUBLIC_URL}/webhooks/twilio/voice/whisper?")
    heard = twiml(await twilio_post_url(client, whisper_url, STAFF_LEG))  # what the person answering hears
    prompt = heard.find("Gather")
    assert prompt is not None and prompt.get("numDigits") == "1" and prompt.get("actionOnEmptyResult") == "true"
    assert spoken(prompt) == "Call from Maria Lopez. Press 1 to take the call."
    accepted = twiml(await twilio_post_url(client, prompt.get("action", ""), [*STAFF_LEG, ("Digits", "1")]))
    assert list(accepted) == []  # an empty answer: Twilio connects the two
    after = twiml(await twilio_post_url(client, dial.get("action", ""),
                                        [*IN_PROGRESS, ("DialCallStatus", "completed")]))
    assert after.find("Record") is None
    conv = await conversation_of(client, CALLER)
    assert conv["conversation"].get("outcome") == "handed_off"


async def test_a_transfer_nobody_accepts_takes_the_no_answer_route(client: AsyncTestClient[Litestar]) -> None:
    root = await answer(client, await call(client), Digits="3")
    dial = root.find("Dial")
    assert dial is not None
    number = dial.find("Number")
    assert number is not None
    heard = twiml(await twilio_post_url(client, number.get("url", ""), STAFF_LEG))
    prompt = heard.find("Gather")
    assert prompt is not None and spoken(prompt).startswith("Call from ")
    declined = twiml(await twilio_post_url(client, prompt.get("action", ""), [*STAFF_LEG, ("Digits", "")]))
    assert declined[-1].tag == "Hangup"  # the staff leg ends: the caller is not connected
    after = twiml(await twilio_post_url(client, dial.get("action", ""),
                                        [*IN_PROGRESS, ("DialCallStatus", "completed")]))
    assert after.find("Record") is not None  # no_answer: the voicemail


async def test_redelivered_gather_callback_gets_same_twiml_and_advances_once(
    client: AsyncTestClient[Litestar],
) -> None:
    first = await call(client)
    action = gather(first).get("action", "")
    a = await twilio_post_url(client, action, [*IN_PROGRESS, ("Digits", "1")])
    b = await twilio_post_url(client, action, [*IN_PROGRESS, ("Digits", "1")])
    ra, rb = twiml(a), twiml(b)
    assert spoken(ra) == spoken(rb) == "Great! What's your name?"  # same answer; action nonce may differ
    root = rb
    nxt = await answer(client, root, SpeechResult="Maria Lopez", Confidence="0.9")
    assert "Thanks, Maria Lopez. What is the visit for?" in spoken(nxt)


async def test_consent_notice_is_spoken_first_when_recording_enabled(
    flows_copy: Path, settings: AppSettings,
) -> None:
    path = flows_copy / "dental_booking.yaml"
    path.write_text(path.read_text().replace("recording: false", "recording: true"))
    async with AsyncTestClient(create_app(settings)) as client:
        root = await call(client)
        says = [e for e in root.iter("Say")]
        assert "record" in (says[0].text or "").lower(), ET.tostring(root)
        assert "Thanks for calling" not in (says[0].text or "")
        text = spoken(root)
        assert text.lower().index("record") < text.index("Thanks for calling")
        # said once per call, not on every turn
        nxt = await answer(client, root, Digits="1")
        assert "record" not in spoken(nxt).lower()


async def test_no_consent_notice_when_recording_disabled(client: AsyncTestClient[Litestar]) -> None:
    root = await call(client)
    assert "record" not in spoken(root).lower()


async def test_hang_up_mid_booking_continues_by_sms_to_a_booking(
    client: AsyncTestClient[Litestar], fake_twilio: FakeTwilio,
) -> None:
    root = await answer(client, await call(client), Digits="1")
    root = await answer(client, root, SpeechResult="Maria Lopez", Confidence="0.9")
    assert "What is the visit for" in spoken(root)
    status = await twilio_post(client, "/webhooks/twilio/voice/status",
                               [*voice_form(status="completed"), ("CallDuration", "41")])
    assert status.status_code == 200
    await wait_for(lambda: len(fake_twilio.messages()) >= 1)
    [sent] = fake_twilio.messages()
    assert sent["To"] == [CALLER] and sent["From"] == [CLINIC]
    body = sent["Body"][0]
    assert "What is the visit for?" in body and "1) Cleaning" in body  # the same question, SMS idiom
    # the caller answers by SMS: the same conversation (name remembered), finishing with a booking
    texts = sms_texts(await twilio_post(client, "/webhooks/twilio/sms", sms_form("cleaning", sid="SM" + "1" * 32)))
    assert "When would you like to come in" in texts[0]
    texts = sms_texts(await twilio_post(client, "/webhooks/twilio/sms",
                                        sms_form("tomorrow at 10am", sid="SM" + "2" * 32)))
    assert "1) " in texts[0], texts
    texts = sms_texts(await twilio_post(client, "/webhooks/twilio/sms", sms_form("1", sid="SM" + "3" * 32)))
    assert "You're booked for" in texts[0] and "Maria Lopez" in texts[0]
    conv = await conversation_of(client, CALLER)
    assert conv["conversation"].get("outcome") == "booked"
    assert set(conv["conversation"]["channels"]) >= {"voice", "sms"}


async def test_hang_up_at_a_statement_or_after_the_end_sends_nothing(
    client: AsyncTestClient[Litestar], fake_twilio: FakeTwilio,
) -> None:
    await call(client)
    await twilio_post(client, "/webhooks/twilio/voice/status", [*voice_form(status="completed")])
    await asyncio.sleep(0.3)
    # hung up at the very first menu: on_hangup text_back continues by SMS (one message), not more
    assert len(fake_twilio.messages()) <= 1
    again = await twilio_post(client, "/webhooks/twilio/voice/status", [*voice_form(status="completed")])
    assert again.status_code == 200
    await asyncio.sleep(0.2)
    assert len(fake_twilio.messages()) <= 1  # a redelivered status callback sends nothing twice


async def test_missed_call_is_texted_back(client: AsyncTestClient[Litestar], fake_twilio: FakeTwilio) -> None:
    """A forwarded call nobody answered (no-answer / busy, the bot never spoke): the
    missed-call text-back small businesses buy starts by SMS."""
    form = voice_form(call_sid="CA" + "e" * 32, status="no-answer")
    response = await twilio_post(client, "/webhooks/twilio/voice/status", form)
    assert response.status_code == 200
    await wait_for(lambda: len(fake_twilio.messages()) >= 1, timeout=3)
    body = fake_twilio.messages()[0]["Body"][0]
    assert "missed your call" in body


async def test_unsigned_or_forged_voice_webhook_is_403(client: AsyncTestClient[Litestar]) -> None:
    from urllib.parse import urlencode

    body = urlencode(voice_form()).encode()
    headers: dict[str, Any] = {"Content-Type": "application/x-www-form-urlencoded"}
    assert (await client.post("/webhooks/twilio/voice", content=body, headers=headers)).status_code == 403
    headers["X-Twilio-Signature"] = "bm90IGEgc2lnbmF0dXJl"
    assert (await client.post("/webhooks/twilio/voice", content=body, headers=headers)).status_code == 403
    assert await client.app.state.runtime.store.load(f"{CLINIC}:{CALLER}") is None
    _ = CALL_SID
