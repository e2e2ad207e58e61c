"""WhatsApp Cloud API adapter: handshake, HMAC over the raw body, every item of a batch in
Meta's real shapes, and send() through heyoo against the fake Graph API."""

from __future__ import annotations

import json

import pytest
from fakes.graph import PHONE_NUMBER_ID, WA_TOKEN, FakeGraph
from fakes.signing import (
    APP_SECRET,
    VERIFY_TOKEN,
    WA_PHONE_ID,
    WA_USER,
    meta_body,
    wa_envelope,
    wa_text,
    wa_value,
    whatsapp_request,
)

from channels import _http
from channels.whatsapp import GRAPH_VERSION, WhatsAppChannel, heyoo_client
from orchestrator.errors import BadRequest, ConfigError, SendError, SignatureError
from orchestrator.flow.schema import Settings
from orchestrator.model import Outbound, OutChoice
from orchestrator.plugins.channels import Address, ChannelAdapter, InboundRequest, ReplyContext


@pytest.fixture
def wa(graph: FakeGraph) -> WhatsAppChannel:
    return WhatsAppChannel(app_secret=APP_SECRET, verify_token=VERIFY_TOKEN, token=WA_TOKEN,
                           phone_number_id=PHONE_NUMBER_ID, api_base=graph.url)


def ctx(within_window: bool = True, **settings: object) -> ReplyContext:
    return ReplyContext(settings=Settings(**settings), within_window=within_window)  # type: ignore[arg-type]


def parse(wa: WhatsAppChannel, payload: object) -> list:  # type: ignore[type-arg]
    request = whatsapp_request(payload)
    wa.verify(request)
    return wa.parse(request)


def test_is_a_channel_adapter(wa: WhatsAppChannel) -> None:
    assert isinstance(wa, ChannelAdapter)
    caps = wa.capabilities
    assert (caps.max_buttons, caps.button_title_len, caps.max_list_rows, caps.sync_reply) == (3, 20, 10, False)


@pytest.mark.parametrize(("missing", "arg"), [("WHATSAPP_APP_SECRET", "app_secret"),
                                             ("WHATSAPP_VERIFY_TOKEN", "verify_token"), ("WHATSAPP_TOKEN", "token")])
def test_refuses_to_start_without_secrets(missing: str, arg: str) -> None:
    kwargs = {"app_secret": APP_SECRET, "verify_token": VERIFY_TOKEN, "token": WA_TOKEN, arg: ""}
    with pytest.raises(ConfigError, match=missing):
        WhatsAppChannel(**kwargs)


# ---- handshake and signature ------------------------------------------------------------------


def get_request(query: dict[str, str]) -> InboundRequest:
    return InboundRequest(method="GET", url="https://bot/webhooks/whatsapp", path="/webhooks/whatsapp",
                          headers={}, query=query, body=b"")


def test_handshake(wa: WhatsAppChannel) -> None:
    ok = wa.handshake(get_request({"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN,
                                   "hub.challenge": "1158201444"}))
    assert (ok.status_code, ok.body, ok.media_type) == (200, b"1158201444", "text/plain")
    for query in ({"hub.mode": "subscribe", "hub.verify_token": "nope", "hub.challenge": "1"},
                  {"hub.mode": "unsubscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1"}, {}):
        with pytest.raises(SignatureError):
            wa.handshake(get_request(query))


def test_signature_over_raw_bytes_with_unicode_escapes(wa: WhatsAppChannel) -> None:
    payload = wa_envelope(wa_value([wa_text("Olá, quero marcar 🦷")]))
    raw = meta_body(payload)
    assert b"\\u" in raw  # Meta's serialisation escapes non-ASCII
    [item] = parse(wa, payload)
    assert item.event.text == "Olá, quero marcar 🦷"
    # re-encoding the JSON differently breaks the signature: verify the bytes, never re-encode
    other = json.dumps(payload, ensure_ascii=False).encode()
    request = whatsapp_request(payload, body=raw)
    request.body = other
    with pytest.raises(SignatureError):
        wa.verify(request)


@pytest.mark.parametrize("tamper", ["flip", "secret", "missing", "prefix", "sha1"])
def test_bad_signatures(wa: WhatsAppChannel, tamper: str) -> None:
    raw = meta_body(wa_envelope(wa_value([wa_text("hi")])))
    request = whatsapp_request(None, body=raw, secret="wrong" if tamper == "secret" else APP_SECRET)
    if tamper == "flip":
        request.body = raw[:40] + bytes([raw[40] ^ 1]) + raw[41:]
    elif tamper == "missing":
        request.headers = {}
    elif tamper == "prefix":
        request.headers = {"x-hub-signature-256": request.headers["x-hub-signature-256"][7:]}
    elif tamper == "sha1":
        request.headers = {"x-hub-signature-256": "sha1=" + request.headers["x-hub-signature-256"][7:]}
    with pytest.raises(SignatureError):
        wa.verify(request)


# ---- parse ----------------------------------------------------------------------------------


def test_text(wa: WhatsAppChannel) -> None:
    [item] = parse(wa, wa_envelope(wa_value([wa_text("Book a visit")])))
    assert item.kind == "event"
    assert (item.event.kind, item.event.text, item.event.channel) == ("text", "Book a visit", "whatsapp")
    assert item.event.profile_name == "Kerry Fisher"
    assert item.event.provider_id.startswith("wamid.")
    assert (item.address.business, item.address.contact) == (WA_PHONE_ID, f"+{WA_USER}")
    assert item.route_key == WA_PHONE_ID


def test_every_item_of_a_batch(wa: WhatsAppChannel) -> None:
    """2 entries x 2 changes x 3 messages (+ a status per change) are all parsed, in order."""
    def value(e: int, c: int) -> dict:  # type: ignore[type-arg]
        msgs = [wa_text(f"m{e}{c}{i}", wamid=f"wamid.{e}{c}{i}") for i in range(3)]
        return wa_value(msgs, statuses=[{"id": f"wamid.out{e}{c}", "status": "delivered", "timestamp": "1",
                                         "recipient_id": WA_USER}])
    payload = {"object": "whatsapp_business_account", "entry": [
        {"id": "1", "changes": [{"field": "messages", "value": value(e, c)} for c in range(2)]} for e in range(2)]}
    items = parse(wa, payload)
    texts = [i.event.text for i in items if i.kind == "event"]
    assert texts == [f"m{e}{c}{i}" for e in range(2) for c in range(2) for i in range(3)]
    assert [i.message_id for i in items if i.kind == "status"] == ["wamid.out00", "wamid.out01", "wamid.out10",
                                                                     "wamid.out11"]


def test_interactive_replies_and_template_button(wa: WhatsAppChannel) -> None:
    base = {"from": WA_USER, "timestamp": "1764072000", "context": {"from": "15550783881", "id": "wamid.prev"}}
    button = {**base, "id": "wamid.b", "type": "interactive",
              "interactive": {"type": "button_reply", "button_reply": {"id": "book", "title": "Book a visit"}}}
    row = {**base, "id": "wamid.l", "type": "interactive", "interactive": {
        "type": "list_reply", "list_reply": {"id": "slot-2", "title": "Thu 26 Nov, 10:00", "description": "x"}}}
    template = {**base, "id": "wamid.t", "type": "button", "button": {"payload": "confirm", "text": "Yes"}}
    items = parse(wa, wa_envelope(wa_value([button, row, template])))
    assert [(i.event.kind, i.event.choice_id) for i in items] == [
        ("choice", "book"), ("choice", "slot-2"), ("choice", "confirm")]


def test_location_media_reaction_unsupported(wa: WhatsAppChannel) -> None:
    base = {"from": WA_USER, "timestamp": "1764072000"}
    msgs = [
        {**base, "id": "wamid.1", "type": "location",
         "location": {"latitude": 40.7128, "longitude": -74.006, "name": "Clinic", "address": "1 Main St"}},
        {**base, "id": "wamid.2", "type": "image", "image": {
            "id": "1479537139650973", "mime_type": "image/jpeg", "sha256": "abc=", "caption": "my tooth"}},
        {**base, "id": "wamid.3", "type": "audio", "audio": {"id": "998", "mime_type": "audio/ogg; codecs=opus",
                                                               "voice": True}},
        {**base, "id": "wamid.4", "type": "reaction", "reaction": {"message_id": "wamid.x", "emoji": "👍"}},
        {**base, "id": "wamid.5", "type": "reaction", "reaction": {"message_id": "wamid.x"}},
        {**base, "id": "wamid.6", "type": "unsupported", "errors": [
            {"code": 131051, "title": "Message type unknown", "message": "Message type unknown"}],
         "unsupported": {"type": "edit"}},
        {**base, "id": "wamid.7", "type": "unknown", "errors": [{"code": 131051}]},
        {**base, "id": "wamid.8", "type": "system",
         "system": {"body": "changed number", "type": "user_changed_number"}},
    ]
    loc, image, audio, react, unreact, unsupported, unknown, system = parse(wa, wa_envelope(wa_value(msgs)))
    assert loc.event.kind == "location" and loc.event.location.latitude == 40.7128
    assert loc.event.location.name == "Clinic"
    assert (image.event.kind, image.event.text, image.event.media[0].id) == ("text", "my tooth", "1479537139650973")
    assert audio.event.kind == "media" and audio.event.media[0].content_type.startswith("audio/ogg")
    assert (react.event.kind, react.event.text) == ("reaction", "👍")
    assert unreact.kind == "ignore"
    assert unsupported.kind == "event" and unsupported.event.kind == "media"
    assert unknown.kind == "event" and unknown.event.kind == "media"
    assert system.kind == "ignore"


def test_username_user_without_from(wa: WhatsAppChannel) -> None:
    msg = {"from_user_id": "US.13491208655302741918", "id": "wamid.u", "timestamp": "1", "type": "text",
           "text": {"body": "hi"}}
    contacts = [{"profile": {"name": "Ana", "username": "ana.b"}, "user_id": "US.13491208655302741918"}]
    [item] = parse(wa, wa_envelope(wa_value([msg], contacts=contacts)))
    assert item.address.contact == "US.13491208655302741918"
    assert item.event.profile_name == "Ana"


def test_statuses_with_errors(wa: WhatsAppChannel) -> None:
    statuses = [
        {"id": "wamid.out1", "status": "read", "timestamp": "1764072001", "recipient_id": WA_USER},
        {"id": "wamid.out2", "status": "failed", "timestamp": "1764072002", "recipient_id": WA_USER,
         "errors": [{"code": 131047, "title": "Re-engagement message", "message": "Re-engagement message",
                     "error_data": {"details": "More than 24 hours have passed"}, "href": "https://x"}]},
        {"id": "wamid.out3", "status": "sent", "timestamp": "1", "recipient_id": WA_USER,
         "pricing": {"billable": True, "pricing_model": "PMP", "category": "utility", "type": "regular"}},
    ]
    items = parse(wa, wa_envelope(wa_value(statuses=statuses)))
    assert [(i.kind, i.message_id, i.status, i.error_code) for i in items] == [
        ("status", "wamid.out1", "read", None), ("status", "wamid.out2", "failed", "131047"),
        ("status", "wamid.out3", "sent", None)]


@pytest.mark.parametrize("body", [b"", b"{", b'{"entry": [', b"[1,2]", b'{"object": "x"}', b"\xff\xfe"])
def test_malformed_bodies_are_bad_requests(wa: WhatsAppChannel, body: bytes) -> None:
    request = whatsapp_request(None, body=body)
    wa.verify(request)
    with pytest.raises(BadRequest):
        wa.parse(request)


def test_an_item_naming_no_contact_is_skipped_the_others_parsed(wa: WhatsAppChannel) -> None:
    body = b'{"entry":[{"changes":[{"value":{"messages":[{"type":"text"},' \
           b'{"from":"1631","id":"wamid.ok","type":"text","text":{"body":"hi"}}]}}]}]}'
    request = whatsapp_request(None, body=body)
    wa.verify(request)
    [item] = wa.parse(request)
    assert item.event.text == "hi" and item.address.contact == "+1631"


@pytest.mark.parametrize(("message", "why"), [
    ({"type": "location", "location": {"name": "no coordinates"}}, "location"),
    ({"type": "location", "location": {"latitude": 91, "longitude": 0}}, "outside"),
    ({"type": "image", "image": "str"}, "'image' is str"),
    ({"type": "text", "text": {"body": "\ud800 hi"}}, "lone surrogate"),
    ({"type": "text", "text": {"body": {"an": "object"}}}, "text.body is dict"),
    ({"type": "text", "text": "just a string"}, "'text' is str"),
    ({"type": "interactive", "interactive": {"button_reply": {"id": {"x": 1}}}}, "the reply's id"),
    ({"type": "reaction", "reaction": {"emoji": ["x"]}}, "reaction.emoji"),
])
def test_unreadable_content_is_an_unreadable_answer_from_its_contact(
    wa: WhatsAppChannel, message: dict, why: str, caplog: pytest.LogCaptureFixture,  # type: ignore[type-arg]
) -> None:
    [item] = parse(wa, wa_envelope(wa_value([{"from": WA_USER, "id": "wamid.odd", **message}])))
    assert item.kind == "event" and item.address.contact == f"+{WA_USER}"
    assert item.event.kind == "media" and item.event.media[0].content_type == "application/x-whatsapp-unreadable"
    assert why in caplog.text and WA_USER not in caplog.text and "wamid.odd" not in caplog.text


def test_an_object_as_a_title_keeps_the_choice(wa: WhatsAppChannel) -> None:
    msg = {"from": WA_USER, "id": "wamid.t", "type": "interactive",
           "interactive": {"type": "button_reply", "button_reply": {"id": "book", "title": {"x": 1}}}}
    [item] = parse(wa, wa_envelope(wa_value([msg], contacts=[{"profile": {"name": {"x": 1}}, "wa_id": WA_USER}])))
    assert (item.event.kind, item.event.choice_id, item.event.text, item.event.profile_name) == (
        "choice", "book", None, None)


def test_other_fields_and_junk_are_skipped(wa: WhatsAppChannel) -> None:
    payload = {"object": "whatsapp_business_account", "entry": [
        {"id": "1", "changes": [{"field": "account_update", "value": {"event": "x"}}, "junk", {"value": None}]},
        "junk"]}
    assert parse(wa, payload) == []


# ---- send -----------------------------------------------------------------------------------

TO = Address(business=PHONE_NUMBER_ID, contact=f"+{WA_USER}")


def choices(n: int, suffix: str = "") -> list[OutChoice]:
    return [OutChoice(id=f"c{i}", label=f"Option {i}{suffix}") for i in range(n)]


async def test_send_text(wa: WhatsAppChannel, graph: FakeGraph) -> None:
    ids = await wa.send(TO, [Outbound(kind="say", text="Hello")], ctx())
    assert ids == ["wamid.FAKE00000001"]
    [req] = graph.requests
    assert req.path == f"/{GRAPH_VERSION}/{PHONE_NUMBER_ID}/messages"
    assert req.headers["authorization"] == f"Bearer {WA_TOKEN}"
    body = req.json()
    assert (body["to"], body["type"], body["text"]["body"]) == (WA_USER, "text", "Hello")


async def test_send_buttons_list_and_numbered(wa: WhatsAppChannel, graph: FakeGraph) -> None:
    await wa.send(TO, [Outbound(kind="ask", text="Pick", choices=choices(3, " with a long title"))], ctx())
    await wa.send(TO, [Outbound(kind="ask", text="Pick", choices=choices(10))], ctx())
    await wa.send(TO, [Outbound(kind="ask", text="Pick", choices=choices(11))], ctx())
    buttons, listing, numbered = graph.sent()
    assert buttons["type"] == "interactive" and buttons["interactive"]["type"] == "button"
    titles = [b["reply"]["title"] for b in buttons["interactive"]["action"]["buttons"]]
    assert len(titles) == 3 and all(len(t) <= 20 for t in titles)
    assert [b["reply"]["id"] for b in buttons["interactive"]["action"]["buttons"]] == ["c0", "c1", "c2"]
    assert listing["interactive"]["type"] == "list"
    rows = listing["interactive"]["action"]["sections"][0]["rows"]
    assert [r["id"] for r in rows] == [f"c{i}" for i in range(10)]
    assert all(len(r["title"]) <= 24 for r in rows)
    assert numbered["type"] == "text" and "11) Option 10" in numbered["text"]["body"]


async def test_outside_window_uses_the_template(wa: WhatsAppChannel, graph: FakeGraph) -> None:
    c = ctx(within_window=False, whatsapp_template="appointment_follow_up", whatsapp_template_language="en_US")
    await wa.send(TO, [Outbound(kind="say", text="We missed you")], c)
    [body] = graph.sent()
    assert body["type"] == "template"
    assert body["template"]["name"] == "appointment_follow_up"
    assert body["template"]["language"] == {"code": "en_US"}
    assert body["template"]["components"][0]["parameters"][0]["text"] == "We missed you"
    with pytest.raises(SendError, match="whatsapp_template"):
        await wa.send(TO, [Outbound(kind="say", text="x")], ctx(within_window=False))


@pytest.mark.parametrize(("status", "payload", "retryable", "code"), [
    (400, {"error": {"message": "(#131030) Recipient phone number not in allowed list", "type": "OAuthException",
                     "code": 131030, "fbtrace_id": "X"}}, False, "131030"),
    (500, {"error": {"message": "Unknown error", "code": 1}}, True, "1"),
    (429, {"error": {"message": "Rate", "code": 130429}}, True, "130429"),
    (502, b"<html>Bad gateway</html>", True, None),  # heyoo would raise JSONDecodeError here
])
async def test_errors_become_exceptions(wa: WhatsAppChannel, graph: FakeGraph, status: int, payload: object,
                                        retryable: bool, code: str | None) -> None:
    graph.script(status, payload)
    with pytest.raises(SendError) as info:
        await wa.send(TO, [Outbound(kind="say", text="Hello")], ctx())
    assert (info.value.status, info.value.retryable, info.value.code) == (status, retryable, code)


async def test_timeout(graph: FakeGraph) -> None:
    wa = WhatsAppChannel(app_secret=APP_SECRET, verify_token=VERIFY_TOKEN, token=WA_TOKEN,
                         phone_number_id=PHONE_NUMBER_ID, api_base=graph.url, timeout_seconds=0.2)
    graph.delay_seconds = 1.0
    with pytest.raises(SendError) as info:
        await wa.send(TO, [Outbound(kind="say", text="Hello")], ctx())
    assert info.value.retryable


async def test_sends_reuse_one_connection_and_carry_heyoos_payloads(
    wa: WhatsAppChannel, graph: FakeGraph, monkeypatch: pytest.MonkeyPatch,
) -> None:
    opened: list[object] = []
    made = _http._Connection.connection_made
    monkeypatch.setattr(_http._Connection, "connection_made", lambda conn, t: (opened.append(t), made(conn, t)))
    await wa.send(TO, [Outbound(kind="say", text="One"), Outbound(kind="say", text="Two ü")], ctx())
    await wa.send(TO, [Outbound(kind="say", text="Three")], ctx())
    assert [b["text"]["body"] for b in graph.sent()] == ["One", "Two ü", "Three"]
    assert graph.sent()[0] == {"messaging_product": "whatsapp", "recipient_type": "individual", "to": WA_USER,
                               "type": "text", "text": {"preview_url": False, "body": "One"}}
    assert all(r.headers["content-type"] == "application/json" for r in graph.requests)
    assert len(opened) == 1  # one keep-alive connection for the three calls
    await wa.close()


async def test_a_proxied_graph_url_is_sent_through_requests(graph: FakeGraph, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", graph.url)  # the fake Graph API stands in for the proxy
    wa = WhatsAppChannel(app_secret=APP_SECRET, verify_token=VERIFY_TOKEN, token=WA_TOKEN,
                         phone_number_id=PHONE_NUMBER_ID, api_base="http://graph.example.invalid")
    assert await wa.send(TO, [Outbound(kind="say", text="Hello")], ctx()) == ["wamid.FAKE00000001"]
    [req] = graph.requests
    assert req.path == f"/{GRAPH_VERSION}/{PHONE_NUMBER_ID}/messages"
    assert req.headers["host"] == "graph.example.invalid"  # a proxy request: the target's host


def test_heyoo_urls_point_at_the_base_and_heyoo_is_untouched(graph: FakeGraph) -> None:
    import heyoo

    client = heyoo_client(WA_TOKEN, PHONE_NUMBER_ID, graph.url, "v23.0", 1.0)
    assert client.url == f"{graph.url}/v23.0/{PHONE_NUMBER_ID}/messages"
    assert client.v15_base_url == client.base_url == f"{graph.url}/v23.0"
    client.mark_as_read("wamid.x")
    assert graph.requests[-1].path == f"/v23.0/{PHONE_NUMBER_ID}/messages"
    import requests

    assert heyoo.requests is requests  # our timeout shim is per client, not a global patch
