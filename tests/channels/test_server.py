"""The litestar app end to end: signed webhooks in, TwiML / Graph sends out, and every bad
input answered 4xx or politely (never 500) with nothing stored."""

from __future__ import annotations

import asyncio
import gc
import json
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from fakes.graph import PHONE_NUMBER_ID, WA_TOKEN, FakeGraph
from fakes.signing import (
    APP_SECRET,
    CALLER,
    CLINIC,
    PUBLIC_URL,
    VERIFY_TOKEN,
    WA_USER,
    meta_body,
    meta_signature,
    sms_form,
    twilio_signature,
    voice_form,
    wa_envelope,
    wa_text,
    wa_value,
)
from fakes.twilio import ACCOUNT_SID, AUTH_TOKEN, FakeTwilio
from litestar import Litestar
from litestar.testing import AsyncTestClient

from channels.twilio_sms import TwilioSmsChannel
from orchestrator.errors import ConfigError, LockTimeout, StoreUnavailable
from orchestrator.plugins.channels import ChannelRegistry
from orchestrator.settings import AppSettings
from orchestrator.web.app import GC_GEN0_THRESHOLD, MAX_BODY_BYTES, build_channels, create_app

FLOW = """\
flow: pizza
title: Pizza Place
start: hello
states:
  hello:
    say: "Hello from Pizza Place."
    next: size
  size:
    ask: "Which size?"
    choices:
      small: {label: Small, dtmf: "1", match: [small]}
      large: {label: Large, dtmf: "2", match: [large]}
    save: size
    next: name
    on: {fail: sorry}
  name:
    ask: "Your name?"
    input: text
    save: who
    next: done
    on: {fail: sorry}
  sorry:
    say: "Sorry, call us instead."
    end: failed
  done:
    say: "Thanks {{ who }}, one {{ size }} pizza."
    end: ordered
"""


@pytest.fixture
def settings(tmp_path: Path, fake_twilio: FakeTwilio, graph: FakeGraph) -> AppSettings:
    (tmp_path / "pizza.yaml").write_text(FLOW)
    return AppSettings(
        flows_dir=str(tmp_path), public_url=PUBLIC_URL, timer_poll_seconds=0.05,
        twilio_account_sid=ACCOUNT_SID, twilio_auth_token=AUTH_TOKEN, twilio_from_number=CLINIC,
        twilio_api_base=fake_twilio.url, whatsapp_token=WA_TOKEN, whatsapp_phone_number_id=PHONE_NUMBER_ID,
        whatsapp_app_secret=APP_SECRET, whatsapp_verify_token=VERIFY_TOKEN, whatsapp_api_base=graph.url,
    )


@pytest.fixture
async def client(settings: AppSettings) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(create_app(settings)) as c:
        yield c


def twilio_post(client: AsyncTestClient[Litestar], path: str, form: list[tuple[str, str]], query: str = "",
                *, token: str = AUTH_TOKEN, base: str = PUBLIC_URL) -> Any:
    url = f"{path}?{query}" if query else path
    sig = twilio_signature(token, f"{base}{url}", form)
    return client.post(url, content=urlencode(form).encode(),
                       headers={"X-Twilio-Signature": sig, "Content-Type": "application/x-www-form-urlencoded"})


def meta_post(client: AsyncTestClient[Litestar], body: bytes, signature: str | None = None) -> Any:
    return client.post("/webhooks/whatsapp", content=body, headers={
        "X-Hub-Signature-256": signature if signature is not None else meta_signature(body),
        "Content-Type": "application/json"})


def messages(response: Any) -> list[str]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/xml")
    root = ET.fromstring(response.content)
    return [m.text or "" for m in root if m.tag == "Message"]


async def stored(client: AsyncTestClient[Litestar], sid: str) -> bytes | None:
    return await client.app.state.runtime.store.load(sid)  # type: ignore[no-any-return]


# ---- happy paths ------------------------------------------------------------------------------


async def test_sms_conversation(client: AsyncTestClient[Litestar]) -> None:
    first = messages(await twilio_post(client, "/webhooks/twilio/sms", sms_form("hi", sid="SM1")))
    assert first == ["Hello from Pizza Place.\nWhich size?\n1) Small\n2) Large"]
    assert messages(await twilio_post(client, "/webhooks/twilio/sms", sms_form("2", sid="SM2"))) == ["Your name?"]
    last = messages(await twilio_post(client, "/webhooks/twilio/sms", sms_form("Kerry", sid="SM3")))
    assert last == ["Thanks Kerry, one large pizza."]


async def test_duplicate_delivery_answers_the_same_and_advances_once(client: AsyncTestClient[Litestar]) -> None:
    await twilio_post(client, "/webhooks/twilio/sms", sms_form("hi", sid="SM1"))
    a, b = await asyncio.gather(*(twilio_post(client, "/webhooks/twilio/sms", sms_form("small", sid="SM2"))
                                  for _ in range(2)))
    assert messages(a) == messages(b) == ["Your name?"]
    assert messages(await twilio_post(client, "/webhooks/twilio/sms", sms_form("Ann", sid="SM3"))) == [
        "Thanks Ann, one small pizza."]


async def test_voice_retry_gets_byte_identical_twiml(client: AsyncTestClient[Litestar]) -> None:
    """Twilio retries a Gather callback it got no answer to: the copy advances nothing and gets the
    same TwiML, action URLs (their step nonce) included, as the first answer."""
    first = await twilio_post(client, "/webhooks/twilio/voice", voice_form())
    query = ET.fromstring(first.content)[1].get("action", "").split("?", 1)[1]
    form = [*voice_form(status="in-progress"), ("Digits", "1"), ("FinishedOnKey", "")]
    a = await twilio_post(client, "/webhooks/twilio/voice/gather", form, query=query)
    b = await twilio_post(client, "/webhooks/twilio/voice/gather", form, query=query)
    assert a.status_code == b.status_code == 200
    assert a.content == b.content and b"step=" in a.content
    assert query.encode() not in a.content  # the next question has a new nonce


async def test_voice_call(client: AsyncTestClient[Litestar]) -> None:
    response = await twilio_post(client, "/webhooks/twilio/voice", voice_form())
    assert response.status_code == 200
    root = ET.fromstring(response.content)
    assert [e.tag for e in root] == ["Say", "Gather"]
    action = root[1].get("action", "")
    assert action.startswith(f"{PUBLIC_URL}/webhooks/twilio/voice/gather?step=")
    query = action.split("?", 1)[1]
    form = [*voice_form(status="in-progress"), ("Digits", "1"), ("FinishedOnKey", "")]
    response = await twilio_post(client, "/webhooks/twilio/voice/gather", form, query=query)
    [gather] = list(ET.fromstring(response.content))
    assert gather.tag == "Gather" and gather[0].text == "Your name?"
    status = await twilio_post(client, "/webhooks/twilio/voice/status",
                               [*voice_form(status="completed"), ("CallDuration", "20")])
    assert status.status_code == 200


async def test_whatsapp_handshake(client: AsyncTestClient[Litestar]) -> None:
    ok = await client.get("/webhooks/whatsapp", params={
        "hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1158201444"})
    assert (ok.status_code, ok.text) == (200, "1158201444")
    bad = await client.get("/webhooks/whatsapp", params={
        "hub.mode": "subscribe", "hub.verify_token": "guess", "hub.challenge": "1"})
    assert bad.status_code == 403


async def wait_for(predicate: Any, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_whatsapp_message_is_answered_through_the_graph_api(
    client: AsyncTestClient[Litestar], graph: FakeGraph,
) -> None:
    response = await meta_post(client, meta_body(wa_envelope(wa_value([wa_text("hi")]))))
    assert (response.status_code, response.content) == (200, b"")
    await wait_for(lambda: len(graph.sent()) >= 2)
    text, buttons = graph.sent()[:2]
    assert text["text"]["body"] == "Hello from Pizza Place." and text["to"] == WA_USER
    assert buttons["interactive"]["type"] == "button"
    assert [b["reply"]["id"] for b in buttons["interactive"]["action"]["buttons"]] == ["small", "large"]
    # the button reply continues the conversation
    reply = {"from": WA_USER, "id": "wamid.2", "timestamp": "1", "type": "interactive",
             "interactive": {"type": "button_reply", "button_reply": {"id": "large", "title": "Large"}}}
    assert (await meta_post(client, meta_body(wa_envelope(wa_value([reply]))))).status_code == 200
    await wait_for(lambda: len(graph.sent()) >= 3)
    assert graph.sent()[2]["text"]["body"] == "Your name?"


async def test_unknown_whatsapp_type_gets_a_polite_answer(client: AsyncTestClient[Litestar], graph: FakeGraph) -> None:
    await meta_post(client, meta_body(wa_envelope(wa_value([wa_text("hi")]))))
    await wait_for(lambda: len(graph.sent()) >= 2)
    odd = {"from": WA_USER, "id": "wamid.odd", "timestamp": "1", "type": "unsupported",
           "errors": [{"code": 131051, "title": "Message type unknown"}], "unsupported": {"type": "edit"}}
    response = await meta_post(client, meta_body(wa_envelope(wa_value([odd]))))
    assert response.status_code == 200
    await wait_for(lambda: len(graph.sent()) >= 3)
    assert graph.sent()[2]["type"] in ("interactive", "text")  # asked again, not silence


# ---- refusals ---------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["no-signature", "wrong-token", "flipped-byte", "seen-url", "json-body"])
async def test_twilio_refusals_store_nothing(client: AsyncTestClient[Litestar], case: str) -> None:
    form = sms_form("hi", sid="SMbad")
    body = urlencode(form).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded",
               "X-Twilio-Signature": twilio_signature(AUTH_TOKEN, f"{PUBLIC_URL}/webhooks/twilio/sms", form)}
    if case == "no-signature":
        del headers["X-Twilio-Signature"]
    elif case == "wrong-token":
        headers["X-Twilio-Signature"] = twilio_signature("nope", f"{PUBLIC_URL}/webhooks/twilio/sms", form)
    elif case == "flipped-byte":
        body = body[:30] + bytes([body[30] ^ 1]) + body[31:]
    elif case == "seen-url":  # signed for the internal URL, not the public one Twilio uses
        headers["X-Twilio-Signature"] = twilio_signature(AUTH_TOKEN, "http://testserver.local/webhooks/twilio/sms",
                                                         form)
    elif case == "json-body":
        body, headers["Content-Type"] = json.dumps(dict(form)).encode(), "application/json"
    response = await client.post("/webhooks/twilio/sms", content=body, headers=headers)
    assert response.status_code == 403
    assert await stored(client, f"{CLINIC}:{CALLER}") is None


async def test_signed_but_malformed_is_400(client: AsyncTestClient[Litestar]) -> None:
    response = await twilio_post(client, "/webhooks/twilio/voice", [("From", CALLER), ("To", CLINIC)])
    assert response.status_code == 400


@pytest.mark.parametrize("case", ["flipped", "unsigned", "truncated", "not-json", "empty"])
async def test_whatsapp_refusals(client: AsyncTestClient[Litestar], graph: FakeGraph, case: str) -> None:
    body = meta_body(wa_envelope(wa_value([wa_text("hi")])))
    if case == "flipped":
        response = await meta_post(client, body[:50] + bytes([body[50] ^ 1]) + body[51:], meta_signature(body))
        expected = 403
    elif case == "unsigned":
        response = await meta_post(client, body, "")
        expected = 403
    else:
        payload = {"truncated": body[: len(body) // 2], "not-json": b"hello", "empty": b""}[case]
        response = await meta_post(client, payload)
        expected = 400
    assert response.status_code == expected
    assert await stored(client, f"{PHONE_NUMBER_ID}:+{WA_USER}") is None
    await asyncio.sleep(0.1)
    assert graph.sent() == []


async def test_oversized_body_is_413(client: AsyncTestClient[Litestar]) -> None:
    body = b"Body=" + b"x" * MAX_BODY_BYTES
    response = await client.post("/webhooks/twilio/sms", content=body,
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 413


async def test_a_running_app_keeps_its_start_up_objects_out_of_the_collector_and_gives_them_back(
    settings: AppSettings,
) -> None:
    before = gc.get_threshold()
    async with AsyncTestClient(create_app(settings)) as c:
        assert gc.get_freeze_count() > 10_000  # imports, compiled flows, the runtime
        assert gc.get_threshold()[0] == GC_GEN0_THRESHOLD
        assert (await twilio_post(c, "/webhooks/twilio/sms", sms_form("hi"))).status_code == 200
    assert gc.get_freeze_count() == 0 and gc.get_threshold() == before


async def test_health(client: AsyncTestClient[Litestar]) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    report = response.json()
    assert report["flows"] == ["pizza"] and report["store"] == "ok"
    assert report["channels"] == ["twilio_sms", "twilio_voice", "whatsapp"]


# ---- failures inside the runtime ----------------------------------------------------------------


class BrokenRuntime:
    """Stands in for the runtime to make its failures happen on demand."""

    def __init__(self, channels: ChannelRegistry, error: Exception) -> None:
        self.channels = channels
        self.error = error

    async def handle(self, channel: str, inbound: object) -> Any:
        raise self.error

    async def run_background(self) -> None:
        await asyncio.Event().wait()


@pytest.mark.parametrize("error", [StoreUnavailable("redis down"), LockTimeout("busy")])
async def test_store_trouble_is_503_with_retry_after(settings: AppSettings, error: Exception) -> None:
    app = create_app(settings, runtime=BrokenRuntime(build_channels(settings), error))
    async with AsyncTestClient(app) as c:
        response = await twilio_post(c, "/webhooks/twilio/sms", sms_form("hi"))
        assert response.status_code == 503 and response.headers["retry-after"] == "2"


async def test_unexpected_error_is_polite_twiml_not_500(settings: AppSettings) -> None:
    app = create_app(settings, runtime=BrokenRuntime(build_channels(settings), RuntimeError("bug")))
    async with AsyncTestClient(app) as c:
        sms = await twilio_post(c, "/webhooks/twilio/sms", sms_form("hi"))
        assert messages(sms) == ["Sorry, something went wrong on our side. Please try again in a few minutes."]
        voice = await twilio_post(c, "/webhooks/twilio/voice", voice_form())
        assert [e.tag for e in ET.fromstring(voice.content)] == ["Say", "Hangup"]
        wa = await meta_post(c, meta_body(wa_envelope(wa_value([wa_text("hi")]))))
        assert wa.status_code == 200


# ---- configuration ----------------------------------------------------------------------------


@pytest.mark.parametrize(("settings_kwargs", "key"), [
    ({"twilio_account_sid": ACCOUNT_SID}, "TWILIO_AUTH_TOKEN"),
    ({"twilio_auth_token": AUTH_TOKEN}, "TWILIO_ACCOUNT_SID"),
    ({"whatsapp_token": WA_TOKEN, "whatsapp_verify_token": VERIFY_TOKEN}, "WHATSAPP_APP_SECRET"),
    ({"whatsapp_token": WA_TOKEN, "whatsapp_app_secret": APP_SECRET}, "WHATSAPP_VERIFY_TOKEN"),
])
def test_refuses_to_start_without_a_secret(settings_kwargs: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        create_app(AppSettings(**settings_kwargs))  # type: ignore[arg-type]


def test_unconfigured_channels_are_left_out() -> None:
    assert build_channels(AppSettings()).names() == []
    only_sms = build_channels(AppSettings(twilio_account_sid=ACCOUNT_SID, twilio_auth_token=AUTH_TOKEN))
    assert only_sms.names() == ["twilio_sms", "twilio_voice"]
    assert isinstance(only_sms.get("twilio_sms"), TwilioSmsChannel)
