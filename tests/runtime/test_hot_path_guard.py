"""CI guard for the hot path (PERFORMANCE.md): a turn costs 2 Redis round trips (a
conversation's first and last turns too: its record is written in the commit script), builds
no `transitions.Machine` and calls no `add_model`.

Round trips are counted on both transports of the real RedisStore: its redis.asyncio client
(each `execute_command` is one round trip, each pipeline `execute` is one) and its lean
hot-path connection (`_resp.LeanRedis`: each `execute` is one command written and its reply
read, even when several callers' commands share one write), against the shared Redis on 6379
under a private key prefix.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pytest
import redis.asyncio as aioredis
import transitions.core
from hypothesis import given, settings
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator

from channels._twilio import FormParams, TwilioSignatureVerifier
from orchestrator.model import Event, Outbound
from orchestrator.plugins.channels import Address, Capabilities, ChannelRegistry, Inbound, ReplyContext
from orchestrator.plugins.connectors import ConnectorRegistry
from orchestrator.runtime.pipeline import Runtime
from orchestrator.settings import AppSettings
from orchestrator.stores.redis import RedisStore
from orchestrator.web.app import parse_form

pytestmark = pytest.mark.redis
ROOT = Path(__file__).resolve().parents[2]
REDIS_URL = "redis://127.0.0.1:6379/0"
BUSINESS = "+15551230000"
SCRIPT = ["hi", "1", "Alex Morgan", "cleaning", "tomorrow at 10am", "1"]


class GuardChannel:
    name = "guard_sms"
    capabilities = Capabilities(idiom="sms", sync_reply=True)

    def verify(self, request: object) -> None: ...

    def parse(self, request: object) -> list[Inbound]:
        return []

    def render(self, messages: list[Outbound], ctx: ReplyContext) -> object:
        return None

    async def send(self, to: Address, messages: list[Outbound], ctx: ReplyContext) -> list[str]:
        return []


class RoundTrips:
    """Counts the round trips of a RedisStore: each command or pipeline execution of its
    redis-py client, and each command of its lean transport."""

    def __init__(self, store: RedisStore) -> None:
        self.count = 0
        self.commands: list[str] = []
        client = store._r
        lean = store._lean
        assert lean is not None, "the hot path should use the lean transport on a redis:// URL"
        lean_execute = lean.execute

        async def counted_lean(*args: Any) -> Any:
            self.count += 1
            self.commands.append(f"lean {args[0]}")
            return await lean_execute(*args)

        lean.execute = counted_lean  # type: ignore[method-assign]
        original = client.execute_command
        make_pipeline = client.pipeline

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.count += 1
            self.commands.append(str(args[0]))
            return await original(*args, **kwargs)

        def counted_pipeline(*args: Any, **kwargs: Any) -> Any:
            pipe = make_pipeline(*args, **kwargs)
            execute = pipe.execute

            async def run(*a: Any, **k: Any) -> Any:
                self.count += 1
                self.commands.append("PIPELINE")
                return await execute(*a, **k)

            pipe.execute = run  # type: ignore[method-assign]
            return pipe

        client.execute_command = counted  # type: ignore[method-assign]
        client.pipeline = counted_pipeline  # type: ignore[method-assign]


class MachineCalls:
    """Counts `transitions.Machine` constructions and `add_model` calls (any subclass)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.built = 0
        self.add_model = 0
        init = transitions.core.Machine.__init__
        add_model = transitions.core.Machine.add_model

        def counted_init(machine: Any, *args: Any, **kwargs: Any) -> None:
            self.built += 1
            init(machine, *args, **kwargs)

        def counted_add_model(machine: Any, *args: Any, **kwargs: Any) -> Any:
            self.add_model += 1
            return add_model(machine, *args, **kwargs)

        monkeypatch.setattr(transitions.core.Machine, "__init__", counted_init)
        monkeypatch.setattr(transitions.core.Machine, "add_model", counted_add_model)


@pytest.fixture
async def runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Runtime]:
    monkeypatch.setenv("ORCHESTRATOR_CALENDAR_DB", str(tmp_path / "calendar.sqlite3"))
    prefix = f"guard-{uuid.uuid4().hex[:10]}"
    store = await RedisStore.connect(REDIS_URL, prefix)
    connectors = ConnectorRegistry()
    connectors.load_entry_points()
    channels = ChannelRegistry()
    channels.register(GuardChannel())  # type: ignore[arg-type]
    settings = AppSettings(flows_dir=str(ROOT / "flows"), key_prefix=prefix, default_flow="dental_booking")
    rt = await Runtime.create(settings, connectors, channels, store=store)
    try:
        yield rt
    finally:
        client = aioredis.Redis.from_url(REDIS_URL)
        keys = [k async for k in client.scan_iter(match=f"{prefix}:*", count=1000)]
        if keys:
            await client.delete(*keys)
        await client.aclose()
        await rt.close()


async def turn(rt: Runtime, contact: str, text: str, n: int) -> list[str]:
    reply = await rt.handle("guard_sms", Inbound(
        kind="event", address=Address(business=BUSINESS, contact=contact), route_key=BUSINESS,
        event=Event(kind="text", channel="sms", text=text, provider_id=f"SM{contact}-{n}")))
    return [m.text or "" for m in reply.messages]


async def test_steady_state_turns_cost_two_round_trips_and_no_machine(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # warm-up: the flow compiled, the scripts loaded, dateparser warmed, one booking made
    for n, text in enumerate(SCRIPT):
        await turn(runtime, "+15550000000", text, n)
    assert isinstance(runtime.store, RedisStore)
    trips = RoundTrips(runtime.store)
    machines = MachineCalls(monkeypatch)
    per_turn: list[int] = []
    replies: list[list[str]] = []
    for n, text in enumerate(SCRIPT):  # a whole second conversation, connector calls included
        before = trips.count
        replies.append(await turn(runtime, "+15550000001", text, n))
        per_turn.append(trips.count - before)
    assert "booked" in " ".join(replies[-1]), replies  # the walk really reached the booking
    # Every turn is the begin and commit scripts and nothing else: the first and the last turn
    # too (the conversation's record rides in their commit script).
    assert per_turn == [2] * len(SCRIPT), (per_turn, trips.commands)  # begin + commit: the counting sees them
    records = await runtime.recorder.list_records(contact="+15550000001")
    assert [(r.status, r.outcome, r.turns) for r in records] == [("ended", "booked", len(SCRIPT))], records
    assert machines.built == 0, "a transitions.Machine was built during a turn"
    assert machines.add_model == 0, "add_model was called during a turn"


async def test_duplicate_delivery_costs_one_round_trip(runtime: Runtime) -> None:
    await turn(runtime, "+15550000002", "hi", 0)
    await turn(runtime, "+15550000002", "1", 1)
    assert isinstance(runtime.store, RedisStore)
    trips = RoundTrips(runtime.store)
    again = await turn(runtime, "+15550000002", "1", 1)  # the provider's retry of the same id
    assert trips.count == 1, trips.commands
    assert again == ["Great! What's your name?"]


# ---- the webhook's own fast paths give the library's answers ------------------------------------

_form_text = st.lists(st.tuples(st.text(max_size=12), st.text(max_size=20)), max_size=8).map(urlencode) | st.text(
    alphabet="ab=&+%2F0 é;", max_size=40)


@given(_form_text)
@settings(max_examples=300, deadline=None)
def test_parse_form_gives_parse_qsl_pairs(text: str) -> None:
    assert parse_form(text) == parse_qsl(text, keep_blank_values=True, max_num_fields=1000)


def test_parse_form_keeps_the_field_limit() -> None:
    with pytest.raises(ValueError):
        parse_qsl("a=1&" * 1000, keep_blank_values=True, max_num_fields=1000)
    with pytest.raises(ValueError):
        parse_form("a=1&" * 1000)
    assert len(parse_form("a=1&" * 999)) == 999


@given(st.lists(st.tuples(st.sampled_from(["Body", "From", "To", "MediaUrl0", "Ä", ""]), st.text(max_size=20)),
                max_size=10), st.sampled_from(["https://bot.example.com/webhooks/twilio/sms", "https://h/ä?x=1"]))
@settings(max_examples=300, deadline=None)
def test_twilio_signature_gives_request_validator_signature(pairs: list[tuple[str, str]], url: str) -> None:
    verifier = TwilioSignatureVerifier("test-auth-token-0123456789")
    params = FormParams.of(pairs)
    assert verifier.signature(url, params) == RequestValidator("test-auth-token-0123456789").compute_signature(
        url, params)
