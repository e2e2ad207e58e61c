"""Fuzzed webhook bodies: a signed but arbitrary payload is parsed or refused with
BadRequest (-> 400), never any other exception (-> it would be a 500 path)."""

from __future__ import annotations

from typing import Any

import msgspec
from fakes.signing import APP_SECRET, VERIFY_TOKEN, twilio_request, wa_envelope, wa_value, whatsapp_request
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from channels.twilio_sms import TwilioSmsChannel
from channels.twilio_voice import TwilioVoiceChannel
from channels.whatsapp import WhatsAppChannel
from orchestrator.errors import BadRequest

TOKEN = "fuzz-auth-token-0123456789"
WA = WhatsAppChannel(app_secret=APP_SECRET, verify_token=VERIFY_TOKEN, token="t" * 12)
SMS = TwilioSmsChannel(auth_token=TOKEN, account_sid="AC" + "0" * 32)
VOICE = TwilioVoiceChannel(auth_token=TOKEN)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["from", "id", "type", "text", "body", "interactive", "button_reply", "location",
                         "latitude", "longitude", "statuses", "messages", "errors", "code", "reaction", "emoji",
                         "image", "caption", "metadata", "phone_number_id", "from_user_id", "value", "changes"]),
        inner, max_size=5),
    max_leaves=25,
)
TWILIO_KEYS = ["CallSid", "MessageSid", "From", "To", "Body", "Digits", "SpeechResult", "Confidence", "NumMedia",
               "MediaUrl0", "Latitude", "Longitude", "ButtonPayload", "OptOutType", "CallStatus", "DialCallStatus",
               "RecordingSid", "RecordingStatus", "MessageStatus", "Direction"]


def wa_parse(payload: Any) -> None:
    request = whatsapp_request(payload)
    WA.verify(request)
    try:
        WA.parse(request)
    except BadRequest:
        pass


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_whatsapp_arbitrary_json(payload: Any) -> None:
    wa_parse(payload)


message_like = st.fixed_dictionaries(
    {"from": json_values, "id": st.text(min_size=1, max_size=8) | json_values,
     "type": st.sampled_from(["text", "interactive", "button", "location", "image", "audio", "reaction",
                              "unsupported", "unknown", "system", "request_welcome", "order"]) | json_values},
    optional={"text": json_values, "interactive": json_values, "button": json_values, "location": json_values,
              "image": json_values, "audio": json_values, "reaction": json_values, "from_user_id": json_values},
)


@settings(max_examples=300, deadline=None)
@given(st.lists(message_like | json_values, max_size=3), st.lists(json_values, max_size=3))
def test_whatsapp_arbitrary_items_in_a_real_envelope(messages: list[Any], statuses: list[Any]) -> None:
    """In a real envelope no item, however odd, refuses the batch: each is parsed or skipped."""
    request = whatsapp_request(wa_envelope(wa_value(messages=messages, statuses=statuses)))  # type: ignore[arg-type]
    WA.verify(request)
    for item in WA.parse(request):
        msgspec.msgpack.encode(item)  # storable: no lone surrogate, no object where a string belongs
        if item.event is not None:
            assert item.event.text is None or isinstance(item.event.text, str)
            assert item.event.choice_id is None or isinstance(item.event.choice_id, str)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200))
def test_whatsapp_arbitrary_bytes(body: bytes) -> None:
    request = whatsapp_request(None, body=body)
    try:
        WA.parse(request)
    except BadRequest:
        pass


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(TWILIO_KEYS), st.text(max_size=12)), max_size=12),
       st.sampled_from(["/webhooks/twilio/voice", "/webhooks/twilio/voice/gather", "/webhooks/twilio/voice/record",
                        "/webhooks/twilio/voice/recording", "/webhooks/twilio/voice/dial",
                        "/webhooks/twilio/voice/status", "/webhooks/twilio/sms", "/webhooks/twilio/sms/status"]))
def test_twilio_arbitrary_forms(form: list[tuple[str, str]], path: str) -> None:
    adapter = VOICE if "/voice" in path else SMS
    request = twilio_request(TOKEN, path, form)
    adapter.verify(request)
    try:
        adapter.parse(request)
    except BadRequest:
        pass
