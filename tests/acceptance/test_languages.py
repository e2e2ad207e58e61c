"""SPEC §9 done-when: a Spanish-speaking customer books on SMS, WhatsApp and voice through the
real app (flows/salon_bilingual.yaml) without meeting an English word: every text sent (TwiML
<Say> / <Message>, Graph bodies, buttons, list headers and rows) is checked against the English
catalogue and the flow's English texts; voice speaks and listens in es-ES with a Spanish voice."""

from __future__ import annotations

import asyncio
import re
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Iterator
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
from orchestrator.languages.messages import catalogue
from orchestrator.model import Session
from orchestrator.plugins.connectors import ConnectorRegistry
from orchestrator.runtime.pipeline import Runtime
from orchestrator.settings import AppSettings
from orchestrator.web.app import build_channels, create_app

ROOT = Path(__file__).resolve().parents[2]
SPANISH = "+34600111222"
WA_SPANISH = SPANISH.removeprefix("+")
NOW = 1796230800.0  # Wed 2 Dec 2026 12:00 in Miami (17:00 UTC)
Client = AsyncTestClient[Litestar]
TOKEN = "test-admin-token-0123456789"
FLOW_ENGLISH = ["Which service", "Haircut", "Beard trim", "What name", "When would suit", "I have these times",
                "None of these", "All set", "Hi! Thanks"]


def english_fragments() -> list[str]:
    """Every English catalogue text cut at its `{fields}`: the pieces a Spanish customer must never see."""
    pieces: set[str] = set()
    for text in catalogue("en").words.values():
        for piece in re.split(r"\{\w+\}", text):
            piece = piece.strip(" .,:!?'\u2014")
            if len(piece) >= 6:
                pieces.add(piece)
    return sorted(pieces)


def assert_no_english(texts: list[str]) -> None:
    said = "\n".join(texts)
    found = [p for p in [*english_fragments(), *FLOW_ENGLISH] if p in said]
    assert found == [], f"English words reached a Spanish customer: {found}\n---\n{said}"


@pytest.fixture
def fakes() -> Iterator[tuple[FakeTwilio, FakeGraph]]:
    with FakeTwilio() as twilio, FakeGraph() as graph:
        yield twilio, graph


@pytest.fixture
async def client(tmp_path: Path, fakes: tuple[FakeTwilio, FakeGraph]) -> AsyncIterator[Client]:
    twilio, graph = fakes
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "salon_bilingual.yaml").write_text((ROOT / "flows" / "salon_bilingual.yaml").read_text())
    settings = AppSettings(
        flows_dir=str(flows), public_url=PUBLIC_URL, timer_poll_seconds=0.05,
        twilio_account_sid=ACCOUNT_SID, twilio_auth_token=AUTH_TOKEN, twilio_from_number=CLINIC,
        twilio_api_base=twilio.url, whatsapp_token=WA_TOKEN, whatsapp_phone_number_id=PHONE_NUMBER_ID,
        whatsapp_app_secret=APP_SECRET, whatsapp_verify_token=VERIFY_TOKEN, whatsapp_api_base=graph.url,
        admin_token=TOKEN,
    )
    connectors = ConnectorRegistry()
    connectors.register(EmbeddedCalendar(path=tmp_path / "calendar.sqlite3"), "calendar")
    runtime = await Runtime.create(settings, connectors, build_channels(settings), clock=lambda: NOW)
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


def spanish_caller(form: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(k, SPANISH if v == CALLER else v) for k, v in form]


async def test_a_spanish_customer_books_by_sms_in_spanish(client: Client) -> None:
    said: list[str] = []
    for i, text in enumerate(["Hola", "corte", "me llamo María García", "mañana a las 11", "1"]):
        root = await twilio_post(client, "/webhooks/twilio/sms", sms_form(text, sid=f"SM{i:032d}", sender=SPANISH))
        said += [m.text or "" for m in root.iter("Message")]
    assert_no_english(said)
    assert "1) jue 3 dic, 11:00" in "\n".join(said)
    assert "¡Listo, María García! Le esperamos el jue 3 dic, 11:00." in said[-1]
    session = await session_of(client, f"{CLINIC}:{SPANISH}")
    assert session.outcome == "booked" and session.language == "es"
    assert session.vars["booking"]["label"] == "jue 3 dic, 11:00"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    [row] = (await client.get("/api/conversations", params={"contact": SPANISH}, headers=auth)).json()
    detail = (await client.get(f"/api/conversations/{row['id']}", headers=auth)).json()
    assert detail["language"] == "es"  # the admin API shows the contact's language
    assert "Service: Haircut" in detail["summary"]["text"]  # staff read the business's language


async def test_a_spanish_customer_books_on_whatsapp_in_spanish(client: Client, fakes: tuple[FakeTwilio, FakeGraph]
                                                               ) -> None:
    graph = fakes[1]

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
        return {"from": WA_SPANISH, "id": f"wamid.{i}", "timestamp": "1", "type": "interactive",
                "interactive": {"type": kind, kind: {"id": choice_id, "title": choice_id}}}

    await post(wa_text("Hola", wamid="wamid.0", sender=WA_SPANISH), 2)
    buttons = graph.sent()[-1]["interactive"]["action"]["buttons"]
    assert [b["reply"]["title"] for b in buttons] == ["Corte", "Color", "Barba"]
    await post(tap(1, "beard"), 3)
    await post(wa_text("Diego", wamid="wamid.2", sender=WA_SPANISH), 4)
    await post(wa_text("el jueves por la tarde", wamid="wamid.3", sender=WA_SPANISH), 5)
    listing = graph.sent()[-1]["interactive"]
    assert listing["type"] == "list"
    assert listing["action"]["button"] == "Elegir" and listing["action"]["sections"][0]["title"] == "Opciones"
    rows = listing["action"]["sections"][0]["rows"]
    assert rows[0]["title"] == "jue 3 dic, 14:00" and rows[-1]["title"] == "Ninguna"
    before = len(graph.sent())
    await post(tap(4, rows[0]["id"], "list_reply"), before + 1)
    texts: list[str] = []
    for sent in graph.sent():
        if sent.get("type") == "text":
            texts.append(sent["text"]["body"])
        else:
            inter = sent["interactive"]
            texts.append(inter["body"]["text"])
            action = inter["action"]
            texts += [b["reply"]["title"] for b in action.get("buttons", [])]
            if "sections" in action:
                texts += [action["button"], *(s["title"] for s in action["sections"])]
                texts += [r["title"] for s in action["sections"] for r in s["rows"]]
    assert_no_english(texts)
    assert "Le esperamos el jue 3 dic, 14:00" in texts[-1]
    session = await session_of(client, f"{PHONE_NUMBER_ID}:{SPANISH}")
    assert session.outcome == "booked" and session.language == "es"


async def test_a_spanish_caller_books_by_voice_in_spanish(client: Client) -> None:
    root = await twilio_post(client, "/webhooks/twilio/voice", spanish_caller(voice_form()))
    spoken: list[ET.Element] = list(root.iter("Say"))
    gathers: list[ET.Element] = []
    answers = [("Digits", "1"), ("SpeechResult", "soy Lucía Pérez"), ("SpeechResult", "pasado mañana a las 10"),
               ("Digits", "1")]
    for name, value in answers:
        gather = root.find("Gather")
        assert gather is not None, ET.tostring(root)
        gathers.append(gather)
        url = gather.get("action", "").removeprefix(PUBLIC_URL)
        extra = [(name, value), ("Confidence", "0.92")] if name == "SpeechResult" else [(name, value),
                                                                                         ("FinishedOnKey", "")]
        root = await twilio_post(client, url, spanish_caller([*voice_form(status="in-progress"), *extra]))
        spoken += list(root.iter("Say"))
    assert root[-1].tag == "Hangup"
    assert_no_english([s.text or "" for s in spoken])
    assert {(s.get("language"), s.get("voice")) for s in spoken} == {("es-ES", "Polly.Lucia")}
    assert {g.get("language") for g in gathers} == {"es-ES"}
    words = " ".join(s.text or "" for s in spoken)
    assert "Para Corte, pulse 1. Para Color, pulse 2. Para Barba, pulse 3." in words
    assert "Para vie 4 dic, 10:00, pulse 1." in words
    assert "Le esperamos el vie 4 dic, 10:00" in words
    session = await session_of(client, f"{CLINIC}:{SPANISH}")
    assert session.outcome == "booked" and session.language == "es"


async def test_an_english_caller_of_the_same_flow_hears_english(client: Client) -> None:
    root = await twilio_post(client, "/webhooks/twilio/voice", voice_form())
    spoken = list(root.iter("Say"))
    assert {(s.get("language"), s.get("voice")) for s in spoken} == {("en-US", "Polly.Joanna")}
    assert "For Haircut, press 1." in " ".join(s.text or "" for s in spoken)


async def test_stop_and_help_answer_a_spanish_number_in_spanish(client: Client) -> None:
    root = await twilio_post(client, "/webhooks/twilio/sms", sms_form("AYUDA", sid="SM" + "1" * 32, sender=SPANISH))
    help_said = " ".join(m.text or "" for m in root.iter("Message"))
    root = await twilio_post(client, "/webhooks/twilio/sms", sms_form("HELP", sid="SM" + "2" * 32, sender=SPANISH))
    help_said += " ".join(m.text or "" for m in root.iter("Message"))
    assert "responda a la pregunta para reservar" in help_said
    root = await twilio_post(client, "/webhooks/twilio/sms", sms_form("STOP", sid="SM" + "3" * 32, sender=SPANISH))
    stop_said = " ".join(m.text or "" for m in root.iter("Message"))
    assert stop_said == catalogue("es")["opt_out"]
    assert_no_english([help_said, stop_said])


async def test_a_chosen_language_is_kept_for_the_contact_s_next_conversation(client: Client) -> None:
    """An English number that chose Spanish is answered in Spanish the next time too."""
    said: list[str] = []
    for i, text in enumerate(["Hi", "español", "quiero hablar con alguien", "hola otra vez"]):
        root = await twilio_post(client, "/webhooks/twilio/sms", sms_form(text, sid=f"SM{i:032d}"))
        said.append(" ".join(m.text or "" for m in root.iter("Message")))
    assert said[1].startswith("¿Qué servicio desea?")
    assert "Le paso con recepción" in said[2]
    assert said[3].startswith("¡Hola! Gracias por contactar con Salón Sol.")  # a new conversation, in Spanish
    session = await session_of(client, f"{CLINIC}:{CALLER}")
    assert session.language == "es" and session.status == "active"


async def test_a_spanish_contact_outside_the_whatsapp_window_gets_the_spanish_template(
    tmp_path: Path, fakes: tuple[FakeTwilio, FakeGraph],
) -> None:
    twilio, graph = fakes
    flows = tmp_path / "flows"
    flows.mkdir()
    text = (ROOT / "flows" / "salon_bilingual.yaml").read_text().replace(
        "  no_reply_timeout: 10m\n",
        "  no_reply_timeout: 10m\n  whatsapp_template: {en: salon_update, es: salon_aviso}\n"
        "  whatsapp_template_language: {en: en_US, es: es_ES}\n")
    (flows / "salon_bilingual.yaml").write_text(text)
    settings = AppSettings(
        flows_dir=str(flows), public_url=PUBLIC_URL, admin_token=TOKEN,
        twilio_account_sid=ACCOUNT_SID, twilio_auth_token=AUTH_TOKEN, twilio_from_number=CLINIC,
        twilio_api_base=twilio.url, whatsapp_token=WA_TOKEN, whatsapp_phone_number_id=PHONE_NUMBER_ID,
        whatsapp_app_secret=APP_SECRET, whatsapp_verify_token=VERIFY_TOKEN, whatsapp_api_base=graph.url,
    )
    connectors = ConnectorRegistry()
    connectors.register(EmbeddedCalendar(path=tmp_path / "calendar.sqlite3"), "calendar")
    now = [NOW]
    runtime = await Runtime.create(settings, connectors, build_channels(settings), clock=lambda: now[0])
    try:
        async with AsyncTestClient(create_app(settings, runtime=runtime)) as client:
            body = meta_body(wa_envelope(wa_value([wa_text("Hola", wamid="wamid.T1", sender=WA_SPANISH)])))
            await client.post("/webhooks/whatsapp", content=body, headers={
                "X-Hub-Signature-256": meta_signature(body), "Content-Type": "application/json"})
            for _ in range(250):
                if len(graph.sent()) >= 2:
                    break
                await asyncio.sleep(0.02)
            before = len(graph.sent())
            now[0] += 25 * 3600  # the customer last wrote 25 hours ago
            response = await client.post("/api/conversations", headers={"Authorization": f"Bearer {TOKEN}"},
                                         json={"flow": "salon_bilingual", "channel": "whatsapp",
                                               "contact": SPANISH})
            assert response.status_code == 201, response.text
            for _ in range(250):
                if len(graph.sent()) > before:
                    break
                await asyncio.sleep(0.02)
            sent = graph.sent()[before:]
            assert sent and sent[0]["type"] == "template", sent
            assert sent[0]["template"]["name"] == "salon_aviso"
            assert sent[0]["template"]["language"]["code"] == "es_ES"
    finally:
        await runtime.close()


async def test_the_last_resort_apology_is_in_the_contact_s_language(client: Client,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken(channel: str, inbound: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(client.app.state.runtime, "handle", broken)
    root = await twilio_post(client, "/webhooks/twilio/sms", sms_form("hola", sid="SM" + "9" * 32, sender=SPANISH))
    assert [m.text for m in root.iter("Message")] == [catalogue("es")["sorry_unavailable"]]
    voice = await twilio_post(client, "/webhooks/twilio/voice", spanish_caller(voice_form()))
    [say] = list(voice.iter("Say"))
    assert (say.text, say.get("language"), say.get("voice")) == (
        catalogue("es")["sorry_unavailable"], "es-ES", "Polly.Lucia")
    english = await twilio_post(client, "/webhooks/twilio/sms", sms_form("hi", sid="SM" + "8" * 32))
    assert [m.text for m in english.iter("Message")] == [catalogue("en")["sorry_unavailable"]]
