"""Twilio Voice adapter: signatures, every webhook kind, and TwiML checked element by element."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from urllib.parse import parse_qs, urlsplit

import pytest
from fakes.signing import CALL_SID, CALLER, CLINIC, PUBLIC_URL, twilio_request, voice_form
from hypothesis import given, settings
from hypothesis import strategies as st
from twilio.twiml.voice_response import Dial, Gather, VoiceResponse

from channels._twilio import _ATTR_ESCAPES, _TEXT_ESCAPES, _attr_value, element, response, xml_text
from channels.twilio_voice import TwilioVoiceChannel
from orchestrator.errors import BadRequest, ConfigError, SignatureError
from orchestrator.flow.schema import Settings
from orchestrator.model import Outbound, OutChoice
from orchestrator.plugins.channels import ChannelAdapter, ReplyContext

TOKEN = "voice-auth-token-0123456789"


@pytest.fixture
def voice() -> TwilioVoiceChannel:
    return TwilioVoiceChannel(auth_token=TOKEN, public_url=PUBLIC_URL)


def ctx(**settings: object) -> ReplyContext:
    return ReplyContext(settings=Settings(**settings), public_url=PUBLIC_URL)  # type: ignore[arg-type]


def test_is_a_channel_adapter(voice: TwilioVoiceChannel) -> None:
    assert isinstance(voice, ChannelAdapter)
    assert voice.capabilities.idiom == "voice" and voice.capabilities.sync_reply


def test_missing_token_refuses_to_start() -> None:
    with pytest.raises(ConfigError, match="TWILIO_AUTH_TOKEN"):
        TwilioVoiceChannel(auth_token="")


# ---- verify ---------------------------------------------------------------------------------


def test_valid_signature_passes(voice: TwilioVoiceChannel) -> None:
    voice.verify(twilio_request(TOKEN, "/webhooks/twilio/voice", voice_form()))


def test_signature_with_blank_values_and_query(voice: TwilioVoiceChannel) -> None:
    form = [*voice_form(status="in-progress"), ("Digits", "1"), ("FinishedOnKey", "")]
    voice.verify(twilio_request(TOKEN, "/webhooks/twilio/voice/gather", form, query="step=ab12cd34"))


@pytest.mark.parametrize("tamper", ["token", "body", "url", "missing", "blank-dropped"])
def test_bad_signatures_refused(voice: TwilioVoiceChannel, tamper: str) -> None:
    form = [*voice_form(), ("FinishedOnKey", "")]
    request = twilio_request("wrong-token" if tamper == "token" else TOKEN, "/webhooks/twilio/voice", form)
    if tamper == "body":
        request.form = [(k, "+15555550124" if k == "From" else v) for k, v in form]
    elif tamper == "url":
        request.url = request.url.replace("bot.example.com", "evil.example.com")
    elif tamper == "missing":
        request.headers = {}
    elif tamper == "blank-dropped":
        request.form = [(k, v) for k, v in form if v]
    with pytest.raises(SignatureError):
        voice.verify(request)


def test_port_variants_accepted(voice: TwilioVoiceChannel) -> None:
    signed = twilio_request(TOKEN, "/webhooks/twilio/voice", voice_form(), base="https://bot.example.com")
    signed.url = "https://bot.example.com:443/webhooks/twilio/voice"
    voice.verify(signed)


def test_algorithm_header_cannot_weaken_the_check(voice: TwilioVoiceChannel) -> None:
    request = twilio_request("shared-key", "/webhooks/twilio/voice", voice_form())
    request.headers = {**request.headers, "x-twilio-webhooks-signature-settings": "algorithm=HMAC_SHA256"}
    with pytest.raises(SignatureError):
        voice.verify(request)


# ---- parse ----------------------------------------------------------------------------------


def test_incoming_call_is_start(voice: TwilioVoiceChannel) -> None:
    [item] = voice.parse(twilio_request(TOKEN, "/webhooks/twilio/voice", voice_form(CallerName="KERRY F")))
    assert item.kind == "event" and item.event is not None
    assert item.event.kind == "start" and item.event.channel == "voice"
    assert item.event.provider_id == CALL_SID
    assert item.event.profile_name == "KERRY F"
    assert item.address is not None
    assert (item.address.business, item.address.contact) == (CLINIC, CALLER)
    assert item.route_key == CLINIC


def test_outbound_call_swaps_addresses(voice: TwilioVoiceChannel) -> None:
    form = [(k, v) for k, v in voice_form() if k not in ("From", "To", "Direction")]
    form += [("From", CLINIC), ("To", CALLER), ("Direction", "outbound-api")]
    [item] = voice.parse(twilio_request(TOKEN, "/webhooks/twilio/voice", form))
    assert item.address is not None and item.address.contact == CALLER and item.address.business == CLINIC


def test_gather_speech_digits_empty(voice: TwilioVoiceChannel) -> None:
    path = "/webhooks/twilio/voice/gather"
    speech = [*voice_form(status="in-progress"), ("SpeechResult", "Book a visit."), ("Confidence", "0.91")]
    [s] = voice.parse(twilio_request(TOKEN, path, speech, query="step=s1"))
    assert s.event is not None and (s.event.kind, s.event.text, s.event.confidence) == ("speech", "Book a visit.", 0.91)
    assert s.event.provider_id == f"{CALL_SID}:gather:s1"
    digits = [*voice_form(status="in-progress"), ("Digits", "2"), ("FinishedOnKey", "")]
    [d] = voice.parse(twilio_request(TOKEN, path, digits, query="step=s2"))
    assert d.event is not None and (d.event.kind, d.event.text) == ("digits", "2")
    [e] = voice.parse(twilio_request(TOKEN, path, voice_form(status="in-progress"), query="step=s3"))
    assert e.event is not None and e.event.kind == "empty" and e.event.provider_id == f"{CALL_SID}:gather:s3"


def test_recording_action_and_callback_share_a_dedupe_id(voice: TwilioVoiceChannel) -> None:
    rec = [("RecordingUrl", "https://api.twilio.com/2010-04-01/Accounts/AC1/Recordings/RE1"),
           ("RecordingSid", "RE" + "1" * 32), ("RecordingDuration", "14")]
    [a] = voice.parse(twilio_request(TOKEN, "/webhooks/twilio/voice/record",
                                     [*voice_form(status="completed"), *rec, ("Digits", "hangup")], query="step=r"))
    [b] = voice.parse(twilio_request(TOKEN, "/webhooks/twilio/voice/recording",
                                     [("AccountSid", "AC1"), ("CallSid", CALL_SID), *rec,
                                      ("RecordingStatus", "completed"), ("RecordingSource", "RecordVerb")]))
    assert a.event is not None and b.event is not None
    assert a.event.kind == b.event.kind == "recording"
    assert a.event.provider_id == b.event.provider_id
    assert a.event.duration_seconds == 14.0 and a.event.recording_url == rec[0][1]
    [c] = voice.parse(twilio_request(TOKEN, "/webhooks/twilio/voice/recording",
                                     [("CallSid", CALL_SID), ("RecordingStatus", "in-progress")]))
    assert c.kind == "ignore"


@pytest.mark.parametrize("status", ["completed", "no-answer", "busy", "failed"])
def test_dial_action(voice: TwilioVoiceChannel, status: str) -> None:
    form = [*voice_form(status="in-progress"), ("DialCallStatus", status), ("DialBridged", "false")]
    [item] = voice.parse(twilio_request(TOKEN, "/webhooks/twilio/voice/dial", form, query="step=d"))
    assert item.event is not None and (item.event.kind, item.event.text) == ("dial", status)


@pytest.mark.parametrize(("status", "kind"), [("completed", "event"), ("no-answer", "event"), ("busy", "event"),
                                              ("ringing", "ignore"), ("in-progress", "ignore")])
def test_status_callback(voice: TwilioVoiceChannel, status: str, kind: str) -> None:
    form = [*voice_form(status=status), ("CallDuration", "33"), ("CallbackSource", "call-progress-events")]
    [item] = voice.parse(twilio_request(TOKEN, "/webhooks/twilio/voice/status", form))
    assert item.kind == kind
    if kind == "event":
        assert item.event is not None and (item.event.kind, item.event.text) == ("hangup", status)
        assert item.event.provider_id == f"{CALL_SID}:status:{status}"


def test_no_callsid_is_bad_request(voice: TwilioVoiceChannel) -> None:
    with pytest.raises(BadRequest):
        voice.parse(twilio_request(TOKEN, "/webhooks/twilio/voice", [("From", CALLER)]))


# ---- render ---------------------------------------------------------------------------------


def twiml(voice: TwilioVoiceChannel, messages: list[Outbound], c: ReplyContext | None = None) -> ET.Element:
    rendered = voice.render(messages, c or ctx())
    assert rendered.media_type == "text/xml" and rendered.status_code == 200
    root = ET.fromstring(rendered.body)
    assert root.tag == "Response"
    return root


MENU = Outbound(kind="ask", text="Book, hours, or talk?", state="menu", choices=[
    OutChoice(id="book", label="Book a visit", dtmf="1", match=["book", "appointment"]),
    OutChoice(id="hours", label="Opening hours", dtmf="2", match=["hours"]),
])


def test_say_then_ask_renders_gather(voice: TwilioVoiceChannel) -> None:
    root = twiml(voice, [Outbound(kind="say", text="Thanks for calling."), MENU], ctx(language="en-GB"))
    say, gather = list(root)
    assert say.tag == "Say" and say.text == "Thanks for calling."
    assert say.get("voice") == "Polly.Joanna" and say.get("language") == "en-GB"
    assert gather.tag == "Gather"
    assert gather.get("input") == "speech dtmf"
    assert gather.get("actionOnEmptyResult") == "true"
    assert gather.get("numDigits") == "1"
    assert gather.get("language") == "en-GB"
    hints = gather.get("hints", "").split(", ")
    assert {"Book a visit", "book", "appointment", "Opening hours", "hours"} <= set(hints)
    action = urlsplit(gather.get("action", ""))
    assert f"{action.scheme}://{action.netloc}{action.path}" == f"{PUBLIC_URL}/webhooks/twilio/voice/gather"
    assert parse_qs(action.query)["step"][0]
    [prompt] = list(gather)
    assert prompt.tag == "Say"
    assert prompt.text == "Book, hours, or talk? For Book a visit, press 1. For Opening hours, press 2."


def test_every_gather_has_its_own_step(voice: TwilioVoiceChannel) -> None:
    steps = {twiml(voice, [MENU])[0].get("action") for _ in range(5)}
    assert len(steps) == 5


def test_free_input_has_no_num_digits(voice: TwilioVoiceChannel) -> None:
    [gather] = list(twiml(voice, [Outbound(kind="ask", text="What's your name?", input="name")]))
    assert gather.get("numDigits") is None and gather.get("hints") is None
    [gather] = list(twiml(voice, [Outbound(kind="ask", text="Your number?", input="phone")]))
    assert gather.get("finishOnKey") == "#"


def test_two_digit_choices_have_no_num_digits(voice: TwilioVoiceChannel) -> None:
    choices = [OutChoice(id=str(i), label=f"Slot {i}") for i in range(11)]
    [gather] = list(twiml(voice, [Outbound(kind="ask", text="Pick", choices=choices)]))
    assert gather.get("numDigits") is None


def test_handoff_dials_with_action(voice: TwilioVoiceChannel) -> None:
    say, dial = list(twiml(voice, [Outbound(kind="handoff", text="Please hold.", target="+15555550199")]))
    assert say.text == "Please hold."
    assert dial.tag == "Dial" and dial.get("timeout") == "20"
    assert dial.get("action", "").startswith(f"{PUBLIC_URL}/webhooks/twilio/voice/dial?step=")
    [number] = list(dial)
    assert number.tag == "Number" and number.text == "+15555550199"


def test_record(voice: TwilioVoiceChannel) -> None:
    say, record = list(twiml(voice, [Outbound(kind="record", text="After the beep.", max_seconds=120)],
                             ctx(transcription=True)))
    assert say.text == "After the beep."
    assert record.tag == "Record" and record.get("maxLength") == "120"
    assert record.get("action", "").startswith(f"{PUBLIC_URL}/webhooks/twilio/voice/record?step=")
    assert record.get("recordingStatusCallback") == f"{PUBLIC_URL}/webhooks/twilio/voice/recording"
    assert record.get("transcribe") == "true"


def test_end_hangs_up_and_notify_is_not_said(voice: TwilioVoiceChannel) -> None:
    root = twiml(voice, [Outbound(kind="notify", text="New booking", target="+15555550199"),
                         Outbound(kind="say", text="Goodbye!"), Outbound(kind="end", outcome="booked")])
    assert [e.tag for e in root] == ["Say", "Hangup"]


def test_consent_notice_first_on_the_first_turn_when_recording(voice: TwilioVoiceChannel) -> None:
    c = ReplyContext(settings=Settings(recording=True, consent_notice="We record calls."), public_url=PUBLIC_URL,
                     event_kind="start")
    root = twiml(voice, [Outbound(kind="say", text="Hello."), MENU], c)
    assert [e.text for e in root if e.tag == "Say"] == ["We record calls.", "Hello."]
    c.event_kind = "speech"
    assert [e.text for e in twiml(voice, [Outbound(kind="say", text="Hello.")], c)] == ["Hello."]
    assert [e.text for e in twiml(voice, [Outbound(kind="say", text="Hi.")], ctx())] == ["Hi."]


def test_hostile_text_is_escaped(voice: TwilioVoiceChannel) -> None:
    text = 'Tom & "Jerry" <b>\x07</b>\n'
    [say] = list(twiml(voice, [Outbound(kind="say", text=text)]))
    assert say.text == 'Tom & "Jerry" <b></b>\n'


_SPECIAL = '&<>"\n\r\t\x00\x07\x0b\x1f\ufffe\uffff\x7f\xa0\u2028'


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.one_of(st.sampled_from(_SPECIAL), st.characters()), max_size=60))
def test_escaping_fast_path_gives_the_translate_result(value: str) -> None:
    assert xml_text(value) == value.translate(_TEXT_ESCAPES)
    assert _attr_value(value) == value.translate(_ATTR_ESCAPES)


def test_twiml_builder_matches_twilio() -> None:
    """The string builder is byte-identical to twilio's VoiceResponse for the verbs we use."""
    ours = response([
        element("Say", 'A & B <"c">\n', voice="Polly.Joanna", language="en-US"),
        element("Gather", children=[element("Say", "x", voice="alice")], action="https://h/p?a=1&b=2",
                actionOnEmptyResult=True, input="speech dtmf", numDigits=1, hints="a, b", language="en-US"),
        element("Dial", children=[element("Number", "+1555")], action="/d", timeout=20),
        element("Record", action="/r", maxLength=120, recordingStatusCallback="/rc", transcribe=None),
        element("Hangup"),
    ]).decode()
    r = VoiceResponse()
    r.say('A & B <"c">\n', voice="Polly.Joanna", language="en-US")
    g = Gather(action="https://h/p?a=1&b=2", action_on_empty_result=True, input="speech dtmf", num_digits=1,
               hints="a, b", language="en-US")
    g.say("x", voice="alice")
    r.append(g)
    d = Dial(action="/d", timeout=20)
    d.number("+1555")
    r.append(d)
    r.record(action="/r", max_length=120, recording_status_callback="/rc")
    r.hangup()
    assert ours == r.to_xml()


def test_a_spanish_turn_speaks_and_listens_in_spanish(voice: TwilioVoiceChannel) -> None:
    """SPEC §9: each message carries its language and voice; the menu is said in it."""
    notice = "Esta llamada puede ser grabada con fines de calidad y formación."
    menu = Outbound(kind="ask", text="¿Qué servicio desea?", state="service", language="es-ES", voice="Polly.Lucia",
                    choices=[OutChoice(id="cut", label="Corte", dtmf="1"), OutChoice(id="beard", label="Barba")])
    consent = Outbound(kind="say", text=notice, language="es-ES", voice="Polly.Lucia")
    c = ReplyContext(settings=Settings(recording=True, voice="Polly.Joanna"), public_url=PUBLIC_URL,
                     event_kind="start")
    say, start, gather = list(twiml(voice, [consent, menu], c))  # the English notice is not added
    assert (say.text, say.get("language"), say.get("voice")) == (notice, "es-ES", "Polly.Lucia")
    assert start.tag == "Start" and start[0].tag == "Recording"  # the call is recorded after the notice (#20)
    assert gather.get("language") == "es-ES"
    [asked] = list(gather)
    assert asked.text == "¿Qué servicio desea? Para Corte, pulse 1. Para Barba, pulse 2."
    assert (asked.get("language"), asked.get("voice")) == ("es-ES", "Polly.Lucia")
