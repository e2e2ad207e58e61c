"""flows/dental_booking.yaml over a phone call, SMS and WhatsApp through the real app:
the same answers give the same booking and the same outcome on every channel."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import msgspec
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

from integrations.embedded_calendar import EmbeddedCalendar
from orchestrator.model import Session
from orchestrator.plugins.connectors import ConnectorRegistry
from orchestrator.runtime.pipeline import Runtime
from orchestrator.settings import AppSettings
from orchestrator.web.app import build_channels, create_app

ROOT = Path(__file__).resolve().parents[2]
NAME = "Alex Morgan"
Client = AsyncTestClient[Litestar]


@pytest.fixture
def fakes() -> Iterator[tuple[FakeTwilio, FakeGraph]]:
    with FakeTwilio() as twilio, FakeGraph() as graph:
        yield twilio, graph


@pytest.fixture
async def client(tmp_path: Path, fakes: tuple[FakeTwilio, FakeGraph], fixed_now: float) -> AsyncIterator[Client]:
    twilio, graph = fakes
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "dental_booking.yaml").write_text((ROOT / "flows" / "dental_booking.yaml").read_text())
    settings = AppSettings(
        flows_dir=str(flows), public_url=PUBLIC_URL, timer_poll_seconds=0.05,
        twilio_account_sid=ACCOUNT_SID, twilio_auth_token=AUTH_TOKEN, twilio_from_number=CLINIC,
        twilio_api_base=twilio.url, whatsapp_token=WA_TOKEN, whatsapp_phone_number_id=PHONE_NUMBER_ID,
        whatsapp_app_secret=APP_SECRET, whatsapp_verify_token=VERIFY_TOKEN, whatsapp_api_base=graph.url,
    )
    connectors = ConnectorRegistry()
    connectors.register(EmbeddedCalendar(path=tmp_path / "calendar.sqlite3"), "calendar")
    runtime = await Runtime.create(settings, connectors, build_channels(settings), clock=lambda: fixed_now)
    try:
        async with AsyncTestClient(create_app(settings, runtime=runtime)) as c:
            yield c
    finally:
        await runtime.close()


async def twilio_post(client: Client, url: str, form: list[tuple[str, str]]) -> ET.Element:
    sig = twilio_signature(AUTH_TOKEN, f"{PUBLIC_URL}{url}", form)
    response = await client.post(url, content=urlencode(form).encode(), headers={
        "X-Twilio-Signature": sig, "Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 200, response.text
    return ET.fromstring(response.content)


async def session_of(client: Client, sid: str) -> Session:
    raw = await client.app.state.runtime.store.load(sid)
    assert raw is not None
    return msgspec.msgpack.decode(raw, type=Session)


# ---- one script per channel ---------------------------------------------------------------------


async def by_voice(client: Client, graph: FakeGraph) -> tuple[str, str]:
    root = await twilio_post(client, "/webhooks/twilio/voice", voice_form())
    answers: list[tuple[str, str]] = [("Digits", "1"), ("SpeechResult", NAME), ("SpeechResult", "a cleaning"),
                                      ("SpeechResult", "tomorrow at 10am"), ("Digits", "1")]
    for name, value in answers:
        gather = root.find("Gather")
        assert gather is not None, ET.tostring(root)
        url = gather.get("action", "").removeprefix(PUBLIC_URL)
        extra = [(name, value), ("Confidence", "0.92")] if name == "SpeechResult" else [(name, value),
                                                                                         ("FinishedOnKey", "")]
        root = await twilio_post(client, url, [*voice_form(status="in-progress"), *extra])
    said = " ".join(e.text or "" for e in root.iter("Say"))
    assert root[-1].tag == "Hangup"
    return f"{CLINIC}:{CALLER}", said


async def by_sms(client: Client, graph: FakeGraph) -> tuple[str, str]:
    last: ET.Element | None = None
    for i, text in enumerate(["Hi", "1", NAME, "cleaning", "tomorrow at 10am", "1"]):
        last = await twilio_post(client, "/webhooks/twilio/sms", sms_form(text, sid=f"SM{i:032d}"))
    assert last is not None
    return f"{CLINIC}:{CALLER}", " ".join(m.text or "" for m in last.iter("Message"))


async def by_whatsapp(client: Client, graph: FakeGraph) -> tuple[str, str]:
    async def post(message: dict[str, Any], wait_for: int) -> None:
        body = meta_body(wa_envelope(wa_value([message])))
        response = await client.post("/webhooks/whatsapp", content=body, headers={
            "X-Hub-Signature-256": meta_signature(body), "Content-Type": "application/json"})
        assert response.status_code == 200
        for _ in range(250):
            if len(graph.sent()) >= wait_for:
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"only {len(graph.sent())} sends: {graph.sent()}")

    def tap(i: int, choice_id: str, kind: str = "button_reply") -> dict[str, Any]:
        return {"from": WA_USER, "id": f"wamid.{i}", "timestamp": "1", "type": "interactive",
                "interactive": {"type": kind, kind: {"id": choice_id, "title": choice_id}}}

    def last_choices() -> list[str]:
        action = graph.sent()[-1]["interactive"]["action"]
        if "buttons" in action:
            return [b["reply"]["id"] for b in action["buttons"]]
        return [r["id"] for s in action["sections"] for r in s["rows"]]

    await post(wa_text("Hi", wamid="wamid.0"), 2)
    assert "book" in last_choices()
    await post(tap(1, "book"), 3)
    await post(wa_text(NAME, wamid="wamid.2"), 4)
    assert last_choices() == ["cleaning", "checkup", "toothache"]
    await post(tap(3, "cleaning"), 5)
    await post(wa_text("tomorrow at 10am", wamid="wamid.4"), 6)
    slots = last_choices()
    assert graph.sent()[-1]["interactive"]["type"] == "list" and slots[-1] == "other"
    before = len(graph.sent())
    await post(tap(5, slots[0], "list_reply"), before + 1)
    return f"{PHONE_NUMBER_ID}:+{WA_USER}", graph.sent()[-1]["text"]["body"]


SCRIPTS: dict[str, Callable[[Client, FakeGraph], Any]] = {
    "voice": by_voice, "sms": by_sms, "whatsapp": by_whatsapp}


@pytest.mark.parametrize("channel", list(SCRIPTS))
async def test_dental_booking_on_every_channel(
    client: Client, fakes: tuple[FakeTwilio, FakeGraph], channel: str,
) -> None:
    sid, last_words = await SCRIPTS[channel](client, fakes[1])
    session = await session_of(client, sid)
    assert session.status == "ended" and session.outcome == "booked"
    booking = session.vars["booking"]
    assert booking["label"] == "Thu 26 Nov, 10:00 AM"
    assert booking["start"].startswith("2026-11-26T10:00:00")
    assert session.vars["patient_name"] == NAME
    assert session.vars["reason"] == "cleaning"
    assert {k: v for k, v in booking.items() if k != "id"} == {
        "start": "2026-11-26T10:00:00-05:00", "end": "2026-11-26T10:30:00-05:00", "label": "Thu 26 Nov, 10:00 AM",
        "calendar": "embedded", "title": "Cleaning - Alex Morgan"}
    assert NAME in last_words and "Thu 26 Nov, 10:00 AM" in last_words


async def test_call_hung_up_mid_flow_continues_by_sms(client: Client, fakes: tuple[FakeTwilio, FakeGraph]) -> None:
    twilio = fakes[0]
    root = await twilio_post(client, "/webhooks/twilio/voice", voice_form())
    gather = root.find("Gather")
    assert gather is not None
    url = gather.get("action", "").removeprefix(PUBLIC_URL)
    await twilio_post(client, url, [*voice_form(status="in-progress"), ("Digits", "1"), ("FinishedOnKey", "")])
    # the caller hangs up while asked for their name: Twilio's status callback
    await twilio_post(client, "/webhooks/twilio/voice/status",
                      [*voice_form(status="completed"), ("CallDuration", "25"), ("Timestamp", "x")])
    for _ in range(250):
        if twilio.messages():
            break
        await asyncio.sleep(0.02)
    [sms] = twilio.messages()
    assert sms["To"] == [CALLER] and sms["From"] == [CLINIC]
    assert "What's your name?" in sms["Body"][0]
    # the answer by SMS continues the same conversation
    reply = await twilio_post(client, "/webhooks/twilio/sms", sms_form(NAME, sid="SM" + "7" * 32))
    assert "What is the visit for?" in " ".join(m.text or "" for m in reply.iter("Message"))
