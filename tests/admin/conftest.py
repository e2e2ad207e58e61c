"""Fixtures for the admin API: a runtime on the memory or the real Redis store, the shipped
flows in a temporary directory, the embedded calendar on a temporary SQLite file, fake
channels that record what they send, and the litestar app with the admin router."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from flowkit import FIXED_NOW, FLOWS_DIR
from rediskit import redis_stores

from integrations.embedded_calendar import EmbeddedCalendar
from orchestrator.model import Event
from orchestrator.plugins.channels import Address, Capabilities, ChannelRegistry, Inbound, Outbound, ReplyContext
from orchestrator.plugins.connectors import ConnectorRegistry
from orchestrator.runtime.pipeline import Runtime
from orchestrator.runtime.replies import TurnReply
from orchestrator.settings import AppSettings
from orchestrator.stores.base import SessionStore
from orchestrator.stores.memory import MemoryStore
from orchestrator.web.app import create_app

TOKEN = "test-admin-token-0123456789"
BIZ = "+15555550100"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class FakeChannel:
    def __init__(self, name: str, idiom: str, sync: bool) -> None:
        self.name = name
        self.capabilities = Capabilities(idiom=idiom, sync_reply=sync)  # type: ignore[arg-type]
        self.sent: list[tuple[str, list[Outbound]]] = []

    def verify(self, request: object) -> None: ...
    def parse(self, request: object) -> list[Inbound]: return []
    def render(self, messages: list[Outbound], ctx: ReplyContext) -> object: return None

    async def send(self, to: Address, messages: list[Outbound], ctx: ReplyContext) -> list[str]:
        self.sent.append((to.contact, list(messages)))
        return [f"M{len(self.sent)}"]


class Clock:
    def __init__(self) -> None:
        self.now = FIXED_NOW

    def __call__(self) -> float:
        return self.now


class Env:
    """The runtime, its fake channels and clock, and a way to talk as a contact."""

    def __init__(self, runtime: Runtime, sms: FakeChannel, wa: FakeChannel, clock: Clock, flows: Path) -> None:
        self.runtime, self.sms, self.wa, self.clock, self.flows = runtime, sms, wa, clock, flows
        self._n = 0

    async def say(self, contact: str, text: str, channel: str = "sms", kind: str = "text") -> TurnReply:
        self._n += 1
        self.clock.now += 7
        adapter = "fake_sms" if channel == "sms" else "fake_wa"
        event = Event(kind=kind, channel=channel, text=text, provider_id=f"M{self._n}-{uuid.uuid4().hex[:6]}")  # type: ignore[arg-type]
        return await self.runtime.handle(
            adapter, Inbound(kind="event", address=Address(business=BIZ, contact=contact), route_key=BIZ, event=event))

    async def converse(self, contact: str, lines: list[str], channel: str = "sms") -> list[TurnReply]:
        return [await self.say(contact, line, channel) for line in lines]


BOOK = ["hi", "book", "Ann Lee", "cleaning", "tomorrow at 10am", "1"]
HOURS = ["hi", "hours", "no"]
AGENT = ["hi", "agent"]


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[tuple[SessionStore, str | None]]:
    if request.param == "memory":
        yield MemoryStore(), None
        return
    async with redis_stores("admin") as [redis_store]:
        yield redis_store, redis_store.prefix


async def make_env(store: SessionStore, tmp_path: Path, edit: Callable[[Path], None] | None = None) -> Env:
    """The shipped flows copied to tmp_path/flows (`edit` may change them first), fake channels,
    the embedded calendar, the admin token, a fixed clock: a runtime on `store`."""
    flows = tmp_path / "flows"
    flows.mkdir()
    for path in FLOWS_DIR.glob("*.yaml"):
        shutil.copy(path, flows / path.name)
    if edit is not None:
        edit(flows)
    sms, wa = FakeChannel("fake_sms", "sms", True), FakeChannel("fake_wa", "whatsapp", False)
    channels = ChannelRegistry()
    channels.register(sms)  # type: ignore[arg-type]
    channels.register(wa)  # type: ignore[arg-type]
    settings = AppSettings(flows_dir=str(flows), admin_token=TOKEN, default_flow="dental_booking",
                           twilio_from_number=BIZ)
    clock = Clock()
    connectors = ConnectorRegistry()
    connectors.register(EmbeddedCalendar(path=str(tmp_path / "cal.sqlite3")), "calendar")
    runtime = await Runtime.create(settings, connectors, channels, store=store, clock=clock)
    return Env(runtime, sms, wa, clock, flows)


@pytest.fixture
async def env(store: tuple[SessionStore, str | None], tmp_path: Path) -> AsyncIterator[Env]:
    yield await make_env(store[0], tmp_path)


@pytest.fixture
async def client(env: Env) -> AsyncIterator[Any]:
    settings = env.runtime.settings
    app = create_app(settings, runtime=env.runtime, start_background=False)
    # httpx on this event loop (litestar's AsyncTestClient runs the app on a portal thread's loop,
    # which the Redis connections of this test's loop cannot be used from); the lifespan only
    # publishes the given runtime, done here by hand.
    app.state.runtime = env.runtime
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as c:
        yield c
