"""RELIABILITY.md rows that run in one process: the litestar app (AsyncTestClient) or the
runtime on the real Redis (6379, a private key prefix) with fake providers.

Rows 3, 4, 5, 6, 7, 10 and 11 need real processes: see test_processes.py.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import msgspec
import pytest
import redis.asyncio as aioredis
from fakes.graph import PHONE_NUMBER_ID, WA_TOKEN, FakeGraph
from fakes.signing import (
    APP_SECRET,
    CLINIC,
    PUBLIC_URL,
    VERIFY_TOKEN,
    meta_body,
    meta_signature,
    sms_form,
    twilio_signature,
    wa_envelope,
    wa_text,
    wa_value,
)
from fakes.twilio import ACCOUNT_SID, AUTH_TOKEN, FakeTwilio
from litestar import Litestar
from litestar.testing import AsyncTestClient

from orchestrator.errors import SendError, StaleWrite
from orchestrator.logs import configure_logging
from orchestrator.model import Event, Session
from orchestrator.plugins.channels import Address, Capabilities, ChannelRegistry, Inbound, Outbound, ReplyContext
from orchestrator.plugins.connectors import ConnectorRegistry
from orchestrator.runtime.pipeline import Runtime
from orchestrator.settings import AppSettings
from orchestrator.stores.base import Commit
from orchestrator.stores.memory import MemoryStore
from orchestrator.stores.redis import RedisStore
from orchestrator.web.app import create_app

pytestmark = pytest.mark.redis
REDIS_URL = "redis://127.0.0.1:6379/0"
TOKEN_LIKE = (AUTH_TOKEN, APP_SECRET, WA_TOKEN, VERIFY_TOKEN)
SHORT_FLOW = """\
flow: intake
title: Test Clinic
start: greet
settings: {{no_reply_timeout: {timeout}}}
states:
  greet:
    say: "Hi from {tag}."
    next: ask_name
  ask_name:
    ask: "Your name?"
    input: text
    save: name
    next: ask_color
  ask_color:
    ask: "Favourite colour, {{{{ name }}}}?"
    input: text
    save: color
    next: done
  done:
    say: "Thanks {{{{ name }}}} ({tag})."
    end: finished
"""


async def drop(prefix: str) -> None:
    client = aioredis.Redis.from_url(REDIS_URL)
    keys = [k async for k in client.scan_iter(match=f"{prefix}:*", count=1000)]
    if keys:
        await client.delete(*keys)
    await client.aclose()


async def keys_of(prefix: str) -> list[str]:
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        return sorted([bytes(k).decode() async for k in client.scan_iter(match=f"{prefix}:*", count=1000)])
    finally:
        await client.aclose()


@pytest.fixture
def prefix() -> str:
    return f"rel-{uuid.uuid4().hex[:10]}"  # each fixture using it drops its keys afterwards


@pytest.fixture
def providers() -> Iterator[tuple[FakeTwilio, FakeGraph]]:
    with FakeTwilio() as twilio, FakeGraph() as graph:
        yield twilio, graph


@pytest.fixture
async def app(tmp_path: Path, prefix: str, providers: tuple[FakeTwilio, FakeGraph],
              monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[AsyncTestClient[Litestar]]:
    twilio, graph = providers
    monkeypatch.setenv("ORCHESTRATOR_CALENDAR_DB", str(tmp_path / "calendar.sqlite3"))
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "intake.yaml").write_text(SHORT_FLOW.format(tag="v1", timeout="10m"))
    settings = AppSettings(
        redis_url=REDIS_URL, key_prefix=prefix, flows_dir=str(flows), public_url=PUBLIC_URL,
        timer_poll_seconds=0.05, twilio_account_sid=ACCOUNT_SID, twilio_auth_token=AUTH_TOKEN,
        twilio_from_number=CLINIC, twilio_api_base=twilio.url, whatsapp_token=WA_TOKEN,
        whatsapp_phone_number_id=PHONE_NUMBER_ID, whatsapp_app_secret=APP_SECRET,
        whatsapp_verify_token=VERIFY_TOKEN, whatsapp_api_base=graph.url,
    )
    try:
        async with AsyncTestClient(create_app(settings)) as client:
            yield client
    finally:
        await drop(prefix)


def sms_post(client: AsyncTestClient[Litestar], body: str, sid: str, sender: str = "+15555550123",
             *, url: str | None = None, path: str = "/webhooks/twilio/sms") -> Any:
    form = sms_form(body, sid=sid, sender=sender)
    sig = twilio_signature(AUTH_TOKEN, url or PUBLIC_URL + path, form)
    return client.post(path, content=urlencode(form).encode(),
                       headers={"X-Twilio-Signature": sig, "Content-Type": "application/x-www-form-urlencoded"})


def wa_post(client: AsyncTestClient[Litestar], payload: Any, body: bytes | None = None) -> Any:
    raw = meta_body(payload) if body is None else body
    return client.post("/webhooks/whatsapp", content=raw,
                       headers={"X-Hub-Signature-256": meta_signature(raw), "Content-Type": "application/json"})


async def session_keys(prefix: str) -> list[str]:
    return [k for k in await keys_of(prefix) if k.endswith(":s") or ":d:" in k or k.endswith(":t")]


# ---- 1, 2: signatures ------------------------------------------------------------------------


async def test_01_bad_signature_403_nothing_stored(app: AsyncTestClient[Litestar], prefix: str) -> None:
    before = await session_keys(prefix)
    form = sms_form("hi", sid="SM0101")
    body = urlencode(form).encode()
    good = twilio_signature(AUTH_TOKEN, PUBLIC_URL + "/webhooks/twilio/sms", form)
    cases = {
        "missing": {},
        "wrong": {"X-Twilio-Signature": twilio_signature("not-the-token", PUBLIC_URL + "/webhooks/twilio/sms", form)},
    }
    for name, sig in cases.items():
        r = await app.post("/webhooks/twilio/sms", content=body,
                           headers={**sig, "Content-Type": "application/x-www-form-urlencoded"})
        assert r.status_code == 403, name
    flipped = body[:40] + bytes([body[40] ^ 1]) + body[41:]
    r = await app.post("/webhooks/twilio/sms", content=flipped,
                       headers={"X-Twilio-Signature": good, "Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 403
    wa = meta_body(wa_envelope(wa_value([wa_text("hi")])))
    r = await app.post("/webhooks/whatsapp", content=wa.replace(b"hi", b"ho"),
                       headers={"X-Hub-Signature-256": meta_signature(wa), "Content-Type": "application/json"})
    assert r.status_code == 403
    assert await session_keys(prefix) == before
    # the control: the same request, correctly signed, is stored
    assert (await sms_post(app, "hi", "SM0101")).status_code == 200
    assert len(await session_keys(prefix)) > len(before)


async def test_02_signature_behind_a_proxy_checked_against_the_public_url(app: AsyncTestClient[Litestar]) -> None:
    # Twilio signs the public https URL; the app sees http://testserver.local: accepted
    ok = await sms_post(app, "hi", "SM0201", url=PUBLIC_URL + "/webhooks/twilio/sms")
    assert ok.status_code == 200
    # the public URL with the default port, as Twilio's validator allows
    ok = await sms_post(app, "hi", "SM0202", sender="+15555550124", url="https://bot.example.com:443/webhooks/twilio/sms")
    assert ok.status_code == 200
    # a query string is part of what is signed
    form = sms_form("hi", sid="SM0203", sender="+15555550125")
    path = "/webhooks/twilio/sms?src=proxy"
    sig = twilio_signature(AUTH_TOKEN, PUBLIC_URL + path, form)
    ok = await app.post(path, content=urlencode(form).encode(),
                        headers={"X-Twilio-Signature": sig, "Content-Type": "application/x-www-form-urlencoded"})
    assert ok.status_code == 200
    # signed for the URL the app sees internally (not what Twilio requested): refused
    seen = await sms_post(app, "hi", "SM0204", sender="+15555550126",
                          url="http://testserver.local/webhooks/twilio/sms")
    assert seen.status_code == 403
    wrong_host = await sms_post(app, "hi", "SM0205", sender="+15555550127",
                                url="https://evil.example.com/webhooks/twilio/sms")
    assert wrong_host.status_code == 403


# ---- 8: a stalled lock holder is fenced off -------------------------------------------------------


async def test_08_stalled_lock_holder_late_write_refused(prefix: str) -> None:
    store = await RedisStore.connect(REDIS_URL, prefix)
    try:
        sid = "+15550000000:+15550000008"
        slow = await store.begin(sid, "d1", lock_ttl_seconds=0.2, wait_seconds=1)
        await asyncio.sleep(0.3)  # stalls past the lock's expiry
        fast = await store.begin(sid, "d2", lock_ttl_seconds=5, wait_seconds=1)
        assert fast.token and fast.version == slow.version == 0
        await store.commit(sid, fast.token, Commit(session=b"fast", version=1, expect_version=0, ttl_seconds=60,
                                                   dedupe_id="d2", reply=b"r2", contact="+15550000008"))
        with pytest.raises(StaleWrite):
            await store.commit(sid, slow.token, Commit(session=b"slow", version=1, expect_version=0,
                                                       ttl_seconds=60, dedupe_id="d1", reply=b"r1"))
        assert await store.load(sid) == b"fast"
        # even holding a fresh lock, a writer that loaded an old version is refused (fencing)
        again = await store.begin(sid, "d3", lock_ttl_seconds=5, wait_seconds=1)
        with pytest.raises(StaleWrite):
            await store.commit(sid, again.token, Commit(session=b"old", version=1, expect_version=0, ttl_seconds=60))
        await store.release(sid, again.token)
        assert await store.load(sid) == b"fast"
    finally:
        await store.close()
        await drop(prefix)


# ---- 9: delivery statuses never go backwards ------------------------------------------------------


async def test_09_out_of_order_statuses_never_go_backwards(prefix: str) -> None:
    redis_store = await RedisStore.connect(REDIS_URL, prefix)
    order = ["queued", "sent", "delivered", "read"]
    try:
        for store in (MemoryStore(), redis_store):
            for n, perm in enumerate(itertools.permutations(order)):
                mid = f"SM09-{n}"
                best = -1
                for status in perm:
                    await store.record_status(mid, status)
                    best = max(best, order.index(status))
                    kept = await store.get_status(mid)
                    assert kept is not None and kept[0] == order[best], (perm, kept)
                await store.record_status(mid, "failed", "30003")  # terminal beats everything
                await store.record_status(mid, "delivered")
                assert await store.get_status(mid) == ("failed", "30003")
    finally:
        await redis_store.close()
        await drop(prefix)


# ---- 12: fuzzed, truncated, huge and batched bodies --------------------------------------------


async def test_12_bad_huge_and_batched_bodies(app: AsyncTestClient[Litestar], providers: Any, prefix: str) -> None:
    _, graph = providers
    huge = b"Body=" + b"x" * (4 * 1024 * 1024)
    r = await app.post("/webhooks/twilio/sms", content=huge,
                       headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 413
    r = await app.post("/webhooks/whatsapp", content=b"{" * (4 * 1024 * 1024),
                       headers={"X-Hub-Signature-256": "sha256=00", "Content-Type": "application/json"})
    assert r.status_code == 413
    for bad in (b"", b"{", b"[]", b'{"entry": 5}', b'{"object":"whatsapp_business_account","entry":[{"changes":7}]}',
                b"\xff\xfe\x00", meta_body(wa_envelope(wa_value([wa_text("hi")])))[:60]):
        r = await wa_post(app, None, body=bad)
        assert 400 <= r.status_code < 500 or r.status_code == 200, (bad, r.status_code)
    assert await session_keys(prefix) == []
    # a batch: 2 entries x 2 changes x 3 messages, 12 different people: every one answered
    users = [f"1631555{n:04d}" for n in range(12)]
    it = iter(users)
    payload = {"object": "whatsapp_business_account", "entry": [
        {"id": "102290129340398", "changes": [
            {"field": "messages", "value": wa_value(
                [wa_text("hi", wamid=f"wamid.batch{u}", sender=u) for u in (next(it), next(it), next(it))],
                contacts=[])}
            for _ in range(2)]}
        for _ in range(2)]}
    r = await wa_post(app, payload)
    assert r.status_code == 200
    deadline = asyncio.get_running_loop().time() + 10
    while {m["to"] for m in graph.sent()} != set(users):
        assert asyncio.get_running_loop().time() < deadline, sorted({m["to"] for m in graph.sent()})
        await asyncio.sleep(0.05)


# ---- 13: a flow edited mid-conversation ----------------------------------------------------------


# ---- 14: STOP variants on every channel, then START -----------------------------------------------


class RecordingChannel:
    def __init__(self, name: str, idiom: str, sync: bool) -> None:
        self.name = name
        self.capabilities = Capabilities(idiom=idiom, sync_reply=sync)  # type: ignore[arg-type]
        self.sent: list[tuple[str, list[str], str | None]] = []
        self.failures: list[Exception] = []

    def verify(self, request: object) -> None: ...

    def parse(self, request: object) -> list[Inbound]:
        return []

    def render(self, messages: list[Outbound], ctx: ReplyContext) -> object:
        return None

    async def send(self, to: Address, messages: list[Outbound], ctx: ReplyContext) -> list[str]:
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append((to.contact, [m.text or "" for m in messages], ctx.idempotency_key))
        return [f"M{len(self.sent)}"]


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def rt(tmp_path: Path, prefix: str) -> AsyncIterator[Runtime]:
    flows = tmp_path / "rtflows"
    flows.mkdir()
    (flows / "intake.yaml").write_text(SHORT_FLOW.format(tag="v1", timeout="30s"))
    channels = ChannelRegistry()
    for ch in (RecordingChannel("r_sms", "sms", True), RecordingChannel("r_wa", "whatsapp", False),
               RecordingChannel("r_voice", "voice", True)):
        channels.register(ch)  # type: ignore[arg-type]
    store = await RedisStore.connect(REDIS_URL, prefix)
    runtime = await Runtime.create(AppSettings(flows_dir=str(flows), key_prefix=prefix, outbox_max_attempts=3),
                                   ConnectorRegistry(), channels, store=store, clock=Clock())
    try:
        yield runtime
    finally:
        await runtime.close()
        await drop(prefix)


def event(contact: str, text: str, mid: str, channel: str = "sms", kind: str = "text") -> Inbound:
    return Inbound(kind="event", address=Address(business="+15551230000", contact=contact), route_key="+15551230000",
                   event=Event(kind=kind, channel=channel, text=text, provider_id=mid))  # type: ignore[arg-type]


async def test_14_stop_variants_block_every_channel_start_reenables(rt: Runtime) -> None:
    from channels.twilio_sms import keyword_kind

    for n, word in enumerate(["STOP", "stop", " Stop. ", "unsubscribe", "STOPALL", "cancel", "quit", "End"]):
        assert keyword_kind(word) == "opt_out", word
        contact = f"+1555000{n:04d}"
        await rt.handle("r_sms", event(contact, "hi", f"a{n}"))
        reply = await rt.handle("r_sms", Inbound(kind="opt_out", address=Address(business="+15551230000",
                                                                                  contact=contact)))
        assert reply.opted_out and await rt.store.is_opted_out(contact)  # recorded before anything else
        for channel, idiom in (("r_sms", "sms"), ("r_wa", "whatsapp")):
            silent = await rt.handle(channel, event(contact, "Ann", f"b{n}{channel}", channel=idiom))
            assert silent.messages == []
        with pytest.raises(Exception, match="opted out"):
            await rt.start_outbound(Address(business="+15551230000", contact=contact), "r_wa", "intake")
        await rt.send_outbox()
        assert all(sent[0] != contact for ch in ("r_sms", "r_wa") for sent in rt.channels.get(ch).sent)  # type: ignore[attr-defined]
    await rt.handle("r_sms", Inbound(kind="opt_in", address=Address(business="+15551230000", contact="+15550000000")))
    assert not await rt.store.is_opted_out("+15550000000")
    await rt.start_outbound(Address(business="+15551230000", contact="+15550000000"), "r_wa", "intake")
    assert await rt.send_outbox() == 1


# ---- 13: a flow edited mid-conversation ----------------------------------------------------------


async def test_13_flow_edited_mid_conversation_keeps_its_revision(rt: Runtime) -> None:
    who = "+15550001301"
    first = await rt.handle("r_sms", event(who, "hi", "SM1301"))
    assert next(m.text for m in first.messages) == "Hi from v1."
    await rt.catalog.put_source("intake", SHORT_FLOW.format(tag="v2", timeout="30s"), write_file=False)
    await rt.handle("r_sms", event(who, "Ann", "SM1302"))
    last = await rt.handle("r_sms", event(who, "blue", "SM1303"))
    assert [m.text for m in last.messages if m.text] == ["Thanks Ann (v1)."]  # the running conversation stayed on r1
    fresh = await rt.handle("r_sms", event("+15550001302", "hi", "SM1304"))
    assert next(m.text for m in fresh.messages) == "Hi from v2."  # a new one starts on r2


# ---- 15: provider 5xx / timeout retried with the same key; 4xx permanent ----------------------------


async def test_15_provider_5xx_retried_same_key_4xx_permanent(rt: Runtime) -> None:
    wa = rt.channels.get("r_wa")
    clock = rt.clock
    assert isinstance(clock, Clock)
    wa.failures = [SendError("503", retryable=True, status=503), TimeoutError("read timed out")]  # type: ignore[attr-defined]
    await rt.start_outbound(Address(business="+15551230000", contact="+15550001501"), "r_wa", "intake")
    assert await rt.send_outbox() == 0
    for _ in range(3):
        clock.now += 10  # past the backoff
        await rt.send_outbox()
    sent = wa.sent  # type: ignore[attr-defined]
    assert len(sent) == 1 and sent[0][0] == "+15550001501"
    key = sent[0][2]
    assert key and key.startswith("+15551230000:+15550001501|")
    status = await rt.store.get_status(key)
    assert status is not None and status[0] == "sent"
    # 4xx: permanent, recorded, never retried
    wa.failures = [SendError("400 invalid recipient", retryable=False, status=400, code="131026")]  # type: ignore[attr-defined]
    await rt.start_outbound(Address(business="+15551230000", contact="+15550001502"), "r_wa", "intake")
    await rt.send_outbox()
    for _ in range(3):
        clock.now += 400
        await rt.send_outbox()
    assert [s for s in wa.sent if s[0] == "+15550001502"] == []  # type: ignore[attr-defined]
    claimed = await rt.store.claim_outbox(clock.now + 10_000, 100, 1)
    assert claimed == []
    failed_keys = [k for k in await keys_of(rt.store.prefix) if ":st:" in k]  # type: ignore[attr-defined]
    statuses = [await rt.store.get_status(k.split(":st:", 1)[1]) for k in failed_keys]
    assert ("failed", "131026") in statuses


# ---- 16: a call that hangs up with no final status callback ------------------------------------


async def test_16_hangup_without_callback_idle_timeout_then_clean_next_call(rt: Runtime, prefix: str) -> None:
    caller = "+15550001601"
    sid = f"+15551230000:{caller}"
    first = await rt.handle("r_voice", event(caller, "", "CA1601:0", channel="voice", kind="start"))
    assert [m.text for m in first.messages if m.text][:2] == ["Hi from v1.", "Your name?"]
    await rt.handle("r_voice", event(caller, "Ann", "CA1601:1", channel="voice", kind="speech"))
    # the caller is gone and no status callback ever arrives: nothing stays locked, and the
    # idle conversation expires with its session TTL
    keys = await keys_of(prefix)
    assert not [k for k in keys if k.endswith(":l")]
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        ttl = await client.ttl(f"{prefix}:{{{sid}}}:s")
    finally:
        await client.aclose()
    assert 0 < ttl <= 7 * 86400
    second = await rt.handle("r_voice", event(caller, "", "CA1602:0", channel="voice", kind="start"))
    assert [m.text for m in second.messages if m.text][:2] == ["Hi from v1.", "Your name?"]  # a clean start
    raw = await rt.store.load(sid)
    assert raw is not None
    s = msgspec.msgpack.decode(raw, type=Session)
    assert s.state == "ask_name" and "name" not in s.vars and s.status == "active"


# ---- 17: privacy ------------------------------------------------------------------------------


async def test_17_privacy_no_phone_in_logs_every_key_has_ttl(
    app: AsyncTestClient[Litestar], prefix: str, capsys: pytest.CaptureFixture[str],
) -> None:
    # what `orchestrator serve` installs, at DEBUG so the per-turn lines are scanned too
    configure_logging(json=True, redact=True, level=logging.DEBUG)
    caller = "+15555550177"
    try:
        for n, text in enumerate(["hi", "Ann", "blue"]):
            assert (await sms_post(app, text, f"SM17{n}", sender=caller)).status_code == 200
        await sms_post(app, "hi", "SM17bad", sender=caller, url="https://wrong.example.com/x")  # a 403, logged
        await wa_post(app, wa_envelope(wa_value([wa_text("hi", wamid="wamid.17", sender="16315551717")])))
        await asyncio.sleep(0.3)
    finally:
        root = logging.getLogger()
        for handler in list(root.handlers):
            if getattr(handler, "_orchestrator", False):
                root.removeHandler(handler)
    logged = capsys.readouterr().err
    assert '"msg": "turn"' in logged  # the turns were logged, so the scan means something
    for secret in (*TOKEN_LIKE, caller, caller[1:], "16315551717"):
        assert secret not in logged, f"{secret[:5]}... leaked into the logs"
    client = aioredis.Redis.from_url(REDIS_URL)
    store = await RedisStore.connect(REDIS_URL, prefix)
    try:
        keys = await keys_of(prefix)
        assert any(caller in k for k in keys)
        for key in keys:
            assert await client.ttl(key) != -1, f"{key} has no TTL"
        await store.set_opt_out(caller, True)
        await store.erase_contact(caller)
        left = [k for k in await keys_of(prefix) if caller in k]
        assert all(k.endswith(f"optout:{caller}") or "audit" in k for k in left), left
        for key in await keys_of(prefix):
            assert await client.ttl(key) != -1, f"{key} has no TTL"
    finally:
        await store.close()
        await client.aclose()
