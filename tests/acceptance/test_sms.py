"""Acceptance: an SMS sender texts the clinic (Twilio Messaging). Signed webhooks, reply
TwiML parsed as XML; proactive sends captured by the fake Twilio REST server."""

from __future__ import annotations

import asyncio
import re
import uuid
from pathlib import Path

import pytest
from fakes.graph import FakeGraph
from fakes.signing import CALLER, CLINIC, sms_form
from fakes.twilio import FakeTwilio
from litestar import Litestar
from litestar.testing import AsyncTestClient

from channels.sms_segments import segments
from orchestrator.web.app import create_app

from .conftest import ADMIN_TOKEN, conversation_of, make_settings, sms_texts, twilio_post, wait_for

OPTED_OUT = "unsubscribed"


async def text(client: AsyncTestClient[Litestar], body: str, **extra: str) -> list[str]:
    return sms_texts(await twilio_post(client, "/webhooks/twilio/sms",
                                       sms_form(body, sid="SM" + uuid.uuid4().hex, **extra)))


async def test_choices_render_as_numbered_list_and_number_keyword_label_all_work(
    client: AsyncTestClient[Litestar],
) -> None:
    [first] = await text(client, "hi")
    assert first.endswith("1) Book a visit\n2) Opening hours\n3) Talk to someone\n4) Change or cancel a visit")
    for answer in ("2", "hours", "Opening Hours!"):
        # each answer at the menu: restart the menu through the global 'restart' intent
        got = await text(client, answer)
        assert "We're open Monday to Friday" in got[0], (answer, got)
        assert await text(client, "main menu")


async def test_small_typo_in_a_choice_is_understood(client: AsyncTestClient[Litestar]) -> None:
    await text(client, "hi")
    assert await text(client, "appointmnet") == ["Great! What's your name?"]


@pytest.mark.parametrize("word", ["STOP", "stop", "Stop.", " STOPALL ", "unsubscribe", "Cancel", "END", "quit"])
async def test_stop_keywords_opt_out_case_insensitive_and_nothing_more_is_sent(
    client: AsyncTestClient[Litestar], word: str,
) -> None:
    await text(client, "hi")
    [ack] = await text(client, word)
    assert OPTED_OUT in ack and "START" in ack
    assert await text(client, "book") == []  # no reply at all while opted out
    assert await client.app.state.runtime.store.is_opted_out(CALLER)


@pytest.mark.parametrize("word", ["START", "start", "Unstop"])
async def test_start_keywords_opt_back_in_and_the_conversation_continues(
    client: AsyncTestClient[Litestar], word: str,
) -> None:
    await text(client, "hi")
    await text(client, "STOP")
    [ack] = await text(client, word)
    assert "subscribed again" in ack
    assert await text(client, "book") == ["Great! What's your name?"]


async def test_twilio_opt_out_type_parameter_is_honoured(client: AsyncTestClient[Litestar]) -> None:
    await text(client, "hi")
    [ack] = await text(client, "arrêtez", OptOutType="STOP")  # a localised keyword Twilio recognised
    assert OPTED_OUT in ack
    assert await text(client, "book") == []
    [back] = await text(client, "volver", OptOutType="START")
    assert "subscribed again" in back
    [helped] = await text(client, "ayuda", OptOutType="HELP")
    assert "STOP" in helped


async def test_help_answers_with_the_business_help_text_naming_the_business(
    client: AsyncTestClient[Litestar],
) -> None:
    await text(client, "hi")
    [helped] = await text(client, "HELP")
    assert "Bright Smile Dental" in helped  # who is texting you
    assert "STOP" in helped
    assert re.search(r"\(?\d{3}\)?[ .-]?\d{3}[ .-]?\d{4}", helped)  # how to reach a person
    # HELP does not disturb the conversation
    assert await text(client, "1") == ["Great! What's your name?"]


async def test_opted_out_contact_is_refused_outbound(client: AsyncTestClient[Litestar],
                                                      fake_twilio: FakeTwilio) -> None:
    await text(client, "hi")
    await text(client, "STOP")
    response = await client.post("/api/conversations", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                                 json={"flow": "dental_booking", "channel": "sms", "contact": CALLER})
    assert response.status_code == 409
    assert fake_twilio.messages() == []


async def test_outbound_start_by_sms_goes_through_twilio_rest(client: AsyncTestClient[Litestar],
                                                               fake_twilio: FakeTwilio) -> None:
    response = await client.post("/api/conversations", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                                 json={"flow": "dental_booking", "channel": "sms", "contact": "+15555550142"})
    assert response.status_code == 201, response.text
    await wait_for(lambda: len(fake_twilio.messages()) >= 1)
    [sent] = fake_twilio.messages()
    assert sent["To"] == ["+15555550142"] and sent["From"] == [CLINIC]
    assert "1) Book a visit" in sent["Body"][0]
    # the contact answers by SMS and the same conversation continues
    reply = await twilio_post(client, "/webhooks/twilio/sms", sms_form("1", sid="SM" + "9" * 32,
                                                                        sender="+15555550142"))
    assert sms_texts(reply) == ["Great! What's your name?"]


LONG = """\
flow: long
start: a
settings: {sms_segment_budget: 2}
states:
  a:
    say: "%s"
    end: done
"""


@pytest.mark.parametrize("sentence,per_segment", [
    ("Sentence number {i} tells you something about our clinic.", 153),
    ("Satz {i} über unsere Praxis 😀.", 67),
], ids=["gsm7", "ucs2"])
async def test_long_reply_splits_at_sentences_within_the_segment_budget(
    tmp_path: Path, fake_twilio: FakeTwilio, graph: FakeGraph, sentence: str, per_segment: int,
) -> None:
    body = " ".join(sentence.format(i=i) for i in range(30))
    flows = tmp_path / "long_flows"
    flows.mkdir()
    (flows / "long.yaml").write_text(LONG % body)
    async with AsyncTestClient(create_app(make_settings(flows, fake_twilio, graph, default_flow=None))) as client:
        parts = await text(client, "hi")
    assert len(parts) > 1
    for part in parts:
        assert segments(part) <= 2, (segments(part), part)
        assert part.endswith("."), part  # cut at a sentence boundary
    assert " ".join(parts) == body  # nothing lost or reordered
    assert sum(len(p) for p in parts) >= len(body) - len(parts)
    _ = per_segment


async def test_mms_media_is_recorded_in_the_transcript(client: AsyncTestClient[Litestar]) -> None:
    await text(client, "hi")
    url = "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MM1/Media/ME1"
    form = [(k, v) for k, v in sms_form("", sid="SM" + uuid.uuid4().hex) if k != "NumMedia"]  # Twilio sends it once
    await twilio_post(client, "/webhooks/twilio/sms",
                      [*form, ("NumMedia", "1"), ("MediaUrl0", url), ("MediaContentType0", "image/jpeg")])
    conv = await conversation_of(client, CALLER)
    flat = str(conv["transcript"])
    assert url in flat and "image/jpeg" in flat


async def test_whatsapp_over_twilio_uses_the_same_webhook(client: AsyncTestClient[Litestar]) -> None:
    [first] = await text(client, "hi", From="whatsapp:+15555550124", To=f"whatsapp:{CLINIC}")
    assert "Thanks for contacting Bright Smile Dental" in first
    assert "1) Book a visit" in first


async def test_unsigned_sms_is_403_and_nothing_stored(client: AsyncTestClient[Litestar]) -> None:
    from urllib.parse import urlencode

    response = await client.post("/webhooks/twilio/sms", content=urlencode(sms_form("hi")).encode(),
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 403
    assert await client.app.state.runtime.store.load(f"{CLINIC}:{CALLER}") is None


TIMER_FLOW = """\
flow: nudge
start: a
vars: {who: there}
settings: {no_reply_timeout: 1s, max_retries: 1}
states:
  a:
    ask: "What's your name?"
    input: name
    save: who
    next: b
    on: {fail: b}
  b:
    say: "Thanks {{ who }}"
    end: done
"""


async def test_no_reply_sends_one_reminder_then_ends_abandoned_and_opted_out_get_nothing(
    tmp_path: Path, fake_twilio: FakeTwilio, graph: FakeGraph,
) -> None:
    flows = tmp_path / "timer_flows"
    flows.mkdir()
    (flows / "nudge.yaml").write_text(TIMER_FLOW)
    settings = make_settings(flows, fake_twilio, graph, default_flow=None)
    async with AsyncTestClient(create_app(settings)) as client:
        assert await text(client, "hi") == ["What's your name?"]
        await wait_for(lambda: len(fake_twilio.messages()) >= 1, timeout=6)
        reminder = fake_twilio.messages()[0]
        assert reminder["To"] == [CALLER] and "What's your name?" in reminder["Body"][0]
        await asyncio.sleep(2.5)  # the second timeout ends it quietly
        assert len(fake_twilio.messages()) == 1
        conv = await conversation_of(client, CALLER)
        assert conv["conversation"].get("outcome") == "abandoned"
        # an opted-out contact gets no reminder at all
        other = "+15555550166"
        await text(client, "hi", From=other)
        await text(client, "STOP", From=other)
        await asyncio.sleep(2.5)
        assert [m for m in fake_twilio.messages() if m["To"] == [other]] == []
