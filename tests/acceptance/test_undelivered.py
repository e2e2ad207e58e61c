"""Acceptance: a provider refuses (4xx) a message to the contact. The refusal goes back into the
conversation as an `undelivered` event through the normal turn pipeline, once; a refused staff
notification is logged and never fed in. The 4xx comes from the fake Graph / Twilio servers,
through the real heyoo and twilio clients."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import msgspec
import pytest
from fakes.graph import FakeGraph
from fakes.signing import WA_PHONE_ID, WA_USER
from fakes.twilio import FakeTwilio

from orchestrator.errors import SendError
from orchestrator.model import Event, TranscriptEntry
from orchestrator.plugins.channels import Address, Inbound
from orchestrator.runtime.outbox import OutboxItem
from orchestrator.runtime.pipeline import Runtime
from orchestrator.web.app import build_channels, build_connectors

from .conftest import CLINIC, make_settings

CONTACT = f"+{WA_USER}"
SESSION = f"{WA_PHONE_ID}:{CONTACT}"
UNDELIVERABLE = {"error": {"message": "Message Undeliverable.", "type": "OAuthException", "code": 131026,
                           "fbtrace_id": "A9"}}


@pytest.fixture
async def runtime(flows_copy: Path, fake_twilio: FakeTwilio, graph: FakeGraph) -> Any:
    settings = make_settings(flows_copy, fake_twilio, graph)
    rt = await Runtime.create(settings, build_connectors(settings), build_channels(settings))
    yield rt
    await rt.close()


async def whatsapp(rt: Runtime, text: str, n: int) -> None:
    event = Event(kind="text", channel="whatsapp", text=text, provider_id=f"wamid.U{n}")
    await rt.handle("whatsapp", Inbound(kind="event", address=Address(business=WA_PHONE_ID, contact=CONTACT),
                                        route_key=WA_PHONE_ID, event=event))


async def inbound_kinds(rt: Runtime, sid: str = SESSION) -> list[str]:
    entries = [msgspec.msgpack.decode(raw, type=TranscriptEntry) for raw in await rt.store.get_transcript(sid)]
    return [e.data["kind"] for e in entries if e.dir == "in"]


async def test_a_refused_whatsapp_reply_reaches_the_conversation_once(runtime: Runtime, graph: FakeGraph) -> None:
    await whatsapp(runtime, "hi", 1)
    graph.script(400, UNDELIVERABLE)  # the greeting is refused
    assert await runtime.send_outbox() == 0
    assert len(graph.requests) == 1
    assert await inbound_kinds(runtime) == ["start", "undelivered"]
    entries = [msgspec.msgpack.decode(raw, type=TranscriptEntry) for raw in await runtime.store.get_transcript(SESSION)]
    fed = [e for e in entries if e.dir == "in" and e.data["kind"] == "undelivered"]
    assert fed[0].text == "131026" and fed[0].data["channel"] == "whatsapp"
    # the refused item is finished, not retried; what goes out now is staff's note (by SMS)
    assert await runtime.send_outbox() <= 1
    assert len(graph.requests) == 1
    assert await runtime.send_outbox() == 0


async def test_feeding_the_same_refused_item_twice_advances_once(runtime: Runtime, graph: FakeGraph) -> None:
    """A crash between the feed and finishing the item re-sends it after its lease and feeds it
    again: the dedupe key comes from the item id, so the conversation moves once."""
    await whatsapp(runtime, "hi", 1)
    claims = await runtime.store.claim_outbox(runtime.clock(), 10, 30)
    item = msgspec.msgpack.decode(claims[0].payload, type=OutboxItem)
    adapter = runtime.channels.get(item.adapter)
    for _ in range(2):
        graph.script(400, UNDELIVERABLE)
        with pytest.raises(SendError) as refused:
            await adapter.send(Address(business=item.business, contact=item.contact), item.messages,
                               runtime._context(None, SESSION, idempotency_key=item.id))
        assert refused.value.retryable is False
        assert await runtime._undelivered(item, refused.value)
    assert await inbound_kinds(runtime) == ["start", "undelivered"]
    raw = await runtime.store.load(SESSION)
    assert raw is not None and msgspec.msgpack.decode(raw)["turns"] == 2


async def test_a_refused_outbound_sms_is_fed_back(runtime: Runtime, fake_twilio: FakeTwilio) -> None:
    contact = "+15555550142"
    await runtime.start_outbound(Address(business=CLINIC, contact=contact), "twilio_sms", "missed_call_textback")
    fake_twilio.script(400, {"code": 21211, "message": "The 'To' number is not a valid phone number.",
                             "more_info": "https://www.twilio.com/docs/errors/21211", "status": 400})
    await runtime.send_outbox()
    sid = f"{CLINIC}:{contact}"
    assert await inbound_kinds(runtime, sid) == ["start", "undelivered"]
    entries = [msgspec.msgpack.decode(raw, type=TranscriptEntry) for raw in await runtime.store.get_transcript(sid)]
    assert [e.text for e in entries if e.dir == "in"][-1] == "21211"


async def test_a_refused_staff_notification_is_logged_not_fed_in(
    runtime: Runtime, graph: FakeGraph, fake_twilio: FakeTwilio, caplog: pytest.LogCaptureFixture,
) -> None:
    await whatsapp(runtime, "hi", 1)
    await runtime.send_outbox()
    await whatsapp(runtime, "talk", 2)  # a handoff: staff are told by SMS
    fake_twilio.script(400, {"code": 21610, "message": "Attempt to send to unsubscribed recipient", "status": 400})
    with caplog.at_level(logging.ERROR, logger="orchestrator.runtime.pipeline"):
        await runtime.send_outbox()
    assert [m["To"][0] for m in fake_twilio.messages()] == ["+15555550199"]  # the flow's staff_notify, refused
    assert "undelivered" not in await inbound_kinds(runtime)
    assert any("staff notification" in r.getMessage() and "not fed" in r.getMessage() for r in caplog.records)
