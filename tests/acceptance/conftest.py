"""Acceptance fixtures: the real app (create_app) on the shipped flows/, with the fake
Twilio REST and Graph servers, signed webhooks in, TwiML / Graph sends out."""

from __future__ import annotations

import asyncio
import shutil
import uuid
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from fakes.graph import PHONE_NUMBER_ID, WA_TOKEN, FakeGraph
from fakes.signing import APP_SECRET, CLINIC, PUBLIC_URL, VERIFY_TOKEN, meta_signature, twilio_signature
from fakes.twilio import ACCOUNT_SID, AUTH_TOKEN, FakeTwilio
from litestar import Litestar
from litestar.testing import AsyncTestClient

from orchestrator.settings import AppSettings
from orchestrator.web.app import create_app

ROOT = Path(__file__).resolve().parents[2]
FLOWS = ROOT / "flows"
ADMIN_TOKEN = "acceptance-admin-token-xyz"


@pytest.fixture
def flows_copy(tmp_path: Path) -> Path:
    """A private copy of the shipped flows (tests may edit it)."""
    target = tmp_path / "flows"
    target.mkdir()
    for f in FLOWS.glob("*.yaml"):
        shutil.copy(f, target / f.name)
    return target


def make_settings(flows_dir: Path, fake_twilio: FakeTwilio, graph: FakeGraph, **extra: Any) -> AppSettings:
    values: dict[str, Any] = dict(
        flows_dir=str(flows_dir), public_url=PUBLIC_URL, timer_poll_seconds=0.05, default_flow="dental_booking",
        admin_token=ADMIN_TOKEN, reload_seconds=0, retention_interval_seconds=0,
        twilio_account_sid=ACCOUNT_SID, twilio_auth_token=AUTH_TOKEN, twilio_from_number=CLINIC,
        twilio_api_base=fake_twilio.url, whatsapp_token=WA_TOKEN, whatsapp_phone_number_id=PHONE_NUMBER_ID,
        whatsapp_app_secret=APP_SECRET, whatsapp_verify_token=VERIFY_TOKEN, whatsapp_api_base=graph.url,
    )
    values.update(extra)
    return AppSettings(**values)


@pytest.fixture
def settings(flows_copy: Path, fake_twilio: FakeTwilio, graph: FakeGraph) -> AppSettings:
    return make_settings(flows_copy, fake_twilio, graph)


@pytest.fixture
async def client(settings: AppSettings) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(create_app(settings)) as c:
        yield c


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    prefix = f"qa-{uuid.uuid4().hex[:10]}"
    yield prefix
    import redis

    r = redis.Redis.from_url("redis://127.0.0.1:6379/0")
    keys = list(r.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        r.delete(*keys)
    r.close()


async def twilio_post(client: AsyncTestClient[Litestar], path: str, form: list[tuple[str, str]],
                      query: str = "") -> Any:
    url = f"{path}?{query}" if query else path
    sig = twilio_signature(AUTH_TOKEN, f"{PUBLIC_URL}{url}", form)
    return await client.post(url, content=urlencode(form).encode(), headers={
        "X-Twilio-Signature": sig, "Content-Type": "application/x-www-form-urlencoded"})


async def twilio_post_url(client: AsyncTestClient[Litestar], absolute: str, form: list[tuple[str, str]]) -> Any:
    """POST to an absolute action URL the server put into TwiML, signed for exactly that URL."""
    assert absolute.startswith(PUBLIC_URL), absolute
    return await twilio_post(client, absolute[len(PUBLIC_URL):], form)


async def meta_post(client: AsyncTestClient[Litestar], body: bytes) -> Any:
    return await client.post("/webhooks/whatsapp", content=body, headers={
        "X-Hub-Signature-256": meta_signature(body), "Content-Type": "application/json"})


def twiml(response: Any) -> ET.Element:
    assert response.status_code == 200, (response.status_code, response.text)
    assert response.headers["content-type"].startswith(("text/xml", "application/xml")), response.headers
    return ET.fromstring(response.content)


def sms_texts(response: Any) -> list[str]:
    return [m.text or "" for m in twiml(response) if m.tag == "Message"]


async def wait_for(predicate: Any, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out waiting"
        await asyncio.sleep(0.02)


@pytest.fixture(autouse=True)
def private_calendar(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test books into its own embedded calendar file (never the developer's var/)."""
    path = tmp_path / "calendar.sqlite3"
    monkeypatch.setenv("ORCHESTRATOR_CALENDAR_DB", str(path))
    return path


async def admin_get(client: AsyncTestClient[Litestar], path: str, **params: Any) -> Any:
    response = await client.get(path, params=params, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert response.status_code == 200, (response.status_code, response.text)
    return response.json()


async def conversation_of(client: AsyncTestClient[Litestar], contact: str) -> dict[str, Any]:
    """The newest conversation of `contact`, with its transcript, through the admin API."""
    rows = await admin_get(client, "/api/conversations", contact=contact)
    assert rows, f"no conversation recorded for {contact}"
    conv_id = rows[0].get("id") or rows[0].get("conversation_id")
    return await admin_get(client, f"/api/conversations/{conv_id}")  # type: ignore[no-any-return]
