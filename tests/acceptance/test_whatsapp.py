"""Acceptance: a WhatsApp user talks to the clinic through the Cloud API. Payloads in Meta's
real shape, signed with HMAC-SHA256; everything we send is captured by the fake Graph API
(the real heyoo client pointed at it through WHATSAPP_API_BASE)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from fakes.graph import FakeGraph
from fakes.signing import (
    VERIFY_TOKEN,
    WA_PHONE_ID,
    WA_USER,
    WABA_ID,
    meta_body,
    wa_envelope,
    wa_text,
    wa_value,
)
from fakes.twilio import FakeTwilio
from litestar import Litestar
from litestar.testing import AsyncTestClient

from orchestrator.runtime.pipeline import Runtime
from orchestrator.settings import AppSettings
from orchestrator.web.app import build_channels, build_connectors, create_app

from .conftest import ADMIN_TOKEN, conversation_of, make_settings, meta_post, wait_for

SESSION = f"{WA_PHONE_ID}:+{WA_USER}"


def button_reply(choice_id: str, wamid: str, title: str = "x") -> dict[str, Any]:
    return {"from": WA_USER, "id": wamid, "timestamp": "1764072001", "type": "interactive",
            "interactive": {"type": "button_reply", "button_reply": {"id": choice_id, "title": title}}}


def list_reply(row_id: str, wamid: str) -> dict[str, Any]:
    return {"from": WA_USER, "id": wamid, "timestamp": "1764072002", "type": "interactive",
            "interactive": {"type": "list_reply", "list_reply": {"id": row_id, "title": "x"}}}


async def send(client: AsyncTestClient[Litestar], graph: FakeGraph, *messages: dict[str, Any],
               expect: int = 1) -> list[dict[str, Any]]:
    """Deliver messages from the user; return what the bot sent back (at least `expect`)."""
    before = len(graph.sent())
    response = await meta_post(client, meta_body(wa_envelope(wa_value(list(messages)))))
    assert response.status_code == 200, response.text
    await wait_for(lambda: len(graph.sent()) >= before + expect)
    await asyncio.sleep(0.1)  # let a burst finish
    return graph.sent()[before:]


def body_of(message: dict[str, Any]) -> str:
    if message["type"] == "text":
        return str(message["text"]["body"])
    return str(message["interactive"]["body"]["text"])


async def test_verification_handshake_echoes_challenge_only_with_the_token(
    client: AsyncTestClient[Litestar],
) -> None:
    ok = await client.get("/webhooks/whatsapp", params={
        "hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "8412"})
    assert (ok.status_code, ok.text) == (200, "8412")
    bad = await client.get("/webhooks/whatsapp", params={
        "hub.mode": "subscribe", "hub.verify_token": "wrong", "hub.challenge": "8412"})
    assert bad.status_code == 403


async def test_bad_signature_is_403_and_nothing_is_sent(
    client: AsyncTestClient[Litestar], graph: FakeGraph,
) -> None:
    body = meta_body(wa_envelope(wa_value([wa_text("hi")])))
    response = await client.post("/webhooks/whatsapp", content=body, headers={
        "X-Hub-Signature-256": "sha256=" + "0" * 64, "Content-Type": "application/json"})
    assert response.status_code == 403
    await asyncio.sleep(0.2)
    assert graph.sent() == []
    assert await client.app.state.runtime.store.load(SESSION) is None


async def test_dental_booking_by_buttons_and_list_ends_booked(
    client: AsyncTestClient[Litestar], graph: FakeGraph,
) -> None:
    first = await send(client, graph, wa_text("hi", wamid="wamid.A1"), expect=2)
    greeting, menu = first[:2]
    assert greeting["text"]["body"] == "Hi! Thanks for contacting Bright Smile Dental."
    assert menu["interactive"]["type"] == "list"  # four choices: more than WhatsApp's three buttons
    menu_rows = menu["interactive"]["action"]["sections"][0]["rows"]
    assert [r["title"] for r in menu_rows] == ["Book a visit", "Opening hours", "Talk to someone",
                                               "Change or cancel a visit"]
    [name_q] = await send(client, graph, button_reply("book", "wamid.A2"))
    assert body_of(name_q) == "Great! What's your name?"
    [reason] = await send(client, graph, wa_text("Kerry Fisher", wamid="wamid.A3"))
    assert reason["interactive"]["type"] == "button" and len(reason["interactive"]["action"]["buttons"]) == 3
    [when] = await send(client, graph, button_reply("checkup", "wamid.A4"))
    assert "When would you like to come in" in body_of(when)
    # a weekday, so that the offer comes without a "We're closed on Sunday" notice whatever today is
    [offer] = await send(client, graph, wa_text("next Tuesday at 10am", wamid="wamid.A5"))
    assert offer["interactive"]["type"] == "list"  # 3 slots + "None of these" = 4 > 3 buttons
    rows = offer["interactive"]["action"]["sections"][0]["rows"]
    assert len(rows) == 4 and all(len(r["title"]) <= 24 for r in rows)
    [done] = await send(client, graph, list_reply(rows[1]["id"], "wamid.A6"))
    assert "You're booked for" in body_of(done) and "Kerry Fisher" in body_of(done)
    assert rows[1]["title"].split(",")[0] in body_of(done)
    conv = await conversation_of(client, f"+{WA_USER}")
    assert conv["conversation"]["outcome"] == "booked"


FLOW_CHOICES = """\
flow: wa_menu
start: a
vars: {pick: "", n: "", m: ""}
states:
  a:
    ask: "Pick one"
    choices:
      x: {label: "Teeth whitening consultation", dtmf: "1"}
      y: {label: "Emergency appointment for toothache today", dtmf: "2"}
      z: {label: "Something else", dtmf: "3"}
    save: pick
    next: b
    on: {fail: d}
  b:
    ask: "Pick a number"
    choices:
%s
    save: n
    next: c
    on: {fail: d}
  c:
    ask: "Pick more"
    choices:
%s
    save: m
    next: d
    on: {fail: d}
  d:
    say: "Got {{ pick }} {{ n }} {{ m }}"
    end: done
"""


@pytest.fixture
async def menu_client(tmp_path: Path, fake_twilio: FakeTwilio, graph: FakeGraph
                      ) -> Any:
    ten = "\n".join(f"      c{i}: {{label: 'Option number {i} with a long label here'}}" for i in range(10))
    twelve = "\n".join(f"      k{i}: {{label: 'Item {i}'}}" for i in range(12))
    flows = tmp_path / "menu_flows"
    flows.mkdir()
    (flows / "wa_menu.yaml").write_text(FLOW_CHOICES % (ten, twelve))
    async with AsyncTestClient(create_app(make_settings(flows, fake_twilio, graph, default_flow=None))) as c:
        yield c


async def test_buttons_titles_at_most_20_chars_never_cut_inside_a_word(
    menu_client: AsyncTestClient[Litestar], graph: FakeGraph,
) -> None:
    [menu] = await send(menu_client, graph, wa_text("hi", wamid="wamid.M1"))
    kind = menu["interactive"]["type"]
    if kind == "button":
        titles = [b["reply"]["title"] for b in menu["interactive"]["action"]["buttons"]]
        assert len(titles) <= 3 and all(len(t) <= 20 for t in titles)
        labels = ["Teeth whitening consultation", "Emergency appointment for toothache today", "Something else"]
        for title, label in zip(titles, labels, strict=True):
            kept = title.removesuffix("…")
            assert label.startswith(kept) and not label[len(kept):][:1].isalnum(), (title, label)
    else:  # a cut would break a word: a list, whose rows carry the full label
        assert kind == "list"
        rows = menu["interactive"]["action"]["sections"][0]["rows"]
        assert any(r.get("description") == "Emergency appointment for toothache today" or
                   r["title"] == "Emergency appointment for toothache today" for r in rows)
        assert all(len(r["title"]) <= 24 for r in rows)


async def test_ten_choices_become_a_list_and_more_become_numbered_text(
    menu_client: AsyncTestClient[Litestar], graph: FakeGraph,
) -> None:
    await send(menu_client, graph, wa_text("hi", wamid="wamid.N1"))
    [listing] = await send(menu_client, graph, button_reply("y", "wamid.N2"))
    assert listing["interactive"]["type"] == "list"
    rows = listing["interactive"]["action"]["sections"][0]["rows"]
    assert [r["id"] for r in rows] == [f"c{i}" for i in range(10)]
    assert all(len(r["title"]) <= 24 for r in rows)
    assert rows[3]["description"] == "Option number 3 with a long label here"  # meaning kept
    [numbered] = await send(menu_client, graph, list_reply("c9", "wamid.N3"))
    assert numbered["type"] == "text"
    assert "1) Item 0" in numbered["text"]["body"] and "12) Item 11" in numbered["text"]["body"]
    [done] = await send(menu_client, graph, wa_text("11", wamid="wamid.N4"))  # by its number
    assert body_of(done) == "Got y c9 k10"


async def test_batched_webhook_2_entries_2_changes_3_messages_all_answered(
    client: AsyncTestClient[Litestar], graph: FakeGraph,
) -> None:
    senders = []
    changes = []
    for e in range(2):
        for ch in range(2):
            msgs = [wa_text("hi", wamid=f"wamid.B{e}{ch}{k}", sender=f"1631555{e}{ch}{k}00") for k in range(3)]
            senders += [m["from"] for m in msgs]
            changes.append(wa_value(msgs, contacts=[{"profile": {"name": "P"}, "wa_id": m["from"]} for m in msgs]))
    payload = {"object": "whatsapp_business_account", "entry": [
        {"id": WABA_ID, "changes": [{"field": "messages", "value": v} for v in changes[i * 2: i * 2 + 2]]}
        for i in range(2)]}
    response = await meta_post(client, meta_body(payload))
    assert response.status_code == 200
    await wait_for(lambda: len({m["to"] for m in graph.sent()}) >= 12)
    assert sorted({m["to"] for m in graph.sent()}) == sorted(senders)
    store = client.app.state.runtime.store
    for sender in senders:
        assert await store.load(f"{WA_PHONE_ID}:+{sender}") is not None


async def test_redelivered_message_is_not_applied_twice(
    client: AsyncTestClient[Litestar], graph: FakeGraph,
) -> None:
    await send(client, graph, wa_text("hi", wamid="wamid.D1"), expect=2)
    await send(client, graph, button_reply("book", "wamid.D2"))
    before = len(graph.sent())
    again = await meta_post(client, meta_body(wa_envelope(wa_value([button_reply("book", "wamid.D2")]))))
    assert again.status_code == 200
    await asyncio.sleep(0.3)
    assert len(graph.sent()) == before  # nothing new sent, nothing advanced
    [reason] = await send(client, graph, wa_text("Kerry Fisher", wamid="wamid.D3"))
    assert "Thanks, Kerry Fisher" in body_of(reason)


async def test_delivery_statuses_never_move_backwards_and_failures_keep_codes(
    client: AsyncTestClient[Litestar], graph: FakeGraph,
) -> None:
    await send(client, graph, wa_text("hi", wamid="wamid.S1"), expect=2)
    store = client.app.state.runtime.store
    wamid = "wamid.FAKE00000001"  # the id the Graph API gave our first message

    def status(name: str, **extra: Any) -> dict[str, Any]:
        return {"id": wamid, "status": name, "timestamp": "1764072100", "recipient_id": WA_USER, **extra}

    for name in ("read", "sent", "delivered"):  # Meta delivers out of order
        response = await meta_post(client, meta_body(wa_envelope(wa_value(statuses=[status(name)]))))
        assert response.status_code == 200
    got = await store.get_status(wamid)
    assert got is not None and got[0] == "read"
    other = "wamid.FAKE00000002"
    failed = {"id": other, "status": "failed", "timestamp": "1764072101", "recipient_id": WA_USER,
              "errors": [{"code": 131047, "title": "Re-engagement message"}]}
    await meta_post(client, meta_body(wa_envelope(wa_value(statuses=[failed]))))
    got = await store.get_status(other)
    assert got is not None and got[0] == "failed" and got[1] == "131047"


@pytest.mark.parametrize("message", [
    {"type": "location", "location": {"latitude": 40.7, "longitude": -74.0, "name": "Home"}},
    {"type": "image", "image": {"id": "1479537139650973", "mime_type": "image/jpeg", "sha256": "x"}},
    {"type": "reaction", "reaction": {"message_id": "wamid.FAKE00000001", "emoji": "👍"}},
    {"type": "unsupported", "errors": [{"code": 131051, "title": "Message type unknown"}]},
    {"type": "sticker", "sticker": {"id": "1", "mime_type": "image/webp", "animated": False}},
], ids=["location", "image", "reaction", "unsupported", "sticker"])
async def test_other_message_types_are_answered_politely_never_500(
    client: AsyncTestClient[Litestar], graph: FakeGraph, message: dict[str, Any],
) -> None:
    await send(client, graph, wa_text("hi", wamid="wamid.O1"), expect=2)
    item = {"from": WA_USER, "id": "wamid.O2", "timestamp": "1764072003", **message}
    response = await meta_post(client, meta_body(wa_envelope(wa_value([item]))))
    assert response.status_code == 200
    await asyncio.sleep(0.3)
    # the conversation is still alive and still answers the menu
    [name_q] = await send(client, graph, button_reply("book", "wamid.O3"))
    assert body_of(name_q) == "Great! What's your name?"


async def test_outbound_outside_24h_window_uses_the_flow_template(
    flows_copy: Path, fake_twilio: FakeTwilio, graph: FakeGraph,
) -> None:
    path = flows_copy / "dental_booking.yaml"
    path.write_text(path.read_text().replace(
        "  recording: false", "  recording: false\n  whatsapp_template: appointment_followup"))
    settings: AppSettings = make_settings(flows_copy, fake_twilio, graph)
    now = [1_795_600_000.0]
    runtime = await Runtime.create(settings, build_connectors(settings), build_channels(settings),
                                   clock=lambda: now[0])
    async with AsyncTestClient(create_app(settings, runtime)) as client:
        await send(client, graph, wa_text("hi", wamid="wamid.W1"), expect=2)
        before = len(graph.sent())
        now[0] += 25 * 3600  # the user last wrote 25 hours ago
        response = await client.post("/api/conversations", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                                     json={"flow": "dental_booking", "channel": "whatsapp", "contact": f"+{WA_USER}"})
        assert response.status_code == 201, response.text
        await wait_for(lambda: len(graph.sent()) > before)
        await asyncio.sleep(0.2)
        sent = graph.sent()[before:]
        assert sent[0]["type"] == "template", sent
        assert sent[0]["template"]["name"] == "appointment_followup"
        assert all(m["type"] == "template" for m in sent)  # no free-form message outside the window


async def test_stop_on_whatsapp_opts_the_contact_out(client: AsyncTestClient[Litestar], graph: FakeGraph) -> None:
    await send(client, graph, wa_text("hi", wamid="wamid.X1"), expect=2)
    [ack] = await send(client, graph, wa_text("STOP", wamid="wamid.X2"))
    assert "unsubscribed" in body_of(ack).lower() or "opted out" in body_of(ack).lower()
    assert await client.app.state.runtime.store.is_opted_out(f"+{WA_USER}")
    before = len(graph.sent())
    await meta_post(client, meta_body(wa_envelope(wa_value([wa_text("book", wamid="wamid.X3")]))))
    await asyncio.sleep(0.3)
    assert len(graph.sent()) == before
