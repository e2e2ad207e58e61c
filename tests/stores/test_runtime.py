"""The turn pipeline end to end on both stores: dedupe, revisions, outbox, timers, opt-outs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest

from orchestrator.errors import OptedOut, SendError
from orchestrator.model import Event, Session, TranscriptEntry
from orchestrator.plugins.channels import Address, Capabilities, ChannelRegistry, Inbound, Outbound, ReplyContext
from orchestrator.plugins.connectors import ConnectorRegistry
from orchestrator.runtime import outbox as outbox_module
from orchestrator.runtime.pipeline import Runtime, TurnRequest
from orchestrator.settings import AppSettings
from orchestrator.stores.base import OutboxClaim, SessionStore

FLOW = """\
flow: intake
title: Test Clinic
start: greet
settings: {{no_reply_timeout: 10m}}
states:
  greet:
    say: "Hi from {tag}"
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
    say: "Thanks {{{{ name }}}} ({tag})"
    end: finished
"""
BIZ, WHO = "+15551230000", "+15557654321"
SID = f"{BIZ}:{WHO}"


class FakeChannel:
    def __init__(self, name: str, idiom: str, sync: bool) -> None:
        self.name = name
        self.capabilities = Capabilities(idiom=idiom, sync_reply=sync)  # type: ignore[arg-type]
        self.sent: list[tuple[str, list[str], str | None]] = []
        self.failures: list[Exception] = []

    def verify(self, request: object) -> None: ...
    def parse(self, request: object) -> list[Inbound]: return []
    def render(self, messages: list[Outbound], ctx: ReplyContext) -> object: return None

    async def send(self, to: Address, messages: list[Outbound], ctx: ReplyContext) -> list[str]:
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append((to.contact, [m.text for m in messages if m.text], ctx.idempotency_key))
        return [f"M{len(self.sent)}"]


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def inbound(text: str, mid: str, channel: str = "sms", kind: str = "text") -> Inbound:
    return Inbound(kind="event", address=Address(business=BIZ, contact=WHO), route_key=BIZ,
                   event=Event(kind=kind, channel=channel, text=text, provider_id=mid))  # type: ignore[arg-type]


@pytest.fixture
def flows(tmp_path: Path) -> Path:
    (tmp_path / "intake.yaml").write_text(FLOW.format(tag="v1"))
    return tmp_path


@pytest.fixture
def sms() -> FakeChannel:
    return FakeChannel("fake_sms", "sms", True)


@pytest.fixture
def wa() -> FakeChannel:
    return FakeChannel("fake_wa", "whatsapp", False)


@pytest.fixture
async def runtime(store: SessionStore, flows: Path, sms: FakeChannel, wa: FakeChannel) -> AsyncIterator[Runtime]:
    channels = ChannelRegistry()
    channels.register(sms)  # type: ignore[arg-type]
    channels.register(wa)  # type: ignore[arg-type]
    settings = AppSettings(flows_dir=str(flows), outbox_max_attempts=3)
    rt = await Runtime.create(settings, ConnectorRegistry(), channels, store=store, clock=Clock())
    yield rt


def texts(reply: object) -> list[str]:
    return [m.text for m in reply.messages]  # type: ignore[attr-defined]


async def session_of(rt: Runtime) -> Session:
    raw = await rt.store.load(SID)
    assert raw is not None
    return msgspec.msgpack.decode(raw, type=Session)


async def test_a_conversation_end_to_end(runtime: Runtime) -> None:
    r1 = await runtime.handle("fake_sms", inbound("hi", "SM1"))
    assert texts(r1) == ["Hi from v1", "Your name?"] and not r1.duplicate
    assert r1.context.settings.no_reply_timeout == "10m"
    assert texts(await runtime.handle("fake_sms", inbound("Ann", "SM2"))) == ["Favourite colour, Ann?"]
    r3 = await runtime.handle("fake_sms", inbound("blue", "SM3"))
    assert "Thanks Ann (v1)" in texts(r3)
    s = await session_of(runtime)
    assert (s.status, s.outcome, s.vars["color"], s.version) == ("ended", "finished", "blue", 3)
    entries = [msgspec.msgpack.decode(e, type=TranscriptEntry) for e in await runtime.store.get_transcript(SID)]
    assert [e.text for e in entries if e.dir == "in"] == ["hi", "Ann", "blue"]


async def test_same_delivery_three_times_one_advance_identical_replies(runtime: Runtime) -> None:
    await runtime.handle("fake_sms", inbound("hi", "SM1"))
    replies = [await runtime.handle("fake_sms", inbound("Ann", "SM2")) for _ in range(3)]
    assert [texts(r) for r in replies] == [["Favourite colour, Ann?"]] * 3
    assert [r.duplicate for r in replies] == [False, True, True]
    assert replies[2].context.settings is not None  # duplicates render with the same flow settings
    s = await session_of(runtime)
    assert (s.turns, s.state, s.version) == (2, "ask_color", 2)


async def test_revision_pinning(runtime: Runtime, flows: Path, store: SessionStore, sms: FakeChannel,
                                wa: FakeChannel) -> None:
    await runtime.handle("fake_sms", inbound("hi", "SM1"))
    (flows / "intake.yaml").write_text(FLOW.format(tag="v2"))
    assert await runtime.catalog.reload() == {}
    await runtime.handle("fake_sms", inbound("Ann", "SM2"))
    assert "Thanks Ann (v1)" in texts(await runtime.handle("fake_sms", inbound("blue", "SM3")))
    # a new conversation (another contact) takes the new revision
    other = Inbound(kind="event", address=Address(business=BIZ, contact="+15550000001"), route_key=BIZ,
                    event=Event(kind="text", channel="sms", text="hi", provider_id="SMx"))
    assert texts(await runtime.handle("fake_sms", other))[0] == "Hi from v2"
    # an invalid edit keeps the last good revision
    (flows / "intake.yaml").write_text("flow: intake\nstart: nowhere\nstates: {}\n")
    assert list(await runtime.catalog.reload()) == [str(flows / "intake.yaml")]
    assert (await runtime.catalog.latest("intake")).revision == (await runtime.store.latest_revision("intake"))


async def test_another_process_compiles_the_pinned_revision_from_the_store(
    runtime: Runtime, store: SessionStore, tmp_path: Path, sms: FakeChannel, wa: FakeChannel,
) -> None:
    await runtime.handle("fake_sms", inbound("hi", "SM1"))
    newer = tmp_path / "other"
    newer.mkdir()
    (newer / "intake.yaml").write_text(FLOW.format(tag="v2"))
    channels = ChannelRegistry()
    channels.register(sms)  # type: ignore[arg-type]
    second = await Runtime.create(AppSettings(flows_dir=str(newer)), ConnectorRegistry(), channels,
                                  store=store, clock=Clock())
    await second.handle("fake_sms", inbound("Ann", "SM2"))
    assert "Thanks Ann (v1)" in texts(await second.handle("fake_sms", inbound("blue", "SM3")))


async def test_async_channel_sends_through_outbox_with_retries(runtime: Runtime, wa: FakeChannel) -> None:
    reply = await runtime.handle("fake_wa", inbound("hi", "wamid.1", channel="whatsapp"))
    assert reply.messages == [] and wa.sent == []  # the webhook answers 200 at once
    wa.failures = [SendError("503 from provider", retryable=True, status=503)]
    assert await runtime.send_outbox() == 0  # failed, rescheduled with backoff
    runtime.clock.now += 5  # type: ignore[attr-defined]
    assert await runtime.send_outbox() == 1
    assert len(wa.sent) == 1 and wa.sent[0][1] == ["Hi from v1", "Your name?"]
    key = wa.sent[0][2]
    assert key and key.startswith(SID + "|")
    assert await runtime.store.get_status(key) == ("sent", None)
    assert await runtime.send_outbox() == 0  # sent once only
    # a permanent failure is recorded, not retried
    await runtime.handle("fake_wa", inbound("Ann", "wamid.2", channel="whatsapp"))
    wa.failures = [SendError("400 bad number", retryable=False, status=400, code="131026")]
    assert await runtime.send_outbox() == 0
    runtime.clock.now += 1000  # type: ignore[attr-defined]
    assert await runtime.send_outbox() == 0 and len(wa.sent) == 1


async def test_no_reply_timer_fires_once_and_stale_timer_is_ignored(runtime: Runtime, sms: FakeChannel) -> None:
    clock = runtime.clock
    await runtime.handle("fake_sms", inbound("hi", "SM1"))
    clock.now += 5 * 60  # type: ignore[attr-defined]
    assert await runtime.fire_due_timers() == 0
    clock.now += 6 * 60  # type: ignore[attr-defined]
    assert await runtime.fire_due_timers() == 1
    assert len(sms.sent) == 1 and "Your name?" in sms.sent[0][1][-1]
    assert await runtime.fire_due_timers() == 0
    # the contact answers; a timer armed before must not fire for the new state
    await runtime.handle("fake_sms", inbound("Ann", "SM2"))
    s = await session_of(runtime)
    stale = await runtime._turn(TurnRequest(
        channel="fake_sms", address=Address(business=BIZ, contact=WHO), session_id=SID,
        event=Event(kind="timeout", channel="sms", provider_id="timer:1"), timer_turns=1))
    assert stale.messages == [] and (await session_of(runtime)).version == s.version


async def test_stop_blocks_every_send_and_start_reenables(runtime: Runtime, sms: FakeChannel,
                                                          wa: FakeChannel) -> None:
    await runtime.handle("fake_wa", inbound("hi", "wamid.1", channel="whatsapp"))  # outbox pending
    stop = Inbound(kind="opt_out", address=Address(business=BIZ, contact=WHO))
    assert (await runtime.handle("fake_sms", stop)).opted_out
    assert await runtime.send_outbox() == 0 and wa.sent == []
    r = await runtime.handle("fake_sms", inbound("hello?", "SM9"))
    assert r.opted_out and r.messages == []
    runtime.clock.now += 3600  # type: ignore[attr-defined]
    assert await runtime.fire_due_timers() == 0 and sms.sent == []
    with pytest.raises(OptedOut):
        await runtime.start_outbound(Address(business=BIZ, contact=WHO), "fake_sms", "intake")
    await runtime.handle("fake_sms", Inbound(kind="opt_in", address=Address(business=BIZ, contact=WHO)))
    out = await runtime.start_outbound(Address(business=BIZ, contact=WHO), "fake_sms", "intake", {"x": 1})
    assert out.messages == []  # proactive: through the outbox
    assert await runtime.send_outbox() == 1 and sms.sent[-1][1] == ["Hi from v1", "Your name?"]


async def test_help_answers_flow_text_else_operator_text_else_one_naming_the_business(
    runtime: Runtime, flows: Path, store: SessionStore, sms: FakeChannel,
) -> None:
    def help_inbound() -> Inbound:
        return Inbound(kind="help", address=Address(business=BIZ, contact=WHO), route_key=BIZ)

    [default] = texts(await runtime.handle("fake_sms", help_inbound()))
    assert default.startswith("Test Clinic:") and "STOP" in default  # the flow's title names the business
    channels = ChannelRegistry()
    channels.register(sms)  # type: ignore[arg-type]
    operator = await Runtime.create(AppSettings(flows_dir=str(flows), help_text="Call 555-0100 for help."),
                                    ConnectorRegistry(), channels, store=store, clock=Clock())
    assert texts(await operator.handle("fake_sms", help_inbound())) == ["Call 555-0100 for help."]
    (flows / "intake.yaml").write_text(FLOW.format(tag="v1").replace(
        "settings: {no_reply_timeout: 10m}", "settings: {no_reply_timeout: 10m, help_text: Flow help}"))
    assert await operator.catalog.reload() == {}
    assert texts(await operator.handle("fake_sms", help_inbound())) == ["Flow help"]


async def test_keywords_on_a_channel_without_webhook_replies_are_sent_once(runtime: Runtime, wa: FakeChannel) -> None:
    stop = Inbound(kind="opt_out", address=Address(business=BIZ, contact=WHO), route_key=BIZ, message_id="wamid.S")
    for _ in range(2):  # a redelivery sends nothing again
        r = await runtime.handle("fake_wa", stop)
        assert r.messages == [] and r.opted_out
    assert await runtime.store.is_opted_out(WHO)
    assert len(wa.sent) == 1 and "unsubscribed" in wa.sent[0][1][0]


async def test_outbound_start_keeps_the_whatsapp_window_of_the_last_inbound(runtime: Runtime, wa: FakeChannel) -> None:
    clock: Clock = runtime.clock  # type: ignore[assignment]
    addr = Address(business=BIZ, contact=WHO)
    await runtime.start_outbound(addr, "fake_wa", "intake")
    assert (await session_of(runtime)).last_inbound_at == 0.0  # never heard from
    await runtime.handle("fake_wa", inbound("hi", "wamid.1", channel="whatsapp"))
    heard = clock.now
    clock.now += 25 * 3600
    await runtime.start_outbound(addr, "fake_wa", "intake")
    assert (await session_of(runtime)).last_inbound_at == heard
    claims = await runtime.store.claim_outbox(clock.now, 10, 30)
    items = [msgspec.msgpack.decode(c.payload) for c in claims]
    windows = sorted((i["created_at"], i.get("within_window", True)) for i in items)
    assert windows == [(heard, False), (heard, True), (clock.now, False)]  # outbound, reply, outbound


async def test_missed_call_starts_the_missed_call_flow_by_sms_once(
    runtime: Runtime, flows: Path, sms: FakeChannel,
) -> None:
    (flows / "missed_call_textback.yaml").write_text(
        "flow: missed_call_textback\nstart: sorry\nstates:\n  sorry:\n    say: Sorry we missed your call\n"
        "    next: ask\n  ask:\n    ask: Your name?\n    input: text\n    next: bye\n  bye:\n    end: done\n")
    assert await runtime.catalog.reload() == {}
    missed = Inbound(kind="event", address=Address(business=BIZ, contact=WHO), route_key=BIZ,
                     event=Event(kind="hangup", channel="voice", text="no-answer", provider_id="CA1:status:no-answer"))
    for _ in range(2):  # a redelivered status callback starts nothing twice
        await runtime.handle("fake_sms", missed)
    assert await runtime.send_outbox() == 1
    assert sms.sent == [(WHO, ["Sorry we missed your call", "Your name?"], sms.sent[0][2])]
    s = await session_of(runtime)
    assert (s.flow, s.channel, s.state) == ("missed_call_textback", "sms", "ask")
    # another missed call while the text conversation goes on does not end it
    again = msgspec.structs.replace(missed, event=msgspec.structs.replace(
        missed.event, provider_id="CA2:status:busy", text="busy"))
    await runtime.handle("fake_sms", again)
    assert (await session_of(runtime)).status == "active"
    # a completed call (answered elsewhere) is no missed call; an opted-out contact gets nothing
    await runtime.handle("fake_sms", Inbound(kind="opt_out", address=Address(business=BIZ, contact="+15550000009")))
    other = msgspec.structs.replace(missed, address=Address(business=BIZ, contact="+15550000009"))
    await runtime.handle("fake_sms", other)
    assert await runtime.send_outbox() == 0


async def test_a_failing_turn_leaves_state_and_releases_the_lock(runtime: Runtime,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    await runtime.handle("fake_sms", inbound("hi", "SM1"))
    before = await session_of(runtime)
    engine = runtime.engine(await runtime.catalog.latest("intake"))

    async def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("connector exploded")

    monkeypatch.setattr(engine, "turn", boom)
    with pytest.raises(RuntimeError):
        await runtime.handle("fake_sms", inbound("Ann", "SM2"))
    assert await session_of(runtime) == before
    monkeypatch.undo()
    assert texts(await runtime.handle("fake_sms", inbound("Ann", "SM2"))) == ["Favourite colour, Ann?"]


async def test_status_callbacks_recorded_monotonically(runtime: Runtime) -> None:
    for status in ["delivered", "sent", "queued"]:
        await runtime.handle("fake_sms", Inbound(kind="status", message_id="SM77", status=status))
    assert await runtime.store.get_status("SM77") == ("delivered", None)


async def test_a_duplicate_gets_the_identical_messages_choices_and_language_included(
    runtime: Runtime, flows: Path,
) -> None:
    (flows / "intake.yaml").write_text(
        "flow: intake\nstart: pick\nsettings: {language: fr-FR}\nstates:\n  pick:\n    ask: Which?\n"
        "    choices:\n      a: {label: Apple, match: [apple, pomme], dtmf: '1'}\n      b: {label: Banana}\n"
        "    next: done\n    on: {fail: done}\n  done:\n    say: Merci\n    end: ok\n")
    assert await runtime.catalog.reload() == {}
    first = await runtime.handle("fake_sms", inbound("hi", "SM1"))
    again = await runtime.handle("fake_sms", inbound("hi", "SM1"))
    assert again.duplicate and again.messages == first.messages and first.messages[-1].choices
    assert first.messages[-1].language == "fr-FR" and again.context.session_id == SID


async def test_sender_cancels_items_of_a_contact_who_opted_out_after_they_were_queued(
    runtime: Runtime, wa: FakeChannel, monkeypatch: pytest.MonkeyPatch,
) -> None:
    addr = Address(business=BIZ, contact=WHO)
    await runtime.start_outbound(addr, "fake_wa", "intake")
    [queued] = await runtime.store.claim_outbox(runtime.clock(), 10, 0)
    assert queued.opted_out is False  # the claim carries the flag: no extra store call per send
    await runtime.store.set_opt_out(WHO, True)
    assert await runtime.send_outbox() == 0 and wa.sent == []
    assert await runtime.store.get_status(queued.id) == ("canceled", "opted_out")
    assert await runtime.store.claim_outbox(runtime.clock() + 1000, 10, 30) == []
    # a flag older than OPT_OUT_RECHECK_SECONDS (a long batch) is checked again before the send
    await runtime.store.set_opt_out(WHO, False)
    await runtime.start_outbound(addr, "fake_wa", "intake")
    await runtime.store.set_opt_out(WHO, True)
    claim_outbox = runtime.store.claim_outbox

    async def stale_claims(now: float, limit: int, lease_seconds: float) -> list[OutboxClaim]:
        return [msgspec.structs.replace(c, opted_out=False) for c in await claim_outbox(now, limit, lease_seconds)]

    monkeypatch.setattr(runtime.store, "claim_outbox", stale_claims)
    monkeypatch.setattr(outbox_module, "OPT_OUT_RECHECK_SECONDS", -1.0)
    assert await runtime.send_outbox() == 0 and wa.sent == []


async def test_a_record_that_cannot_be_built_never_costs_the_turn(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    """Analytics is not the conversation: a failing record build is logged and the turn saved."""
    def broken(channel: str, result: object) -> None:
        raise ValueError("cannot encode the summary")

    monkeypatch.setattr(runtime.recorder, "record_put", broken)
    r1 = await runtime.handle("fake_sms", inbound("hi", "SM1"))
    assert texts(r1) == ["Hi from v1", "Your name?"]
    assert (await session_of(runtime)).version == 1
    assert "conversation record" in caplog.text and "cannot encode the summary" in caplog.text
