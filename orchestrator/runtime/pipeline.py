"""The turn pipeline: dedupe -> lock -> load -> advance -> save (with outbox) -> answer.

    runtime = await Runtime.create(settings, connectors, channels)
    reply = await runtime.handle("twilio_sms", inbound)      # one parsed webhook item
    await runtime.start_outbound(address, "twilio_sms", "missed_call_textback", {})
    await runtime.run_background()                           # timers + outbox sender

A duplicate delivery gets the stored reply of the first (no second advance). A turn that
fails before its save leaves the stored conversation as it was. Opted-out contacts get
nothing sent. See RELIABILITY in the team notes for the failure cases this answers.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import hashlib
import logging
import os
import secrets
import time
import uuid
import zlib
from collections.abc import Callable
from typing import Any

import msgspec

from orchestrator import metrics
from orchestrator.engine.compiler import CompiledFlow
from orchestrator.engine.turn import Engine
from orchestrator.errors import FlowError, LockTimeout, NewerFormat, OptedOut, SendError, StoreError
from orchestrator.flow.schema import parse_duration
from orchestrator.logs import correlation, redact_phone
from orchestrator.model import Event, Outbound, Session, TurnResult
from orchestrator.plugins.channels import Address, ChannelAdapter, ChannelRegistry, Inbound, ReplyContext
from orchestrator.plugins.connectors import ConnectorRegistry
from orchestrator.runtime import notify
from orchestrator.runtime.catalog import FlowCatalog
from orchestrator.settings import AppSettings
from orchestrator.stores.base import (
    FORMATS,
    Commit,
    OutboxClaim,
    OutboxPut,
    SessionStore,
    TimerSet,
    open_store,
    parse_timer_member,
    require_format,
    timer_member,
)

log = logging.getLogger("orchestrator.runtime.pipeline")
WINDOW_SECONDS = 24 * 3600  # WhatsApp customer-service window
CONVERSATIONAL = frozenset({"start", "text", "speech", "digits", "choice", "media", "location"})
OPT_OUT_RECHECK_SECONDS = 1.0  # an outbox claim's opt-out flag older than this is checked again
TIMER_LEAVE_SECONDS = 5.0  # a timer left for a newer process is due again this much later
OPT_OUT_TEXT = "You have been unsubscribed and will get no more messages. Reply START to opt back in."
OPT_IN_TEXT = "You are subscribed again. Reply STOP to opt out."
HELP_TEXT = "{business}: answer the last question to go on, or call us. Reply STOP to opt out, START to opt back in."
MISSED_CALL_FLOW = "missed_call_textback"  # started by SMS after an unanswered call when loaded
MISSED_CALL_STATUSES = frozenset({"no-answer", "busy", "failed", "canceled"})
_session_decoder = msgspec.msgpack.Decoder(Session)
_encoder = msgspec.msgpack.Encoder()


class TurnReply(msgspec.Struct, kw_only=True):
    messages: list[Outbound] = []
    duplicate: bool = False
    session_id: str | None = None
    context: ReplyContext = msgspec.field(default_factory=ReplyContext)
    opted_out: bool = False


class StoredReply(msgspec.Struct, kw_only=True, omit_defaults=True):
    """What is kept with a delivery's turn to answer its duplicates identically. Kept lean
    (`compact_messages`): what the flow revision gives back (an ask's static choices, the
    flow's language) and the session id (the duplicate's own) are left out."""

    messages: list[Outbound] = []
    flow_choices: list[int] = []  # indexes of messages whose choices are their state's static ones
    session_id: str | None = None  # older entries only
    revision: str | None = None
    event_kind: str | None = None
    within_window: bool = True
    opted_out: bool = False
    step: str | None = None  # voice action-URL nonce: a duplicate renders byte-identical TwiML
    fmt: int = 1  # stored format (store.FORMATS): stays 1 by default, a newer format sets it


def compact_messages(compiled: CompiledFlow, messages: list[Outbound]) -> tuple[list[Outbound], list[int]]:
    """Messages without what `expand_messages` restores from the revision; and which had choices."""
    language = compiled.settings.language
    out: list[Outbound] = []
    elided: list[int] = []
    for i, m in enumerate(messages):
        changes: dict[str, Any] = {}
        state = compiled.states.get(m.state) if m.choices else None
        if state is not None and not state.choices_from and m.choices == state.choices:
            changes["choices"] = []
            elided.append(i)
        if m.language == language:
            changes["language"] = None
        out.append(msgspec.structs.replace(m, **changes) if changes else m)
    return out, elided


def expand_messages(compiled: CompiledFlow | None, messages: list[Outbound], elided: list[int]) -> list[Outbound]:
    if compiled is None:
        return messages
    language = compiled.settings.language
    out: list[Outbound] = []
    for i, m in enumerate(messages):
        changes: dict[str, Any] = {}
        state = compiled.states.get(m.state) if i in elided else None
        if state is not None:
            changes["choices"] = state.choices
        if m.language is None:
            changes["language"] = language
        out.append(msgspec.structs.replace(m, **changes) if changes else m)
    return out


@functools.lru_cache(maxsize=64)
def _seconds(duration: str) -> int:
    """A flow setting's duration in whole seconds, parsed once per distinct text."""
    return int(parse_duration(duration))


def turn_step(session: Session) -> str:
    """The voice action-URL nonce of a turn: from the session id, its start and its turn count,
    so each question gets a new one and a re-rendered duplicate the same."""
    key = f"{session.id}|{session.started_at!r}|{session.turns}".encode()
    return hashlib.blake2b(key, digest_size=4).hexdigest()


class OutboxItem(msgspec.Struct, kw_only=True, omit_defaults=True):
    id: str  # "<session id>|<unique>": the idempotency key of this send (part i: `part_key(id, i)`)
    adapter: str
    business: str
    contact: str
    messages: list[Outbound]
    revision: str | None = None
    within_window: bool = True
    attempts: int = 0
    created_at: float = 0.0
    fmt: int = 1  # stored format (store.FORMATS): stays 1 by default, a newer format sets it
    sent: int = 0  # provider calls (parts) of this item accepted so far: a retry goes on from the next
    ids: list[str] = []  # their provider message ids
    unknown_since: float = 0.0  # part `sent` went out at this time with no answer: reconcile before resending
    window_ends: float = 0.0  # WhatsApp: the customer-service window closes then (0: not known)


class FailedSend(msgspec.Struct, kw_only=True, omit_defaults=True):
    """An outbox item given up (GET /api/outbox/failed): who, what, why, after how long."""

    id: str
    session_id: str
    adapter: str
    contact: str
    reason: str  # the provider's error code, "gave_up" (retried until ORCHESTRATOR_OUTBOX_GIVE_UP_SECONDS), ...
    error: str  # what the last attempt said
    attempts: int
    parts_sent: int  # provider calls of the item accepted before it was given up (not resent)
    created_at: float
    failed_at: float
    texts: list[str] = []


_reply_decoder = msgspec.msgpack.Decoder(StoredReply)

# Stored replies are kept 48 h per delivery: zlib with a preset dictionary of the encoding's
# recurring field names and values shrinks a ~500 B reply by ~40 % (plain zlib: ~30 %).
# Layout: b"\xc1" (a byte msgpack never starts with) + b"\x03" + the compressed msgpack.
# Anything else is a plain msgpack StoredReply (older entries), b"" an outbox-answered delivery.
_REPLY_DICT = (
    b"\xa5label\xa4dtmf\xa11\xa12\xa13\xa5match\xa2id\xa7choices\xa5input\xa6choice\xa4text\xa8language"
    b"\xa5en-US\xaasession_id\xa8revision\xaaevent_kind\xa5start\xa4kind\xa3ask\xa3say\xa3end\xa7outcome"
    b"\xa8reprompt\xc3\xa5state\xabdescription\xa9media_url\x84\xa8messages\x91\x86\xa4kind\xa3ask"
)
_REPLY_MARK = b"\xc1\x03"


def pack_reply(encoded: bytes) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, zlib.MAX_WBITS, 9, zlib.Z_DEFAULT_STRATEGY, _REPLY_DICT)
    packed = c.compress(encoded) + c.flush()
    return _REPLY_MARK + packed if len(packed) + 2 < len(encoded) else encoded


def unpack_reply(raw: bytes) -> bytes:
    if raw[:2] != _REPLY_MARK:
        return raw
    d = zlib.decompressobj(zlib.MAX_WBITS, _REPLY_DICT)
    return d.decompress(raw[2:]) + d.flush()
_outbox_decoder = msgspec.msgpack.Decoder(OutboxItem)


class SessionGates:
    """One turn per session at a time inside this process, the others queued in arrival order.

    Without it, every concurrent turn of a busy conversation polls the store's lock (Redis:
    a script call every 2-50 ms), costing CPU and round trips while one turn holds it; with
    it, only one turn per session per process contends for the store's lock and the rest
    wait here for a direct hand-over. An entry lives while its session has a turn running,
    so memory stays flat whatever the number of conversations."""

    def __init__(self) -> None:
        self._queues: dict[str, collections.deque[asyncio.Future[None]]] = {}

    async def acquire(self, key: str, timeout: float) -> bool:
        """Take `key`'s gate, waiting at most `timeout` s; False when the wait ran out (the
        gate is then not held). The caller must `release(key)` after a True."""
        waiters = self._queues.get(key)
        if waiters is None:  # nobody holds it: the usual case, no await
            self._queues[key] = collections.deque()
            return True
        loop = asyncio.get_running_loop()
        gate = loop.create_future()
        waiters.append(gate)
        expiry = loop.call_later(max(0.0, timeout), _expire, gate)
        try:
            await gate
        except TimeoutError:
            return False
        except BaseException:
            if gate.done() and not gate.cancelled() and gate.exception() is None:
                self.release(key)  # handed over just as this task was cancelled: pass it on
            raise
        finally:
            expiry.cancel()
        return True

    def release(self, key: str) -> None:
        """Hand the gate to the longest waiter still waiting, or drop the entry."""
        waiters = self._queues.get(key)
        if waiters is None:
            return
        while waiters:
            gate = waiters.popleft()
            if not gate.done():
                gate.set_result(None)
                return
        del self._queues[key]

    def __len__(self) -> int:
        return len(self._queues)


def _expire(gate: asyncio.Future[None]) -> None:
    if not gate.done():
        gate.set_exception(TimeoutError())


class Runtime:
    def __init__(
        self,
        settings: AppSettings,
        store: SessionStore,
        catalog: FlowCatalog,
        connectors: ConnectorRegistry,
        channels: ChannelRegistry,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.store = store
        self.catalog = catalog
        self.connectors = connectors
        self.channels = channels
        self.clock = clock
        self.fault = os.environ.get("ORCHESTRATOR_FAULT", "")  # test-only: before_save | after_save
        self._engines: dict[str, Engine] = {}
        self._gates = SessionGates()  # one turn per session per process at the store's lock
        self._wake = asyncio.Event()
        self._slots: dict[str, asyncio.Semaphore] = {}  # outbox sends in flight per adapter
        self._in_flight: set[tuple[str, str]] = set()  # (adapter, contact) being sent to by this process
        from orchestrator.records.analytics import (
            Recorder,  # conversation records at start / end (admin API, analytics)
        )

        self.recorder = Recorder(store, settings.retention_seconds)

    @classmethod
    async def create(
        cls, settings: AppSettings, connectors: ConnectorRegistry, channels: ChannelRegistry,
        *, store: SessionStore | None = None, clock: Callable[[], float] = time.time,
    ) -> Runtime:
        store = store or await open_store(
            settings.redis_url, settings.key_prefix, timeout_seconds=settings.redis_timeout_seconds
        )
        catalog = FlowCatalog(
            store, connectors, flows_dir=settings.flows_dir, routes=settings.routes(),
            default_flow=settings.default_flow,
        )
        for path, problem in (await catalog.reload()).items():
            log.error("flow file %s is invalid and was skipped:\n%s", path, problem)
        return cls(settings, store, catalog, connectors, channels, clock=clock)

    async def close(self) -> None:
        for name in self.channels.names():  # adapters holding connections (optional `close`)
            close = getattr(self.channels.get(name), "close", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    await close()
        await self.store.close()

    # ------------------------------------------------------------------ helpers
    def engine(self, compiled: CompiledFlow) -> Engine:
        engine = self._engines.get(compiled.revision)
        if engine is None or engine.compiled is not compiled:
            engine = self._engines[compiled.revision] = Engine(compiled, self.connectors)
        return engine

    def _context(
        self, compiled: CompiledFlow | None, session_id: str | None, *, within_window: bool = True,
        event_kind: str | None = None, idempotency_key: str | None = None, step: str | None = None,
    ) -> ReplyContext:
        return ReplyContext(
            settings=compiled.settings if compiled else None, public_url=self.settings.public_url or "",
            session_id=session_id, within_window=within_window, event_kind=event_kind,
            idempotency_key=idempotency_key, step=step,
        )

    def _adapter_for_idiom(self, idiom: str, preferred: str | None = None) -> str | None:
        if preferred:
            with contextlib.suppress(LookupError):
                if self.channels.get(preferred).capabilities.idiom == idiom:
                    return preferred
        for name in self.channels.names():
            if self.channels.get(name).capabilities.idiom == idiom:
                return name
        return None

    def _fault_point(self, name: str) -> None:
        if self.fault == name:  # test-only: simulate kill -9 at this point of a turn
            os._exit(137)

    async def _compiled_for(self, session: Session) -> CompiledFlow | None:
        try:
            return await self.catalog.for_revision(session.revision)
        except FlowError as exc:
            log.error("session %s: revision %s unavailable, starting over: %s",
                      redact_phone(session.id), session.revision, exc)
            return None

    # ------------------------------------------------------------------ inbound
    async def handle(self, channel: str, inbound: Inbound) -> TurnReply:
        """One parsed webhook item -> the reply to give (sync channels) or nothing (outbox)."""
        if inbound.kind == "status":
            if inbound.message_id and inbound.status:
                await self.store.record_status(inbound.message_id, inbound.status, inbound.error_code)
                if inbound.send_key:  # the outbox reconciles a send of unknown outcome by this key
                    await self.store.record_status(inbound.send_key, inbound.status, inbound.error_code)
            return TurnReply()
        if inbound.kind == "ignore" or inbound.address is None:
            return TurnReply()
        addr = inbound.address
        sid = f"{addr.business}:{addr.contact}"
        if inbound.kind in ("opt_out", "opt_in", "help"):
            return await self._keyword(channel, inbound, addr, sid)
        if inbound.event is None:
            return TurnReply()
        with correlation(inbound.event.provider_id or None):
            return await self._turn(channel, addr, sid, inbound.event, inbound.route_key)

    async def _keyword(self, channel: str, inbound: Inbound, addr: Address, sid: str) -> TurnReply:
        """STOP / START / HELP (SMS carrier keywords, the same words on WhatsApp): answered in the
        webhook where the channel can, else sent at once (an opted-out contact gets no outbox item)."""
        if inbound.kind == "opt_out":
            await self.store.set_opt_out(addr.contact, True)  # recorded before anything else
            log.info("contact opted out", extra={"session": redact_phone(sid), "channel": channel})
            reply = TurnReply(messages=[Outbound(kind="say", text=OPT_OUT_TEXT)], session_id=sid, opted_out=True)
        elif inbound.kind == "opt_in":
            await self.store.set_opt_out(addr.contact, False)
            reply = TurnReply(messages=[Outbound(kind="say", text=OPT_IN_TEXT)], session_id=sid)
        else:
            reply = TurnReply(messages=[Outbound(kind="say", text=await self.help_text(
                inbound.route_key or addr.business))], session_id=sid)
        adapter = self.channels.get(channel)
        if adapter.capabilities.sync_reply:
            return reply
        mark = f"kw:{inbound.message_id}" if inbound.message_id else None
        if mark and await self.store.get_status(mark) is not None:
            return TurnReply(session_id=sid, duplicate=True, opted_out=reply.opted_out)  # answered already
        try:
            await adapter.send(addr, reply.messages, self._context(None, sid, idempotency_key=mark))
        except Exception as exc:
            log.warning("%s acknowledgement to %s failed: %s", inbound.kind, redact_phone(sid), exc)
        else:
            if mark:
                try:
                    await self.store.record_status(mark, "sent")
                except StoreError as exc:  # sent and (a STOP) recorded: a 503 now would only send it twice
                    log.warning("%s acknowledgement to %s sent, its mark not kept: %s",
                                inbound.kind, redact_phone(sid), exc)
        return TurnReply(session_id=sid, opted_out=reply.opted_out)

    async def help_text(self, route_key: str) -> str:
        """The HELP answer: the flow's settings.help_text, else ORCHESTRATOR_HELP_TEXT, else a
        default naming the business (the flow's title)."""
        compiled = None
        with contextlib.suppress(Exception):
            compiled = await self.catalog.latest(self.catalog.route(route_key))
        if compiled is not None and compiled.settings.help_text:
            return compiled.settings.help_text
        if self.settings.help_text:
            return self.settings.help_text
        return HELP_TEXT.format(business=(compiled.title if compiled else None) or "This service")

    async def _missed_call(self, sid: str, addr: Address, event: Event, opted_out: bool,
                           started: float) -> TurnReply:
        """A call nobody answered (no-answer / busy / failed / canceled, the bot never spoke):
        start the missed-call flow by SMS. Deduped on the status delivery (CallSid + status)."""
        flow_id = self.settings.missed_call_flow or MISSED_CALL_FLOW
        if flow_id not in self.catalog.flow_ids():
            if self.settings.missed_call_flow:
                log.error("missed call: ORCHESTRATOR_MISSED_CALL_FLOW=%r is not a loaded flow; no text-back",
                          flow_id)
            return TurnReply(session_id=sid)
        if opted_out:
            return TurnReply(session_id=sid, opted_out=True)
        channel = self._adapter_for_idiom("sms") or self._adapter_for_idiom("whatsapp")
        if channel is None:
            log.error("missed call from %s: no SMS or WhatsApp channel to text back on", redact_phone(sid))
            return TurnReply(session_id=sid)
        start = Event(kind="start", channel=self.channels.get(channel).capabilities.idiom,
                      provider_id=event.provider_id)
        try:
            # this turn's gate is held already (the call's status turn released only the store's lock)
            return await self._gated_turn(channel, addr, sid, start, None, started, flow_id=flow_id, outbound=True)
        except OptedOut:
            return TurnReply(session_id=sid, opted_out=True)

    async def _turn(
        self, channel: str, addr: Address, sid: str, event: Event, route_key: str | None,
        *, flow_id: str | None = None, vars: dict[str, Any] | None = None, outbound: bool = False,
        timer_turns: int | None = None, proactive: bool = False,
    ) -> TurnReply:
        """A turn, queued behind this process's other turns of the session (`SessionGates`);
        the whole wait, here and at the store's lock, is bounded by lock_wait_seconds."""
        started = time.perf_counter()
        wait = self.settings.lock_wait_seconds
        if not await self._gates.acquire(sid, wait):
            raise LockTimeout(
                f"session {redact_phone(sid)!r}: other turns of it held this process for more than {wait} s; "
                "the provider should retry (raise ORCHESTRATOR_LOCK_WAIT_SECONDS if turns are slow)"
            )
        try:
            return await self._gated_turn(channel, addr, sid, event, route_key, started, flow_id=flow_id,
                                          vars=vars, outbound=outbound, timer_turns=timer_turns, proactive=proactive)
        finally:
            self._gates.release(sid)

    async def _gated_turn(
        self, channel: str, addr: Address, sid: str, event: Event, route_key: str | None, started: float,
        *, flow_id: str | None = None, vars: dict[str, Any] | None = None, outbound: bool = False,
        timer_turns: int | None = None, proactive: bool = False,
    ) -> TurnReply:
        """`proactive`: no webhook waits for this turn's answer (a delivery failure fed back), so
        its messages go out through the outbox."""
        adapter = self.channels.get(channel)
        s = self.settings
        dedupe_id = event.provider_id
        b = await self.store.begin(
            sid, dedupe_id, lock_ttl_seconds=s.lock_ttl_seconds,
            wait_seconds=max(0.0, s.lock_wait_seconds - (time.perf_counter() - started)), contact=addr.contact,
        )
        if b.duplicate_reply is not None:
            return await self._duplicate(channel, sid, b.duplicate_reply)
        try:
            if outbound and b.opted_out:
                raise OptedOut(f"contact {redact_phone(addr.contact)} opted out (STOP); nothing may be sent")
            if b.opted_out and (adapter.capabilities.idiom != "voice" or timer_turns is not None):
                await self.store.release(sid, b.token)
                return TurnReply(session_id=sid, opted_out=True)
            now = self.clock()
            session = _session_decoder.decode(b.session) if b.session else None
            if session is not None:
                require_format("session", session.fmt)  # a newer release's: 503, left to it
            compiled = await self._compiled_for(session) if session else None
            if session is not None and compiled is not None:
                session.vars = self.engine(compiled).loaded_vars(session.vars)
            if timer_turns is not None and (
                session is None or compiled is None or session.status == "ended" or session.turns != timer_turns
            ):
                await self.store.release(sid, b.token)  # the conversation moved on: a stale timer
                return TurnReply(session_id=sid)
            fresh = outbound or session is None or compiled is None or (
                session.status == "ended" and event.kind in CONVERSATIONAL
            )
            carried_inbound_at = session.last_inbound_at if session is not None else 0.0
            if fresh:
                if event.kind not in CONVERSATIONAL:
                    await self.store.release(sid, b.token)  # e.g. a late status for an unknown call
                    if (event.kind == "hangup" and not outbound and timer_turns is None
                            and (event.text or "").lower() in MISSED_CALL_STATUSES):
                        return await self._missed_call(sid, addr, event, b.opted_out, started)
                    return TurnReply(session_id=sid)
                compiled = await self.catalog.latest(flow_id or self.catalog.route(route_key or addr.business))
                new = self.engine(compiled).new_session(
                    sid, business=addr.business, contact=addr.contact, channel=event.channel, now=now,
                    vars=vars, contact_name=event.profile_name,
                )
                if session is not None:
                    new.version = session.version
                session = new
                event = msgspec.structs.replace(event, kind="start")
                metrics.labelled(metrics.CONVERSATIONS_STARTED, compiled.id, event.channel).inc()
            elif (event.kind == "hangup" and session is not None and session.channel != event.channel
                  and session.status == "active"):
                await self.store.release(sid, b.token)  # a call that is not this (text) conversation
                return TurnReply(session_id=sid)
            assert session is not None and compiled is not None
            result = await self.engine(compiled).turn(session, event, now)
            if outbound:  # the contact said nothing: the WhatsApp window is the last real inbound's
                result.session.last_inbound_at = carried_inbound_at
            reply = await self._save(adapter, sid, b.token, b.version, dedupe_id, event, compiled, result, now,
                                     proactive=proactive or outbound or timer_turns is not None)
        except BaseException:
            with contextlib.suppress(Exception):
                await self.store.release(sid, b.token)
            raise
        elapsed = time.perf_counter() - started
        metrics.labelled(metrics.TURNS, event.channel).inc()
        metrics.labelled(metrics.TURN_SECONDS, event.channel).observe(elapsed)
        if log.isEnabledFor(logging.DEBUG):  # per-turn detail; operators get the metrics
            log.debug("turn", extra={
                "session": redact_phone(sid), "flow": compiled.id, "revision": compiled.revision,
                "event": event.kind, "channel": channel, "state": result.session.state,
                "ended": result.ended, "ms": round(elapsed * 1000, 2),
            })
        return reply

    async def _save(
        self, adapter: ChannelAdapter, sid: str, token: str, version: int, dedupe_id: str | None, event: Event,
        compiled: CompiledFlow, result: TurnResult, now: float, *, proactive: bool,
    ) -> TurnReply:
        session = result.session
        session.version = version + 1
        session.adapter = adapter.name
        within = now - (session.last_inbound_at or 0) < WINDOW_SECONDS
        # Messages answer in the webhook when the channel can and the conversation is still on
        # it; otherwise (WhatsApp, a call moved to SMS, timers, outbound starts) they go out
        # through the outbox, saved in the same atomic commit.
        sync = (not proactive and adapter.capabilities.sync_reply
                and session.channel == adapter.capabilities.idiom)
        outbox: list[OutboxPut] = []
        for_contact = notify.contact_messages(result.messages)  # staff notes go to staff, below
        # an `end` alone says nothing to the contact: no outbox item for it
        if not sync and any(m.kind != "end" for m in for_contact):
            target = self._adapter_for_idiom(session.channel, session.adapter or adapter.name)
            if target is None:
                log.error("session %s: no channel adapter for %r; messages dropped",
                          redact_phone(sid), session.channel)
            else:
                item_id = f"{sid}|{secrets.token_hex(8)}"  # 16 hex digits, as uuid4().hex[:16] gave
                item = OutboxItem(id=item_id, adapter=target, business=session.business,
                                  contact=session.contact, messages=for_contact,
                                  revision=compiled.revision, within_window=within, created_at=now,
                                  window_ends=(session.last_inbound_at or 0) + WINDOW_SECONDS if within else 0.0)
                outbox.append(OutboxPut(item_id, _encoder.encode(item)))
        notes = notify.staff_messages(compiled, result)
        staff_adapter = (self._adapter_for_idiom("sms") or self._adapter_for_idiom("whatsapp")) if notes else None
        for note in notes if staff_adapter else []:
            item_id = f"{sid}|staff-{secrets.token_hex(8)}"
            item = OutboxItem(id=item_id, adapter=staff_adapter or "", business=session.business,
                              contact=note.target or "", messages=[note], revision=compiled.revision,
                              created_at=now)
            outbox.append(OutboxPut(item_id, _encoder.encode(item)))
        reply_messages = result.messages if sync else []
        step = turn_step(session) if sync and adapter.capabilities.idiom == "voice" else None
        lean, elided = compact_messages(compiled, reply_messages)
        stored = StoredReply(messages=lean, flow_choices=elided, revision=compiled.revision,
                             event_kind=event.kind, within_window=within, step=step)
        ttl = _seconds(compiled.settings.session_ttl)
        retention = self.settings.retention_seconds
        timer = None
        if result.timer is not None and not result.ended:
            timer = TimerSet(result.timer.due, timer_member(sid, result.timer.turns))
        saved = msgspec.structs.replace(session, vars=self.engine(compiled).stored_vars(session.vars))
        try:  # at the first and last turn: the record rides with the commit
            record = self.recorder.record_put(event.channel, result)
        except Exception as exc:  # analytics never costs a turn: save it without its record
            log.warning("conversation record of %s not built: %s", redact_phone(sid), exc)
            record = None
        commit = Commit(
            session=_encoder.encode(saved), version=session.version, expect_version=version,
            ttl_seconds=max(ttl, retention) if result.ended else ttl,
            dedupe_id=dedupe_id, reply=_encoder.encode(stored),  # the store keeps it with the turn
            dedupe_ttl_seconds=self.settings.dedupe_ttl_seconds,
            transcript=[_encoder.encode(e) for e in result.transcript], retention_seconds=retention,
            outbox=outbox, outbox_due=now, timer=timer, contact=session.contact, updated_at=now,
            side=[record] if record is not None else [],
        )
        self._fault_point("before_save")
        await self.store.commit(sid, token, commit)
        self._fault_point("after_save")
        if outbox:
            self._wake.set()
        if result.ended:
            metrics.labelled(metrics.CONVERSATIONS_ENDED, compiled.id, session.outcome or "ended").inc()
        await self.recorder.after_commit(event.channel, result, recorded=True)  # the commit wrote the record
        return TurnReply(
            messages=reply_messages, session_id=sid,
            context=self._context(compiled, sid, within_window=within, event_kind=event.kind, step=step),
        )

    async def _duplicate(self, channel: str, sid: str, raw: bytes) -> TurnReply:
        metrics.labelled(metrics.DUPLICATES, channel).inc()
        if not raw:  # a delivery answered through the outbox: the webhook reply was empty
            return TurnReply(messages=[], duplicate=True, context=self._context(None, None))
        stored = _reply_decoder.decode(unpack_reply(raw))
        require_format("reply", stored.fmt)  # a newer release's reply: 503, its retry may reach one
        compiled = None
        if stored.revision:
            with contextlib.suppress(FlowError):
                compiled = await self.catalog.for_revision(stored.revision)
        session_id = stored.session_id or sid
        return TurnReply(
            messages=expand_messages(compiled, stored.messages, stored.flow_choices), duplicate=True,
            session_id=session_id, opted_out=stored.opted_out,
            context=self._context(compiled, session_id, within_window=stored.within_window,
                                  event_kind=stored.event_kind, step=stored.step),
        )

    # ------------------------------------------------------------------ outbound
    async def start_outbound(
        self, address: Address, channel: str, flow_id: str, vars: dict[str, Any] | None = None,
    ) -> TurnReply:
        """Start `flow_id` for a contact (admin API, missed-call text-back). The first messages
        go out through the outbox. OptedOut when the contact said STOP."""
        if await self.store.is_opted_out(address.contact):
            raise OptedOut(f"contact {redact_phone(address.contact)} opted out (STOP); nothing may be sent")
        adapter = self.channels.get(channel)
        sid = f"{address.business}:{address.contact}"
        event = Event(kind="start", channel=adapter.capabilities.idiom,
                      provider_id=f"outbound:{uuid.uuid4().hex[:16]}")
        with correlation(event.provider_id):
            reply = await self._turn(channel, address, sid, event, None, flow_id=flow_id, vars=vars,
                                     outbound=True)
        return reply

    async def _undelivered(self, item: OutboxItem, exc: SendError) -> bool:
        """Feed a permanent (4xx) refusal of a message to the contact back into its conversation:
        `Event(kind="undelivered", text=<provider error code>)` through the normal turn pipeline, so
        the flow's `on: {undelivered: ...}` route (or the engine's default) runs. The dedupe key is
        derived from the outbox item id, so a re-fed item never advances the conversation twice; it
        is fed before the item is finished, so a crash in between re-sends and re-feeds (deduped).
        A staff notification is not the contact's conversation: its failure is only logged.
        False when the feed itself failed (the caller retries the item)."""
        sid = item.id.rpartition("|")[0]
        if item.id.rpartition("|")[2].startswith("staff-"):
            log.error("staff notification %s undelivered (%s); not fed into the conversation",
                      redact_phone(item.id), exc.code or exc.status or "refused")
            return True
        try:
            idiom = self.channels.get(item.adapter).capabilities.idiom
        except LookupError:
            return True
        event = Event(kind="undelivered", channel=idiom, text=exc.code or "",
                      provider_id=f"undelivered:{item.id.rpartition('|')[2]}")
        addr = Address(business=item.business, contact=item.contact)
        try:
            with correlation(f"undelivered-{uuid.uuid4().hex[:8]}"):
                await self._turn(item.adapter, addr, sid, event, None, proactive=True)
        except Exception as exc2:
            log.warning("undelivered message %s not fed into its conversation yet: %s", redact_phone(item.id), exc2)
            return False
        self._wake.set()  # the flow's answer to it (staff told) is in the outbox now
        return True

    # ------------------------------------------------------------------ background
    async def run_background(self) -> None:
        """Timer poller and outbox sender until cancelled; safe with several processes."""
        await asyncio.gather(self._timer_loop(), self._outbox_loop())

    async def _timer_loop(self) -> None:
        while True:
            try:
                await self.fire_due_timers()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("timer poller: %s", exc)
            await asyncio.sleep(self.settings.timer_poll_seconds)

    async def _outbox_loop(self) -> None:
        batch = 50
        while True:
            try:
                if await self.send_outbox(batch) >= batch:
                    continue  # a full batch: more may be ready, no pause (a backlog drains at send speed)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("outbox sender: %s", exc)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.timer_poll_seconds)
            self._wake.clear()

    async def fire_due_timers(self, limit: int = 100) -> int:
        """Fire every due no-reply timer once (across processes); returns how many turned."""
        fired = 0
        for member in await self.store.claim_due_timers(self.clock(), limit):
            sid, turns = parse_timer_member(member)
            try:
                raw = await self.store.load(sid)
                session = _session_decoder.decode(raw) if raw is not None else None
                if session is not None:
                    require_format("session", session.fmt)
            except NewerFormat as exc:  # a newer release's session: its timer is left to a newer process
                log.warning("timer for %s left for a newer process: %s", redact_phone(sid), exc)
                await self.store.put_timer(member, self.clock() + TIMER_LEAVE_SECONDS)
                continue
            if session is None:
                continue
            adapter = self._adapter_for_idiom(session.channel, session.adapter)
            if adapter is None:
                continue
            event = Event(kind="timeout", channel=session.channel, provider_id=f"timer:{turns}")
            addr = Address(business=session.business, contact=session.contact)
            with correlation(f"timer-{uuid.uuid4().hex[:8]}"):
                try:
                    reply = await self._turn(adapter, addr, sid, event, None, timer_turns=turns)
                    fired += reply.context.event_kind == "timeout"  # not stale, not opted out
                except Exception as exc:
                    log.warning("timer for %s failed: %s", redact_phone(sid), exc)
        if fired:
            await self.send_outbox()
        return fired

    async def send_outbox(self, limit: int = 50) -> int:
        """Send ready outbox items (leased); returns how many were sent.

        Each contact's items go in order, one send in flight per contact, while different contacts
        send concurrently, at most `outbox_concurrency` calls per adapter: one slow provider call
        delays only its own contact. An item's provider calls ("parts") are keyed
        `part_key(item id, i)`; the parts accepted are recorded in the item on a failure, so a retry
        never resends them. A send whose outcome is unknown (a timeout or reset after the request
        went out, a sender killed mid-send) is reconciled with the provider before it is sent again.
        Failures retry with capped backoff until `outbox_give_up_seconds` after the turn; then (or on
        a permanent refusal) the item is fed back into its conversation as `undelivered` (staff are
        told), listed by GET /api/outbox/failed and finished. The opt-out flag comes with the claim;
        a send long after its claim asks again (no flag older than OPT_OUT_RECHECK_SECONDS)."""
        now = self.clock()
        claimed_at = time.monotonic()
        chains: dict[tuple[str, str], list[tuple[OutboxClaim, OutboxItem]]] = {}
        for claim in await self.store.claim_outbox(now, limit, self.settings.outbox_lease_seconds):
            item = _outbox_decoder.decode(claim.payload)
            chains.setdefault((item.adapter, item.contact), []).append((claim, item))
        for chain in chains.values():
            if len(chain) > 1:  # the turns' order (claims come by ready-at: a retry moves it)
                chain.sort(key=lambda pair: pair[1].created_at)
        if len(chains) == 1:
            key, chain = next(iter(chains.items()))
            return await self._send_chain(key, chain, claimed_at)
        return sum(await asyncio.gather(*(self._send_chain(k, c, claimed_at) for k, c in chains.items())))

    async def _send_chain(
        self, key: tuple[str, str], chain: list[tuple[OutboxClaim, OutboxItem]], claimed_at: float,
    ) -> int:
        """One contact's claimed items, in order; an item left for a retry holds the later ones back."""
        if key in self._in_flight:  # another sender of this process is on this contact: wait behind it
            await self._defer(chain, self.clock() + 1.0)
            return 0
        self._in_flight.add(key)
        sent = 0
        try:
            for n, (claim, item) in enumerate(chain):
                done, due = await self._send_item(claim, item, claimed_at)
                sent += done
                if due is not None:
                    await self._defer(chain[n + 1:], due)
                    break
        finally:
            self._in_flight.discard(key)
        return sent

    async def _defer(self, chain: list[tuple[OutboxClaim, OutboxItem]], due: float) -> None:
        for k, (claim, item) in enumerate(chain, 1):
            payload = claim.payload
            if claim.reclaimed and not item.unknown_since:  # keep the reason to reconcile it
                item.unknown_since = item.created_at or self.clock()
                payload = _encoder.encode(item)
            await self.store.retry_outbox(item.id, payload, due + k * 0.001)

    def _slot(self, adapter: str) -> asyncio.Semaphore:
        slot = self._slots.get(adapter)
        if slot is None:
            slot = self._slots[adapter] = asyncio.Semaphore(max(1, self.settings.outbox_concurrency))
        return slot

    async def _sent_lookup(self, key: str) -> str | None:
        """A part whose status webhook came back carrying its key was accepted (reconciliation)."""
        return key if await self.store.get_status(key) is not None else None

    async def _send_item(self, claim: OutboxClaim, item: OutboxItem, claimed_at: float) -> tuple[bool, float | None]:
        """(sent, the due time when the item waits for a retry)."""
        if item.fmt > FORMATS["outbox"]:  # a newer release's item: its lease ends, a newer process takes it
            log.warning("outbox item %s is in format %d; left for a newer process", redact_phone(item.id), item.fmt)
            return False, None
        opted_out = claim.opted_out
        if opted_out is None or time.monotonic() - claimed_at > OPT_OUT_RECHECK_SECONDS:
            opted_out = await self.store.is_opted_out(item.contact)
        if opted_out:
            await self.store.finish_outbox(item.id, "canceled", "opted_out")
            return False, None
        settings = self.settings
        now = self.clock()
        if claim.reclaimed and not item.unknown_since:
            item.unknown_since = item.created_at or now  # its sender died mid-send: what went out is unknown
        if item.created_at and now - item.created_at >= settings.outbox_give_up_seconds:
            return await self._give_up(item, now, SendError(
                f"not sent within ORCHESTRATOR_OUTBOX_GIVE_UP_SECONDS={settings.outbox_give_up_seconds:g} of its turn",
                code="gave_up"))
        within = item.within_window and not (item.window_ends and now >= item.window_ends)
        if item.within_window and not within and item.sent:
            return await self._give_up(item, now, SendError(
                "the WhatsApp 24 h window closed before the rest of the turn was sent; free-form text cannot "
                "reach the contact now", code="window_closed"))
        compiled = None
        if item.revision:
            with contextlib.suppress(FlowError):
                compiled = await self.catalog.for_revision(item.revision)
        ctx = self._context(compiled, item.id.rpartition("|")[0], within_window=within, idempotency_key=item.id)
        ctx.sent_parts = item.sent
        if item.unknown_since:
            ctx.reconcile_since = item.unknown_since
            ctx.reconcile_final = now >= item.unknown_since + settings.outbox_reconcile_seconds
            ctx.sent_lookup = self._sent_lookup
        try:
            adapter = self.channels.get(item.adapter)
            async with self._slot(item.adapter):
                ids = await adapter.send(Address(business=item.business, contact=item.contact), item.messages, ctx)
        except Exception as exc:
            return await self._send_failed(item, exc, now)
        await self.store.finish_outbox(item.id, "sent", message_ids=item.ids + ids)
        metrics.labelled(metrics.SENDS, item.adapter, "sent").inc()
        return True, None

    async def _send_failed(self, item: OutboxItem, exc: Exception, started: float) -> tuple[bool, float | None]:
        metrics.labelled(metrics.SENDS, item.adapter, "failed").inc()
        settings = self.settings
        now = self.clock()
        retryable = exc.retryable if isinstance(exc, SendError) else not isinstance(exc, LookupError)
        accepted = exc.accepted if isinstance(exc, SendError) else []
        item.sent += len(accepted)
        item.ids = item.ids + accepted
        if isinstance(exc, SendError) and exc.unknown:
            item.unknown_since = started if accepted or not item.unknown_since else item.unknown_since
        else:
            item.unknown_since = 0.0  # the failing part was refused: it was not accepted
        item.attempts += 1
        out_of_time = item.created_at and now - item.created_at >= settings.outbox_give_up_seconds
        capped = settings.outbox_max_attempts and item.attempts >= settings.outbox_max_attempts
        if retryable and not out_of_time and not capped:
            due = now + min(2.0 ** item.attempts, settings.outbox_backoff_cap_seconds)
            if item.unknown_since:  # give its status webhook time to come back before reconciling
                due = max(due, item.unknown_since + settings.outbox_reconcile_seconds)
            await self.store.retry_outbox(item.id, _encoder.encode(item), due)
            log.warning("send %s failed (attempt %d, %d part(s) sent), retrying in %.0f s: %s",
                        redact_phone(item.id), item.attempts, item.sent, due - now, exc)
            return False, due
        if not isinstance(exc, SendError):
            exc = SendError(f"{type(exc).__name__}: {exc}", code=type(exc).__name__)
        elif retryable and not exc.code:
            exc.code = "gave_up"
        return await self._give_up(item, now, exc)

    async def _give_up(self, item: OutboxItem, now: float, exc: SendError) -> tuple[bool, float | None]:
        """Fed into the conversation as `undelivered` (its flow's route, or the default: staff told), then
        listed as failed and finished. A feed that fails leaves the item for a later retry (fed once: deduped)."""
        if not await self._undelivered(item, exc):
            due = now + min(2.0 ** max(item.attempts, 1), self.settings.outbox_backoff_cap_seconds)
            await self.store.retry_outbox(item.id, _encoder.encode(item), due)
            return False, due
        reason = exc.code or (str(exc.status) if exc.status else "refused")
        failure = FailedSend(
            id=item.id, session_id=item.id.rpartition("|")[0], adapter=item.adapter, contact=item.contact,
            reason=reason, error=str(exc)[:300], attempts=item.attempts, parts_sent=item.sent,
            created_at=item.created_at, failed_at=now, texts=[m.text for m in item.messages if m.text],
        )
        await self.store.finish_outbox(item.id, "failed", reason, message_ids=item.ids,
                                       failure=_encoder.encode(failure))
        log.error("send %s given up after %d attempt(s) (%s): %s", redact_phone(item.id), item.attempts, reason, exc)
        return False, None
