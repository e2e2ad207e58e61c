"""Twilio SMS adapter: keywords, MMS, WhatsApp-over-Twilio, statuses, TwiML, segment
budget, and send() through twilio's own Client against the fake Twilio REST server."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from fakes.signing import CALLER, CLINIC, PUBLIC_URL, sms_form, twilio_request
from fakes.twilio import ACCOUNT_SID, AUTH_TOKEN, FakeTwilio
from twilio.twiml.messaging_response import MessagingResponse

from channels.sms_segments import segments
from channels.twilio_sms import TwilioSmsChannel, keyword_kind
from orchestrator.errors import BadRequest, SendError, SignatureError
from orchestrator.flow.schema import Settings
from orchestrator.model import Outbound, OutChoice
from orchestrator.plugins.channels import Address, ChannelAdapter, ReplyContext

PATH = "/webhooks/twilio/sms"


@pytest.fixture
def sms(fake_twilio: FakeTwilio) -> TwilioSmsChannel:
    return TwilioSmsChannel(auth_token=AUTH_TOKEN, account_sid=ACCOUNT_SID, from_number=CLINIC,
                            api_base=fake_twilio.url, public_url=PUBLIC_URL)


def ctx(**settings: object) -> ReplyContext:
    return ReplyContext(settings=Settings(**settings), public_url=PUBLIC_URL)  # type: ignore[arg-type]


def parse_one(sms: TwilioSmsChannel, form: list[tuple[str, str]], path: str = PATH):  # type: ignore[no-untyped-def]
    request = twilio_request(AUTH_TOKEN, path, form)
    sms.verify(request)
    [item] = sms.parse(request)
    return item


def test_is_a_channel_adapter(sms: TwilioSmsChannel) -> None:
    assert isinstance(sms, ChannelAdapter) and sms.capabilities.idiom == "sms"


def test_text_message(sms: TwilioSmsChannel) -> None:
    item = parse_one(sms, sms_form("  Book a cleaning "))
    assert item.kind == "event" and item.event is not None
    assert (item.event.kind, item.event.text, item.event.channel) == ("text", "Book a cleaning", "sms")
    assert item.event.provider_id == "SM" + "b2" * 16
    assert item.address is not None and (item.address.business, item.address.contact) == (CLINIC, CALLER)
    assert item.route_key == CLINIC


def test_tampered_body_refused(sms: TwilioSmsChannel) -> None:
    request = twilio_request(AUTH_TOKEN, PATH, sms_form("hello"))
    request.form = sms_form("hellO")
    with pytest.raises(SignatureError):
        sms.verify(request)


@pytest.mark.parametrize(("body", "kind"), [
    ("STOP", "opt_out"), ("stop", "opt_out"), (" Stop. ", "opt_out"), ("STOPALL", "opt_out"),
    ("unsubscribe", "opt_out"), ("CANCEL", "opt_out"), ("end", "opt_out"), ("QUIT", "opt_out"),
    ("START", "opt_in"), ("unstop", "opt_in"), ("HELP", "help"), ("help", "help"),
    ("stop texting me about the cleaning", None), ("yes", None), ("Book", None),
])
def test_keywords(body: str, kind: str | None) -> None:
    assert keyword_kind(body) == kind


def test_keyword_items(sms: TwilioSmsChannel) -> None:
    assert parse_one(sms, sms_form("Stop")).kind == "opt_out"
    assert parse_one(sms, sms_form("START")).kind == "opt_in"
    assert parse_one(sms, sms_form("help")).kind == "help"
    # Twilio's Advanced Opt-Out already matched a localised keyword
    assert parse_one(sms, sms_form("arret", OptOutType="STOP")).kind == "opt_out"


def test_mms_media(sms: TwilioSmsChannel) -> None:
    form = [(k, v) for k, v in sms_form("") if k != "NumMedia"] + [
        ("NumMedia", "2"), ("MediaUrl0", "https://api.twilio.com/m/ME1"), ("MediaContentType0", "image/jpeg"),
        ("MediaUrl1", "https://api.twilio.com/m/ME2"), ("MediaContentType1", "image/png")]
    item = parse_one(sms, form)
    assert item.event is not None and item.event.kind == "media"
    assert [(m.url, m.content_type) for m in item.event.media] == [
        ("https://api.twilio.com/m/ME1", "image/jpeg"), ("https://api.twilio.com/m/ME2", "image/png")]
    with_caption = [(k, "Here's my X-ray" if k == "Body" else v) for k, v in form]
    item = parse_one(sms, with_caption)
    assert item.event is not None and item.event.kind == "text" and len(item.event.media) == 2


def test_whatsapp_over_twilio_button(sms: TwilioSmsChannel) -> None:
    form = sms_form("Book a visit", sender="whatsapp:+15555550123", to="whatsapp:+14155238886",
                    ButtonPayload="book", ButtonText="Book a visit", ProfileName="Kerry", WaId="15555550123",
                    MessageType="button")
    item = parse_one(sms, form)
    assert item.event is not None and (item.event.kind, item.event.choice_id) == ("choice", "book")
    assert item.event.channel == "sms" and item.event.profile_name == "Kerry"  # TwiML idiom
    assert item.address is not None
    assert (item.address.business, item.address.contact) == ("whatsapp:+14155238886", "+15555550123")
    assert item.route_key == "+14155238886"


def test_location(sms: TwilioSmsChannel) -> None:
    item = parse_one(sms, sms_form("", Latitude="40.7128", Longitude="-74.006", Label="Home"))
    assert item.event is not None and item.event.kind == "location" and item.event.location is not None
    assert (item.event.location.latitude, item.event.location.longitude) == (40.7128, -74.006)


def test_status_callback(sms: TwilioSmsChannel) -> None:
    form = [("AccountSid", ACCOUNT_SID), ("From", CLINIC), ("To", CALLER), ("MessageSid", "SM" + "9" * 32),
            ("MessageStatus", "undelivered"), ("SmsStatus", "undelivered"), ("ErrorCode", "30003"),
            ("ApiVersion", "2010-04-01")]
    item = parse_one(sms, form, f"{PATH}/status")
    assert (item.kind, item.status, item.error_code, item.message_id) == (
        "status", "undelivered", "30003", "SM" + "9" * 32)
    assert item.address is not None and item.address.contact == CALLER


def test_garbage_is_bad_request(sms: TwilioSmsChannel) -> None:
    with pytest.raises(BadRequest):
        sms.parse(twilio_request(AUTH_TOKEN, PATH, [("Body", "hi")]))
    with pytest.raises(BadRequest):
        sms.parse(twilio_request(AUTH_TOKEN, PATH, [(k, "many" if k == "NumMedia" else v) for k, v in sms_form("")]))


# ---- render ---------------------------------------------------------------------------------

MENU = Outbound(kind="ask", text="Book or hours?", choices=[
    OutChoice(id="book", label="Book a visit", dtmf="1"), OutChoice(id="hours", label="Opening hours", dtmf="2")])


def messages_of(body: bytes) -> list[str]:
    root = ET.fromstring(body)
    assert root.tag == "Response"
    assert all(e.tag == "Message" for e in root)
    return [e.text or "" for e in root]


def test_render_joins_a_turn_and_numbers_the_menu(sms: TwilioSmsChannel) -> None:
    rendered = sms.render([Outbound(kind="say", text="Hi! Thanks for texting."), MENU], ctx())
    assert rendered.media_type == "text/xml"
    assert messages_of(rendered.body) == ["Hi! Thanks for texting.\nBook or hours?\n1) Book a visit\n2) Opening hours"]


def test_render_empty_is_no_reply(sms: TwilioSmsChannel) -> None:
    rendered = sms.render([], ctx())
    assert rendered.body.decode() == MessagingResponse().to_xml()
    assert messages_of(sms.render([Outbound(kind="end", outcome="x")], ctx()).body) == []


def test_render_matches_twilio_messaging_response(sms: TwilioSmsChannel) -> None:
    r = MessagingResponse()
    r.message("Fish & <chips> \"now\"")
    assert sms.render([Outbound(kind="say", text="Fish & <chips> \"now\"")], ctx()).body.decode() == r.to_xml()


def test_render_notify_is_not_sent_to_the_contact(sms: TwilioSmsChannel) -> None:
    out = messages_of(sms.render([Outbound(kind="notify", text="New booking", target="+1555"),
                                  Outbound(kind="say", text="Booked!")], ctx()).body)
    assert out == ["Booked!"]


def test_render_media_message(sms: TwilioSmsChannel) -> None:
    root = ET.fromstring(sms.render([Outbound(kind="say", text="Our map", media_url="https://x/map.png")], ctx()).body)
    [message] = list(root)
    assert [(e.tag, e.text) for e in message] == [("Body", "Our map"), ("Media", "https://x/map.png")]


@pytest.mark.parametrize("budget", [1, 2])
def test_render_keeps_each_message_within_the_budget(sms: TwilioSmsChannel, budget: int) -> None:
    long = " ".join(f"We have a great many things to tell you, item {i}." for i in range(20))
    parts = messages_of(sms.render([Outbound(kind="say", text=long)], ctx(sms_segment_budget=budget)).body)
    assert len(parts) > 1
    assert all(segments(p) <= budget for p in parts)
    assert " ".join(parts) == long


# ---- send -----------------------------------------------------------------------------------


async def test_send_through_the_fake(sms: TwilioSmsChannel, fake_twilio: FakeTwilio) -> None:
    sids = await sms.send(Address(business=CLINIC, contact=CALLER), [MENU], ctx())
    assert len(sids) == 1 and sids[0].startswith("SM")
    [sent] = fake_twilio.messages()
    assert sent["To"] == [CALLER] and sent["From"] == [CLINIC]
    assert sent["Body"] == ["Book or hours?\n1) Book a visit\n2) Opening hours"]
    assert sent["StatusCallback"] == [f"{PUBLIC_URL}/webhooks/twilio/sms/status"]


async def test_send_whatsapp_over_twilio(sms: TwilioSmsChannel, fake_twilio: FakeTwilio) -> None:
    await sms.send(Address(business="whatsapp:+14155238886", contact=CALLER), [Outbound(kind="say", text="Hi")], ctx())
    [sent] = fake_twilio.messages()
    assert sent["To"] == [f"whatsapp:{CALLER}"] and sent["From"] == ["whatsapp:+14155238886"]


async def test_send_staff_notification(sms: TwilioSmsChannel, fake_twilio: FakeTwilio) -> None:
    await sms.send(Address(business=CLINIC, contact="+15555550199"),
                   [Outbound(kind="notify", text="New booking: Kerry", target="+15555550199")], ctx())
    [sent] = fake_twilio.messages()
    assert sent["Body"] == ["New booking: Kerry"] and sent["To"] == ["+15555550199"]


@pytest.mark.parametrize(("status", "code", "retryable"), [(400, 21211, False), (503, 20500, True), (429, 20429, True)])
async def test_send_failure_raises(sms: TwilioSmsChannel, fake_twilio: FakeTwilio,
                                   status: int, code: int, retryable: bool) -> None:
    fake_twilio.script(status, {"code": code, "message": "nope", "status": status})
    with pytest.raises(SendError) as info:
        await sms.send(Address(business=CLINIC, contact=CALLER), [Outbound(kind="say", text="Hi")], ctx())
    assert info.value.retryable is retryable and info.value.status == status and info.value.code == str(code)


async def test_send_timeout_is_retryable(fake_twilio: FakeTwilio) -> None:
    sms = TwilioSmsChannel(auth_token=AUTH_TOKEN, account_sid=ACCOUNT_SID, from_number=CLINIC,
                           api_base=fake_twilio.url, timeout_seconds=0.2)
    fake_twilio.delay_seconds = 1.0
    with pytest.raises(SendError) as info:
        await sms.send(Address(business=CLINIC, contact=CALLER), [Outbound(kind="say", text="Hi")], ctx())
    assert info.value.retryable
