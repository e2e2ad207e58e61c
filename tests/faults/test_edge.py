"""Webhook input at the edge, trust and privacy (issue #12): one bad item never loses a batch,
start-up refuses an unknown signed URL, erasure by every contact id a channel uses, a keyed
audit hash, refused admin requests rate-limited and audited in bounded space, quiet library logs.

The app runs on the real Redis (6379, a private key prefix) with the fake Twilio and Graph
servers; the STOP variants are a property test in tests/property/test_keywords.py."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

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
from prometheus_client import REGISTRY
from rediskit import REDIS_URL, drop_prefix, unique_prefix
from test_reliability import SHORT_FLOW

from orchestrator.errors import ConfigError
from orchestrator.logs import configure_logging
from orchestrator.records.audit import AuditLog, RefusalLimiter, audit_key, contact_ref
from orchestrator.settings import AppSettings
from orchestrator.stores.memory import MemoryStore
from orchestrator.web import app as server
from orchestrator.web.app import create_app, parse_form

pytestmark = pytest.mark.redis
ADMIN = "edge-admin-token-0123456789"
AUTH = {"Authorization": f"Bearer {ADMIN}"}
BSUID = "US.13491208655302741918"


def settings_for(flows: Path, prefix: str, twilio: FakeTwilio, graph: FakeGraph, **extra: Any) -> AppSettings:
    values: dict[str, Any] = dict(
        redis_url=REDIS_URL, key_prefix=prefix, flows_dir=str(flows), public_url=PUBLIC_URL, admin_token=ADMIN,
        default_flow="intake", timer_poll_seconds=0.05, twilio_account_sid=ACCOUNT_SID,
        twilio_auth_token=AUTH_TOKEN, twilio_from_number=CLINIC, twilio_api_base=twilio.url,
        whatsapp_token=WA_TOKEN, whatsapp_phone_number_id=PHONE_NUMBER_ID, whatsapp_app_secret=APP_SECRET,
        whatsapp_verify_token=VERIFY_TOKEN, whatsapp_api_base=graph.url, reload_seconds=0,
        retention_interval_seconds=0,
    )
    values.update(extra)
    return AppSettings(**values)


@pytest.fixture
def providers() -> Iterator[tuple[FakeTwilio, FakeGraph]]:
    with FakeTwilio() as twilio, FakeGraph() as graph:
        yield twilio, graph


@pytest.fixture
def flows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ORCHESTRATOR_CALENDAR_DB", str(tmp_path / "calendar.sqlite3"))
    folder = tmp_path / "flows"
    folder.mkdir()
    (folder / "intake.yaml").write_text(SHORT_FLOW.format(tag="v1", timeout="10m"))
    return folder


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    name = unique_prefix("edge")
    yield name
    await drop_prefix(name)


@pytest.fixture
async def app(flows: Path, prefix: str, providers: tuple[FakeTwilio, FakeGraph]
              ) -> AsyncIterator[AsyncTestClient[Litestar]]:
    twilio, graph = providers
    async with AsyncTestClient(create_app(settings_for(flows, prefix, twilio, graph))) as client:
        yield client


def wa_post(client: AsyncTestClient[Litestar], raw: bytes) -> Any:
    return client.post("/webhooks/whatsapp", content=raw,
                       headers={"X-Hub-Signature-256": meta_signature(raw), "Content-Type": "application/json"})


def sms_raw(client: AsyncTestClient[Litestar], body: str, *, url: str = PUBLIC_URL + "/webhooks/twilio/sms",
            sender: str = "+15555550123", host: str | None = None, extra: dict[str, str] | None = None) -> Any:
    """An SMS webhook whose form is sent as written (`body` may hold raw percent-encodings),
    signed over the values the server decodes, as Twilio signs its own values."""
    sid = "SM" + hashlib.sha256(f"{sender}{body}{url}".encode()).hexdigest()[:32]
    head = urlencode([p for p in sms_form("x", sid=sid, sender=sender) if p[0] != "Body"])
    raw = f"{head}&Body={body}"
    headers = {"X-Twilio-Signature": twilio_signature(AUTH_TOKEN, url, parse_form(raw)),
               "Content-Type": "application/x-www-form-urlencoded", **(extra or {})}
    if host:
        headers["Host"] = host
    return client.post("/webhooks/twilio/sms", content=raw.encode(), headers=headers)


def counter(handled: str, channel: str = "whatsapp") -> float:
    return REGISTRY.get_sample_value("orchestrator_webhook_items_malformed_total",
                                     {"channel": channel, "handled": handled}) or 0.0


async def texts_to(graph: FakeGraph, user: str, want: str, *, timeout: float = 10.0) -> list[str]:
    """The texts the Graph fake got for `user`, once one of them contains `want`."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        got = [json.dumps(m) for m in graph.sent() if m.get("to") == user]
        if any(want in g for g in got):
            return got
        assert asyncio.get_running_loop().time() < deadline, (user, want, got)
        await asyncio.sleep(0.05)


# ---- one bad item never loses a WhatsApp batch ----------------------------------------------------


async def test_edge_01_bad_whatsapp_items_are_skipped_or_reprompted_the_batch_goes_on(
    app: AsyncTestClient[Litestar], providers: tuple[FakeTwilio, FakeGraph],
) -> None:
    _, graph = providers
    users = [f"1631555{n:04d}" for n in range(8)]
    first = wa_envelope(wa_value([wa_text("hi", wamid=f"wamid.hi{u}", sender=u) for u in users], contacts=[]))
    assert (await wa_post(app, meta_body(first))).status_code == 200
    for u in users:
        await texts_to(graph, u, "Your name?")
    before = {h: counter(h) for h in ("skipped", "unreadable")}
    good, no_coords, image_str, surrogate, object_title, unknown_type, good2, bad_status = users
    base = {"timestamp": "1764072000"}
    batch = [
        wa_text("Ann", wamid="wamid.b0", sender=good),
        {**base, "from": no_coords, "id": "wamid.b1", "type": "location", "location": {"name": "Clinic"}},
        {**base, "from": image_str, "id": "wamid.b2", "type": "image", "image": "str"},
        wa_text("\ud800", wamid="wamid.b3", sender=surrogate),
        {**base, "from": object_title, "id": "wamid.b4", "type": "interactive",
         "interactive": {"type": "button_reply", "button_reply": {"id": "x", "title": {"nested": True}}}},
        {**base, "from": unknown_type, "id": "wamid.b5", "type": {"an": "object"}},
        {**base, "id": "wamid.b6", "type": "text", "text": {"body": "who am I?"}},  # names no contact
        "junk",
        wa_text("Bob", wamid="wamid.b7", sender=good2),
    ]
    raw = meta_body(wa_envelope(wa_value(batch, contacts=[]),
                                wa_value(statuses=[{"status": "read"}, {"id": "wamid.out", "status": "read",
                                                                        "recipient_id": bad_status}])))
    assert b"\\ud800" in raw  # Meta's escaping of a lone surrogate, as sent
    r = await wa_post(app, raw)
    assert r.status_code == 200
    await texts_to(graph, good, "Favourite colour, Ann?")
    await texts_to(graph, good2, "Favourite colour, Bob?")
    for u in (no_coords, image_str, surrogate, object_title, unknown_type):
        got = await texts_to(graph, u, "Your name?")
        assert sum("Your name?" in g for g in got) == 2, (u, got)  # asked again, not lost, not advanced
    assert counter("skipped") - before["skipped"] == 3  # no contact, "junk", a status without an id
    assert counter("unreadable") - before["unreadable"] == 4  # the object title only loses its title
    # Meta retries nothing: the same batch again is answered from the dedupe store, no new texts
    sent = len(graph.sent())
    assert (await wa_post(app, raw)).status_code == 200
    await asyncio.sleep(0.3)
    assert len(graph.sent()) == sent


async def test_edge_02_twilio_body_with_invalid_utf8_percent_encodings_is_a_turn(
    app: AsyncTestClient[Litestar],
) -> None:
    before = counter("unreadable", "twilio_sms")
    for n, body in enumerate(["%FF%FE", "%ED%A0%80", "Ann%ED%A0%80", "%C3", "%F0%9F%98"]):
        sender = f"+1555555{n:04d}"
        first = await sms_raw(app, quote("hello"), sender=sender)
        assert first.status_code == 200 and "Your name?" in first.text, first.text
        r = await sms_raw(app, body, sender=sender)
        assert r.status_code == 200, body
        assert "Your name?" in r.text and "Thanks" not in r.text, (body, r.text)  # asked again, nothing saved
        assert "Favourite colour, Ann?" in (await sms_raw(app, "Ann", sender=sender)).text
    assert counter("unreadable", "twilio_sms") - before == 5
    stop = await sms_raw(app, "STOP%FF", sender="+15555559999")  # an opt-out is still one
    assert "unsubscribed" in stop.text.lower() or "opted out" in stop.text.lower(), stop.text


# ---- the signed URL: ORCHESTRATOR_PUBLIC_URL or an explicit opt-in ---------------------------------


def test_edge_03_start_up_refuses_twilio_webhooks_without_a_public_url(
    flows: Path, providers: tuple[FakeTwilio, FakeGraph], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    twilio, graph = providers
    with pytest.raises(ConfigError, match=r"ORCHESTRATOR_PUBLIC_URL.*ORCHESTRATOR_TRUST_PROXY_HEADERS=1"):
        create_app(settings_for(flows, "unused", twilio, graph, public_url=None), start_background=False)
    # WhatsApp signs the body, not the URL: a WhatsApp-only deployment needs no public URL
    create_app(settings_for(flows, "unused", twilio, graph, public_url=None, twilio_account_sid=None,
                            twilio_auth_token=None, twilio_from_number=None), start_background=False)
    create_app(settings_for(flows, "unused", twilio, graph, public_url=None, trust_proxy_headers=True),
               start_background=False)
    for name in ("ORCHESTRATOR_PUBLIC_URL", "ORCHESTRATOR_TRUST_PROXY_HEADERS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TWILIO_ACCOUNT_SID", ACCOUNT_SID)
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", AUTH_TOKEN)
    monkeypatch.setenv("ORCHESTRATOR_FLOWS_DIR", str(flows))
    monkeypatch.setattr(logging.getLogger(), "handlers", list(logging.getLogger().handlers))
    assert server.main() == 2  # `orchestrator serve`, before uvicorn starts
    err = capsys.readouterr().err
    assert "ORCHESTRATOR_PUBLIC_URL is not set" in err and "ORCHESTRATOR_TRUST_PROXY_HEADERS=1" in err


async def test_edge_04_a_request_signed_for_another_deployment_is_refused(
    app: AsyncTestClient[Litestar], flows: Path, prefix: str, providers: tuple[FakeTwilio, FakeGraph],
) -> None:
    other = "https://other-deployment.example"
    r = await sms_raw(app, "hi", url=other + "/webhooks/twilio/sms", host="other-deployment.example",
                      extra={"X-Forwarded-Proto": "https"})
    assert r.status_code == 403
    assert (await sms_raw(app, "hi")).status_code == 200
    # the operator's opt-in: the URL comes from the proxy's headers (and only then)
    twilio, graph = providers
    trusting = settings_for(flows, prefix, twilio, graph, public_url=None, trust_proxy_headers=True)
    async with AsyncTestClient(create_app(trusting)) as client:
        r = await sms_raw(client, "hi", url="https://proxy.example/webhooks/twilio/sms",
                          extra={"X-Forwarded-Proto": "https", "X-Forwarded-Host": "proxy.example"})
        assert r.status_code == 200


# ---- erasure by every id a channel keys a contact by ----------------------------------------------


async def contact_traces(prefix: str, needle: str) -> list[str]:
    """Every key under `prefix` whose name or content holds `needle`."""
    client = aioredis.Redis.from_url(REDIS_URL)
    found = []
    try:
        async for raw in client.scan_iter(match=f"{prefix}:*", count=1000):
            key = bytes(raw).decode()
            kind = (await client.type(key)).decode()
            if kind == "string":
                content = [await client.get(key)]
            elif kind == "hash":
                content = [b"%s=%s" % kv for kv in (await client.hgetall(key)).items()]
            elif kind == "zset":
                content = await client.zrange(key, 0, -1)
            elif kind == "set":
                content = list(await client.smembers(key))
            else:
                content = await client.lrange(key, 0, -1)
            if needle in key or any(needle.encode() in bytes(c or b"") for c in content):
                found.append(key)
    finally:
        await client.aclose()
    return sorted(found)


async def test_edge_05_a_whatsapp_contact_known_only_by_user_id_is_erased(
    app: AsyncTestClient[Litestar], prefix: str, providers: tuple[FakeTwilio, FakeGraph],
) -> None:
    _, graph = providers
    contacts = [{"profile": {"name": "Ana"}, "user_id": BSUID}]

    def said(text: str, n: int) -> bytes:
        msg = {"from_user_id": BSUID, "id": f"wamid.u{n}", "timestamp": "1", "type": "text", "text": {"body": text}}
        return meta_body(wa_envelope(wa_value([msg], contacts=contacts)))

    assert (await wa_post(app, said("hi", 1))).status_code == 200
    await texts_to(graph, BSUID, "Your name?")
    assert (await wa_post(app, said("Ana", 2))).status_code == 200
    await texts_to(graph, BSUID, "Favourite colour, Ana?")
    assert (await wa_post(app, said("STOP", 3))).status_code == 200
    assert len(await contact_traces(prefix, BSUID)) >= 5
    exported = await app.get(f"/api/contacts/{BSUID}", headers=AUTH)
    assert exported.status_code == 200, exported.text
    assert exported.json()["opted_out"] is True and exported.json()["sessions"]
    erased = await app.delete(f"/api/contacts/{BSUID}", headers=AUTH)
    assert erased.status_code == 200, erased.text
    assert erased.json()["complete"] is True and erased.json()["opted_out"] is True
    assert await contact_traces(prefix, BSUID) == [f"{prefix}:optout:{BSUID}"]  # the opt-out stays
    audit = (await app.get("/api/audit", headers=AUTH)).json()
    assert any(e["action"] == "DELETE /api/contacts/{phone:str}" and e["status"] == 200 for e in audit)
    for bad in ("US 1349", "../etc", "x" * 300):
        assert (await app.delete(f"/api/contacts/{quote(bad, safe='')}", headers=AUTH)).status_code in (400, 404)


# ---- the audit log: a keyed hash; refusals rate-limited and counted per minute ----------------------


async def test_edge_06_audit_contact_refs_are_keyed_not_a_bare_sha256(
    app: AsyncTestClient[Litestar], prefix: str,
) -> None:
    phone = "+15555550123"
    bare = hashlib.sha256(phone.encode()).hexdigest()[:16]
    assert (await app.get(f"/api/contacts/{phone}", headers=AUTH)).status_code == 200
    entry = (await app.get("/api/audit", headers=AUTH)).json()[-1]
    assert entry["target"].startswith("contact:") and bare not in entry["target"]
    key = audit_key(AppSettings(admin_token=ADMIN))
    assert entry["target"] == contact_ref(phone, key)  # stable: an erasure can be proved later
    assert key != ADMIN.encode() and audit_key(AppSettings(admin_token=ADMIN, audit_key="k" * 32)) == b"k" * 32
    assert contact_ref(phone, b"another deployment") != entry["target"]
    assert bare not in "".join(await contact_traces(prefix, "contact:"))


async def test_edge_07_refused_admin_requests_are_rate_limited_and_audited_in_bounded_space(
    app: AsyncTestClient[Litestar], prefix: str,
) -> None:
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        statuses = [(await app.get("/api/flows", headers={"Authorization": "Bearer wrong"})).status_code
                    for _ in range(60)]
        assert statuses[:20] == [401] * 20 and set(statuses[20:]) == {429}, statuses
        limited = await app.get("/api/flows")
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
        assert await client.zcard(f"{prefix}:audit") == 0  # no entry per refused request
        assert sum(int(v) for v in (await client.hgetall(f"{prefix}:audit:refused")).values()) == 20
        assert await client.ttl(f"{prefix}:audit:refused") > 0
        # the holder of the token is never limited, and sees the refusals in the audit log
        ok = await app.get("/api/audit", headers=AUTH)
        assert ok.status_code == 200
        refused = [e for e in ok.json() if e["who"] == "anonymous"]
        assert sum(e["detail"]["count"] for e in refused) == 20
    finally:
        await client.aclose()


async def test_edge_08_refusal_counts_are_purged_with_the_retention() -> None:
    clock = [1_800_000_000.0]
    log = AuditLog(MemoryStore(), 3600, clock=lambda: clock[0])
    for _ in range(3):
        await log.refused()
    clock[0] += 7200
    await log.refused()
    assert [e.detail["count"] for e in await log.entries()] == [1]  # past the retention: not shown
    assert await log.purge_before(clock[0] - 3600) == 1
    limiter = RefusalLimiter(burst=2, per_second=1.0, max_clients=3, clock=lambda: clock[0])
    assert [limiter.allow("a") for _ in range(3)] == [True, True, False]
    clock[0] += 1.0
    assert limiter.allow("a") and not limiter.allow("a")
    for ip in ("b", "c", "d", "e"):
        limiter.allow(ip)
    assert len(limiter._buckets) == 3  # bounded however many addresses come


# ---- logs: chatty library loggers at WARNING ------------------------------------------------------


async def test_edge_09_twilio_http_client_does_not_log_every_request(
    app: AsyncTestClient[Litestar], providers: tuple[FakeTwilio, FakeGraph],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    twilio, _ = providers
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [h for h in root.handlers if not getattr(h, "_orchestrator", False)])
    monkeypatch.setattr(logging.getLogger("twilio.http_client"), "level", logging.NOTSET)
    configure_logging(json=True)
    [ours] = [h for h in root.handlers if getattr(h, "_orchestrator", False)]
    stream = io.StringIO()
    ours.setStream(stream)  # type: ignore[attr-defined]
    started = await app.post("/api/conversations", headers=AUTH,
                             json={"contact": "+15555550177", "flow": "intake", "channel": "sms"})
    assert started.status_code == 201, started.text
    deadline = asyncio.get_running_loop().time() + 10
    while not twilio.messages():
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.05)
    lines = [json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]
    assert not [line for line in lines if line["logger"] == "twilio.http_client"], lines
    assert logging.getLogger("twilio.http_client").getEffectiveLevel() == logging.WARNING
    logging.getLogger("twilio.http_client").warning("kept")
    assert '"kept"' in stream.getvalue()
