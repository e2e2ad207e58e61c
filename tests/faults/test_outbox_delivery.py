"""Issue #12 items 4-5: the outbox sends each message once in effect and outlasts provider outages.

The real adapters (twilio's client, heyoo's calls through the lean transport) against the fake
providers, on the in-memory and the real Redis store, with a movable clock."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from fakes.graph import PHONE_NUMBER_ID, WA_TOKEN, FakeGraph
from fakes.http import Recorded, Reply, json_reply
from fakes.signing import APP_SECRET, CLINIC, PUBLIC_URL, VERIFY_TOKEN, wa_envelope, wa_text, wa_value, whatsapp_request
from fakes.twilio import ACCOUNT_SID, AUTH_TOKEN, FakeTwilio
from rediskit import REDIS_URL, drop_prefix, unique_prefix

from orchestrator.plugins.channels import Address
from orchestrator.runtime.outbox import FailedSend, OutboxItem
from orchestrator.runtime.pipeline import Runtime
from orchestrator.settings import AppSettings
from orchestrator.stores.base import SessionStore
from orchestrator.stores.memory import MemoryStore
from orchestrator.stores.redis import RedisStore
from orchestrator.web.app import build_channels, build_connectors, create_app

FLOW = """\
flow: intake
title: Test Clinic
start: greet
settings: {staff_notify: "+15555550999"}
states:
  greet:
    say: "Hi from the clinic"
    next: ask_name
  ask_name:
    ask: "Your name?"
    input: text
    save: name
    next: done
  done:
    say: "Thanks"
    end: finished
"""
ONE_MESSAGE = """\
flow: intake
title: Test Clinic
start: ask_name
states:
  ask_name:
    ask: "Your name?"
    input: text
    save: name
    next: done
  done:
    say: "Thanks"
    end: finished
"""
ADMIN = "outbox-admin-token-0123"
WA_CONTACT = "16315551181"
SMS_CONTACT = "+15555550123"


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[SessionStore]:
    if request.param == "memory":
        yield MemoryStore()
        return
    prefix = unique_prefix("outbox")
    redis_store = await RedisStore.connect(REDIS_URL, prefix)
    try:
        yield redis_store
    finally:
        await redis_store.close()
        await drop_prefix(prefix)


@pytest.fixture
def providers() -> Iterator[tuple[FakeTwilio, FakeGraph]]:
    with FakeTwilio() as twilio, FakeGraph() as graph:
        yield twilio, graph


async def make_runtime(tmp_path: Path, store: SessionStore, providers: tuple[FakeTwilio, FakeGraph],
                       flow: str = FLOW, timeout: float = 0.5, **extra: Any) -> Runtime:
    flows = tmp_path / "flows"
    flows.mkdir(exist_ok=True)
    (flows / "intake.yaml").write_text(flow)
    twilio, graph = providers
    settings = AppSettings(
        flows_dir=str(flows), public_url=PUBLIC_URL, default_flow="intake", reload_seconds=0, admin_token=ADMIN,
        twilio_account_sid=ACCOUNT_SID, twilio_auth_token=AUTH_TOKEN, twilio_from_number=CLINIC,
        twilio_api_base=twilio.url, whatsapp_token=WA_TOKEN, whatsapp_phone_number_id=PHONE_NUMBER_ID,
        whatsapp_app_secret=APP_SECRET, whatsapp_verify_token=VERIFY_TOKEN, whatsapp_api_base=graph.url,
        **extra,
    )
    channels = build_channels(settings)
    for name in ("twilio_sms", "whatsapp"):  # a provider that takes a request and never answers: 0.5 s
        adapter: Any = channels.get(name)
        adapter.timeout_seconds = timeout
        if name == "whatsapp":
            adapter._http.timeout = timeout
        else:
            adapter._client = None
    return await Runtime.create(settings, build_connectors(settings), channels, store=store, clock=Clock())


async def whatsapp_says(runtime: Runtime, text: str, wamid: str, contact: str = WA_CONTACT) -> None:
    adapter = runtime.channels.get("whatsapp")
    for inbound in adapter.parse(whatsapp_request(wa_envelope(wa_value([wa_text(text, wamid, contact)])))):
        await runtime.handle("whatsapp", inbound)


async def status_webhook(runtime: Runtime, item: dict[str, Any]) -> None:
    adapter = runtime.channels.get("whatsapp")
    for inbound in adapter.parse(whatsapp_request(wa_envelope(wa_value(statuses=[item])))):
        await runtime.handle("whatsapp", inbound)


def fail_request(server: Any, n: int, reply: Reply) -> None:
    """The server's n-th request from now (1-based) gets `reply`; the others its usual answer."""
    usual: Callable[[Recorded], Reply] = server.handler
    seen = [0]

    def handler(rec: Recorded) -> Reply:
        seen[0] += 1
        return reply if seen[0] == n else usual(rec)

    server.handler = handler


def texts_taken(graph: FakeGraph) -> list[str]:
    return [p.get("text", {}).get("body") or p.get("interactive", {}).get("body", {}).get("text", "")
            for _, p in graph.taken]


def advance(runtime: Runtime, seconds: float) -> None:
    runtime.clock.now += seconds  # type: ignore[attr-defined]


async def test_a_500_on_the_second_message_of_a_turn_never_resends_the_first(
    tmp_path: Path, store: SessionStore, providers: tuple[FakeTwilio, FakeGraph],
) -> None:
    _, graph = providers
    runtime = await make_runtime(tmp_path, store, providers)
    fail_request(graph, 2, json_reply(500, {"error": {"message": "An unknown error occurred", "code": 1,
                                                      "type": "OAuthException", "fbtrace_id": "x"}}))
    await whatsapp_says(runtime, "hi", "wamid.IN1")
    assert await runtime.send_outbox() == 0
    assert texts_taken(graph) == ["Hi from the clinic"]
    advance(runtime, 10)
    assert await runtime.send_outbox() == 1
    assert texts_taken(graph) == ["Hi from the clinic", "Your name?"]  # the first once, in order
    keys = [p["biz_opaque_callback_data"] for _, p in graph.taken]
    assert keys[0].endswith("#0") and keys[1].endswith("#1") and keys[0][:-2] == keys[1][:-2]
    assert await runtime.store.get_status(keys[0][:-2]) == ("sent", None)


async def test_a_twilio_timeout_after_the_provider_accepted_is_reconciled_not_resent(
    tmp_path: Path, store: SessionStore, providers: tuple[FakeTwilio, FakeGraph],
) -> None:
    twilio, _ = providers
    runtime = await make_runtime(tmp_path, store, providers)
    await runtime.start_outbound(Address(business=CLINIC, contact=SMS_CONTACT), "twilio_sms", "intake")
    twilio.accept_then_drop(1.5)  # taken, then no answer within the client's 0.5 s
    assert await runtime.send_outbox() == 0
    assert len(twilio.created) == 1
    callback = twilio.messages()[0]["StatusCallback"][0]
    assert callback.startswith(f"{PUBLIC_URL}/webhooks/twilio/sms/status?k=")  # the part key comes back
    advance(runtime, 60)
    assert await runtime.send_outbox() == 1
    assert len(twilio.created) == 1  # found in Twilio's message list: not sent again
    assert any(r.method == "GET" for r in twilio.requests)


async def test_a_refused_twilio_connection_is_resent_without_waiting(
    tmp_path: Path, store: SessionStore, providers: tuple[FakeTwilio, FakeGraph],
) -> None:
    twilio, _ = providers
    runtime = await make_runtime(tmp_path, store, providers)
    await runtime.start_outbound(Address(business=CLINIC, contact=SMS_CONTACT), "twilio_sms", "intake")
    twilio.script(503, {"code": 20500, "message": "Internal Server Error", "status": 503})
    assert await runtime.send_outbox() == 0
    advance(runtime, 3)  # a known refusal: the backoff (2 s), no reconcile wait, no list call
    assert await runtime.send_outbox() == 1
    assert len(twilio.created) == 1 and not any(r.method == "GET" for r in twilio.requests)


async def test_a_graph_timeout_after_accept_waits_for_the_status_webhook_before_resending(
    tmp_path: Path, store: SessionStore, providers: tuple[FakeTwilio, FakeGraph],
) -> None:
    _, graph = providers
    runtime = await make_runtime(tmp_path, store, providers)
    graph.accept_then_drop(1.5)
    await whatsapp_says(runtime, "hi", "wamid.IN1")
    assert await runtime.send_outbox() == 0
    assert texts_taken(graph) == ["Hi from the clinic"]
    advance(runtime, 5)
    assert await runtime.send_outbox() == 0  # not yet due: its status webhook has time to come back
    await status_webhook(runtime, graph.status_of(graph.taken[0][0]))
    advance(runtime, 30)
    assert await runtime.send_outbox() == 1
    assert texts_taken(graph) == ["Hi from the clinic", "Your name?"]  # the first not sent twice


async def test_a_graph_send_that_never_reached_meta_is_resent_after_the_bounded_wait(
    tmp_path: Path, store: SessionStore, providers: tuple[FakeTwilio, FakeGraph],
) -> None:
    _, graph = providers
    runtime = await make_runtime(tmp_path, store, providers, outbox_reconcile_seconds=20.0)
    graph.accept_then_drop(1.5)
    await whatsapp_says(runtime, "hi", "wamid.IN1")
    assert await runtime.send_outbox() == 0
    graph.taken.clear()  # as if Meta had dropped it: no status webhook will come
    advance(runtime, 21)
    assert await runtime.send_outbox() == 1
    assert texts_taken(graph) == ["Hi from the clinic", "Your name?"]


async def test_a_sender_killed_mid_send_is_reconciled_after_the_lease(
    tmp_path: Path, store: SessionStore, providers: tuple[FakeTwilio, FakeGraph],
) -> None:
    """kill -9 while a send is in flight leaves the store as a cancelled sender does: the item
    claimed, neither finished nor rescheduled. The next claim after the lease reconciles it."""
    twilio, _ = providers
    runtime = await make_runtime(tmp_path, store, providers, outbox_lease_seconds=30.0)
    await runtime.start_outbound(Address(business=CLINIC, contact=SMS_CONTACT), "twilio_sms", "intake")
    twilio.delay_seconds = 0.3
    task = asyncio.create_task(runtime.send_outbox())
    for _ in range(200):
        if twilio.requests:
            break
        await asyncio.sleep(0.01)
    task.cancel()  # the request is out; the sender dies before it hears back
    with pytest.raises(asyncio.CancelledError):
        await task
    for _ in range(100):
        if twilio.created:
            break
        await asyncio.sleep(0.01)
    twilio.delay_seconds = 0.0
    assert len(twilio.created) == 1
    assert await runtime.send_outbox() == 0  # leased
    advance(runtime, 31)
    assert await runtime.send_outbox() == 1
    assert len(twilio.created) == 1  # found by the reconcile, not sent again


async def test_a_long_provider_outage_is_outlasted_and_each_message_goes_once(
    tmp_path: Path, store: SessionStore, providers: tuple[FakeTwilio, FakeGraph],
) -> None:
    """Was: 8 attempts (~254 s) and the reply was dropped for good."""
    _, graph = providers
    runtime = await make_runtime(tmp_path, store, providers)
    await whatsapp_says(runtime, "hi", "wamid.IN1")
    down = json_reply(503, {"error": {"message": "Service temporarily unavailable", "code": 2,
                                      "type": "OAuthException", "fbtrace_id": "y"}})
    for _ in range(20):
        graph.script(503, msgspec.json.decode(down[2]))
    attempts = 0
    while await runtime.send_outbox() == 0:
        attempts += 1
        assert attempts < 40
        advance(runtime, 301)  # the backoff is capped at 300 s
    assert attempts == 20 and texts_taken(graph) == ["Hi from the clinic", "Your name?"]  # ~1.5 h down


async def test_a_send_still_failing_after_the_give_up_time_is_listed_and_staff_are_told_once(
    tmp_path: Path, store: SessionStore, providers: tuple[FakeTwilio, FakeGraph],
) -> None:
    twilio, graph = providers
    runtime = await make_runtime(tmp_path, store, providers, outbox_give_up_seconds=3600.0)
    await whatsapp_says(runtime, "hi", "wamid.IN1")
    usual = graph.handler
    graph.handler = lambda rec: json_reply(503, {"error": {"message": "down", "code": 2}})
    for _ in range(30):
        await runtime.send_outbox()
        advance(runtime, 301)
    graph.handler = usual
    failed = [msgspec.msgpack.decode(f, type=FailedSend) for f in await runtime.store.failed_outbox()]
    assert [(f.reason, f.contact, f.parts_sent) for f in failed] == [("gave_up", "+" + WA_CONTACT, 0)]
    assert failed[0].texts == ["Hi from the clinic", "Your name?"] and failed[0].attempts >= 10
    for _ in range(3):
        await runtime.send_outbox()  # the staff notice (SMS), once
        advance(runtime, 301)
    staff = [m for m in twilio.messages() if m["To"] == ["+15555550999"]]
    assert len(staff) == 1, twilio.messages()
    assert texts_taken(graph) == []  # given up: nothing late to the contact
    app = create_app(runtime.settings, runtime=runtime, start_background=False)
    app.state.runtime = runtime
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as client:
        listed = await client.get("/api/outbox/failed", headers={"Authorization": f"Bearer {ADMIN}"})
    assert listed.status_code == 200, listed.text
    assert [(f["reason"], f["session_id"]) for f in listed.json()] == [("gave_up", f"{PHONE_NUMBER_ID}:+{WA_CONTACT}")]


async def test_free_form_text_after_the_whatsapp_window_fails_with_its_reason(
    tmp_path: Path, store: SessionStore, providers: tuple[FakeTwilio, FakeGraph],
) -> None:
    _, graph = providers
    runtime = await make_runtime(tmp_path, store, providers, outbox_give_up_seconds=2 * 86400.0)
    await whatsapp_says(runtime, "hi", "wamid.IN1")
    graph.script(503, {"error": {"message": "down", "code": 2}})
    assert await runtime.send_outbox() == 0
    advance(runtime, 24 * 3600 + 1)
    assert await runtime.send_outbox() == 0
    failed = [msgspec.msgpack.decode(f, type=FailedSend) for f in await runtime.store.failed_outbox()]
    assert [f.reason for f in failed] == ["window_closed"] and "24 h window" in failed[0].error
    assert texts_taken(graph) == []


async def test_one_slow_provider_call_does_not_delay_other_contacts(
    tmp_path: Path, store: SessionStore, providers: tuple[FakeTwilio, FakeGraph],
) -> None:
    """Was: the 10th contact's first reply after 16.7 s with a 1 s provider."""
    _, graph = providers
    runtime = await make_runtime(tmp_path, store, providers, flow=ONE_MESSAGE, timeout=5.0)
    contacts = [f"1631555{1200 + i}" for i in range(10)]
    for i, contact in enumerate(contacts):
        await whatsapp_says(runtime, "hi", f"wamid.IN{i}", contact)
    advance(runtime, 0.5)
    await whatsapp_says(runtime, "Ann", "wamid.IN-Ann", contacts[0])  # a second item for one contact
    graph.delay_seconds = 1.0
    started = time.monotonic()
    assert await runtime.send_outbox() == 11
    elapsed = time.monotonic() - started
    assert {p["to"] for _, p in graph.taken} == set(contacts)
    assert elapsed < 3.5, elapsed  # 2 rounds of 8 (10 first replies, then contact 0's second) of 1 s
    first = [texts_taken(graph)[i] for i, (_, p) in enumerate(graph.taken) if p["to"] == contacts[0]]
    assert first == ["Your name?", "Thanks"]  # one contact's items in order, one at a time


async def test_outbox_items_written_before_this_change_still_send(
    tmp_path: Path, store: SessionStore, providers: tuple[FakeTwilio, FakeGraph],
) -> None:
    """An item without the new fields (sent, ids, unknown_since, window_ends) decodes to their defaults."""
    raw = msgspec.msgpack.encode({"id": "x|y", "adapter": "whatsapp", "business": "1", "contact": "+1",
                                  "messages": []})
    item = msgspec.msgpack.decode(raw, type=OutboxItem)
    assert (item.sent, item.ids, item.unknown_since, item.window_ends) == (0, [], 0.0, 0.0)
