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
import contextlib
import dataclasses
import functools
import logging
import secrets
import time
import uuid
from collections.abc import Callable
from typing import Any

import msgspec

from orchestrator import metrics
from orchestrator.engine import timeparse
from orchestrator.engine.compiler import CompiledFlow
from orchestrator.engine.turn import Engine
from orchestrator.errors import FlowError, LockTimeout, NewerFormat, OptedOut, SendError, StoreError
from orchestrator.flow import schema
from orchestrator.flow.schema import parse_duration
from orchestrator.languages.messages import catalogue
from orchestrator.logs import correlation, redact_phone
from orchestrator.model import Event, Outbound, Session, TurnResult
from orchestrator.plugins.channels import Address, ChannelAdapter, ChannelRegistry, Inbound, ReplyContext
from orchestrator.plugins.connectors import STEP_WATCH, ConnectorRegistry
from orchestrator.runtime import notify
from orchestrator.runtime.catalog import FlowCatalog
from orchestrator.runtime.gates import SessionGates
from orchestrator.runtime.outbox import OutboxItem, OutboxSender
from orchestrator.runtime.periodic import every
from orchestrator.runtime.replies import (
    StoredReply,
    TurnReply,
    compact_messages,
    decode_reply,
    encode_reply,
    expand_messages,
    reply_context,
    turn_step,
)
from orchestrator.runtime.voice import VoiceWaits
from orchestrator.settings import AppSettings
from orchestrator.stores.base import (
    Begin,
    Commit,
    OutboxPut,
    SessionStore,
    TimerSet,
    parse_reminder_member,
    parse_timer_member,
    reminder_member,
    require_format,
    timer_member,
)
from orchestrator.stores.factory import open_store
from orchestrator.understand import understander_from_settings

log = logging.getLogger("orchestrator.runtime.pipeline")
WINDOW_SECONDS = 24 * 3600  # WhatsApp customer-service window
CONVERSATIONAL = frozenset({"start", "text", "speech", "digits", "choice", "media", "location"})
TIMER_LEAVE_SECONDS = 5.0  # a timer left for a newer process is due again this much later
OPT_OUT_TEXT = catalogue()["opt_out"]  # the English words; a contact hears their language's (`_keyword`)
OPT_IN_TEXT = catalogue()["opt_in"]
HELP_TEXT = catalogue()["help"]
LIMIT_TEXT = "{business} cannot take more conversations today. Please call us, or write again tomorrow."
MISSED_CALL_FLOW = "missed_call_textback"  # started by SMS after an unanswered call when loaded
MISSED_CALL_STATUSES = frozenset({"no-answer", "busy", "failed", "canceled"})
OUTBOUND_CALL_KEY = "voice-out:"  # side hash of a placed call's start vars, until it is answered
OUTBOUND_CALL_TTL_SECONDS = 3600
_session_decoder = msgspec.msgpack.Decoder(Session)
_encoder = msgspec.msgpack.Encoder()


class TurnRequest(msgspec.Struct, kw_only=True):
    """One turn to run: who, through which adapter, what happened, and how the turn was started."""

    channel: str  # the adapter the event came through
    address: Address
    session_id: str
    event: Event  # a turn that starts a conversation runs it as `start`
    route_key: str | None = None  # which flow a new conversation gets (settings.routes)
    flow_id: str | None = None  # start this flow (admin API, missed-call text-back), not the routed one
    vars: dict[str, Any] | None = None  # a started flow's initial vars
    outbound: bool = False  # started by us: refused (OptedOut) when the contact said STOP
    timer_turns: int | None = None  # a no-reply timer armed at this turn count: stale once the session moved
    proactive: bool = False  # no webhook waits for its answer (a failure fed back): replies go by outbox
    started: float = 0.0  # time.perf_counter() at arrival: the whole lock wait counts from here

    @property
    def answered_later(self) -> bool:
        """Whether the turn's messages go out through the outbox whatever the channel."""
        return self.proactive or self.outbound or self.timer_turns is not None


def _limit_variant(compiled: CompiledFlow) -> CompiledFlow | None:
    """The flow starting at its `defaults.limit` state (same revision: later turns go on as usual);
    None when the flow has none."""
    limit = compiled.flow.defaults.limit
    if not limit or limit not in compiled.states:
        return None
    return dataclasses.replace(compiled, flow=msgspec.structs.replace(compiled.flow, start=limit))


@functools.lru_cache(maxsize=64)
def _seconds(duration: str) -> int:
    """A flow setting's duration in whole seconds, parsed once per distinct text."""
    return int(parse_duration(duration))


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
        self._engines: dict[str, Engine] = {}
        self.understander = understander_from_settings(settings)  # None: rules only
        self._gates = SessionGates()  # one turn per session per process at the store's lock
        self.outbox = OutboxSender(store, channels, catalog, settings, undelivered=self._undelivered, clock=clock)
        from orchestrator.records.analytics import (
            Recorder,  # conversation records at start / end (admin API, analytics)
        )

        self.recorder = Recorder(store, settings.retention_seconds)
        # Many businesses (orchestrator/businesses): which business this runtime serves, and its
        # admission check for new conversations (a daily limit); None / "" for a single business.
        self.business_id = ""
        self.admission: Callable[[CompiledFlow], Any] | None = None
        self.voice = VoiceWaits(self)  # voice turns: a filler when slow, continuations
        from orchestrator.runtime.reminders import ReminderFirer

        self._reminders = ReminderFirer(self)

    @classmethod
    async def create(
        cls, settings: AppSettings, connectors: ConnectorRegistry, channels: ChannelRegistry,
        *, store: SessionStore | None = None, clock: Callable[[], float] = time.time,
    ) -> Runtime:
        store = store or await open_store(
            settings.redis_url, settings.key_prefix, timeout_seconds=settings.redis_timeout_seconds,
            wait_replicas=settings.redis_wait_replicas,
        )
        catalog = FlowCatalog(
            store, connectors, flows_dir=settings.flows_dir, routes=settings.routes(),
            default_flow=settings.default_flow,
        )
        for path, problem in (await catalog.reload()).items():
            log.error("flow file %s is invalid and was skipped:\n%s", path, problem)
        # dateparser's import and first parse cost ~100+ ms: pay them here, in a worker
        # thread, not inside the first turn that reaches the date fallback
        languages = {(await catalog.latest(flow_id)).settings.language for flow_id in catalog.flow_ids()}
        for language in sorted(languages) or ["en"]:
            await catalog.off_loop(timeparse.warm_up, language)
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
            engine = self._engines[compiled.revision] = Engine(compiled, self.connectors, self.understander)
        return engine

    def _context(
        self, compiled: CompiledFlow | None, session_id: str | None, *, within_window: bool = True,
        event_kind: str | None = None, idempotency_key: str | None = None, step: str | None = None,
    ) -> ReplyContext:
        return reply_context(compiled, session_id, self.settings.public_url or "", within_window=within_window,
                             event_kind=event_kind, idempotency_key=idempotency_key, step=step)

    def _adapter_for_idiom(self, idiom: str, preferred: str | None = None) -> str | None:
        if preferred:
            with contextlib.suppress(LookupError):
                if self.channels.get(preferred).capabilities.idiom == idiom:
                    return preferred
        for name in self.channels.names():
            if self.channels.get(name).capabilities.idiom == idiom:
                return name
        return None

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
        if inbound.kind == "continue":
            with correlation(inbound.message_id or None):
                return await self.voice.resume(channel, inbound, sid)
        if inbound.kind == "whisper":
            return await self.voice.whisper(inbound, sid)
        if inbound.event is None:
            return TurnReply()
        with correlation(inbound.event.provider_id or None):
            req = TurnRequest(channel=channel, address=addr, session_id=sid, event=inbound.event,
                              route_key=inbound.route_key, flow_id=inbound.flow_id)
            if inbound.start_ref and inbound.flow_id:  # an outbound call answered: the vars it was placed with
                kept = (await self.store.side.hgetall(f"{OUTBOUND_CALL_KEY}{inbound.start_ref}")).get("vars")
                req.vars = msgspec.msgpack.decode(kept) if kept else None
            if inbound.event.channel == "voice" and inbound.event.kind != "hangup":
                if inbound.event.kind == "dial" and inbound.message_id:  # a warm transfer: was it accepted?
                    req.event = await self.voice.transfer_outcome(inbound.event, inbound.message_id)
                return await self.voice.turn(req)  # a filler rather than dead air when slow
            return await self._turn(req)

    async def _keyword(self, channel: str, inbound: Inbound, addr: Address, sid: str) -> TurnReply:
        """STOP / START / HELP (SMS carrier keywords, the same words on WhatsApp): answered in the
        webhook where the channel can, else sent at once (an opted-out contact gets no outbox item)."""
        if inbound.kind == "opt_out":
            await self.store.set_opt_out(addr.contact, True)  # recorded before anything else
            log.info("contact opted out", extra={"session": redact_phone(sid), "channel": channel})
        elif inbound.kind == "opt_in":
            await self.store.set_opt_out(addr.contact, False)
        compiled = await self._contact_flow(inbound.route_key or addr.business, addr.contact, sid)
        words = compiled.words if compiled is not None else catalogue()
        language = compiled.settings.language if compiled is not None else None
        if inbound.kind == "opt_out":
            reply = TurnReply(messages=[Outbound(kind="say", text=words["opt_out"], language=language)],
                              session_id=sid, opted_out=True)
        elif inbound.kind == "opt_in":
            reply = TurnReply(messages=[Outbound(kind="say", text=words["opt_in"], language=language)],
                              session_id=sid)
        else:
            reply = TurnReply(messages=[Outbound(kind="say", text=self._help_answer(compiled),
                                                 language=language)], session_id=sid)
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
        return self._help_answer(compiled)

    def _help_answer(self, compiled: CompiledFlow | None) -> str:
        words = compiled.words if compiled is not None else catalogue()
        if compiled is not None and compiled.settings.help_text:
            return schema.plain(compiled.settings.help_text)
        if self.settings.help_text and words.language == "en":
            return self.settings.help_text
        return words.say("help", business=(compiled.title if compiled else None) or words["this_service"])

    async def _contact_flow(self, route_key: str, contact: str, sid: str) -> CompiledFlow | None:
        """The routed flow in the contact's language (SPEC §9): their conversation's, else their
        number's country's, else the flow's default. None when no flow can be found."""
        compiled = None
        with contextlib.suppress(Exception):
            compiled = await self.catalog.latest(self.catalog.route(route_key))
        if compiled is None or not compiled.variants:
            return compiled
        language = compiled.language_of(contact)
        with contextlib.suppress(Exception):  # a keyword is answered even when the store is slow
            raw = await self.store.load(sid)
            session = _session_decoder.decode(raw) if raw is not None else None
            if session is not None and session.language:
                language = session.language
        return compiled.variant(language)

    async def _missed_call(self, req: TurnRequest, opted_out: bool) -> TurnReply:
        """A call nobody answered (no-answer / busy / failed / canceled, the bot never spoke):
        start the missed-call flow by SMS. Deduped on the status delivery (CallSid + status)."""
        sid = req.session_id
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
                      provider_id=req.event.provider_id)
        try:
            # this turn's gate is held already (the call's status turn released only the store's lock)
            return await self._gated_turn(TurnRequest(channel=channel, address=req.address, session_id=sid, event=start,
                                                      flow_id=flow_id, outbound=True, started=req.started))
        except OptedOut:
            return TurnReply(session_id=sid, opted_out=True)

    async def _turn(self, req: TurnRequest) -> TurnReply:
        """A turn, queued behind this process's other turns of the session (`SessionGates`);
        the whole wait, here and at the store's lock, is bounded by lock_wait_seconds."""
        req.started = time.perf_counter()
        wait = self.settings.lock_wait_seconds
        sid = req.session_id
        if not await self._gates.acquire(sid, wait):
            raise LockTimeout(
                f"session {redact_phone(sid)!r}: other turns of it held this process for more than {wait} s; "
                "the provider should retry (raise ORCHESTRATOR_LOCK_WAIT_SECONDS if turns are slow)"
            )
        try:
            return await self._gated_turn(req)
        finally:
            self._gates.release(sid)

    async def _gated_turn(self, req: TurnRequest) -> TurnReply:
        adapter = self.channels.get(req.channel)
        s = self.settings
        sid, addr, event = req.session_id, req.address, req.event
        b = await self.store.begin(
            sid, event.provider_id, lock_ttl_seconds=s.lock_ttl_seconds,
            wait_seconds=max(0.0, s.lock_wait_seconds - (time.perf_counter() - req.started)), contact=addr.contact,
        )
        if b.duplicate_reply is not None:
            return await self._duplicate(req.channel, sid, b.duplicate_reply)
        try:
            if req.outbound and b.opted_out:
                raise OptedOut(f"contact {redact_phone(addr.contact)} opted out (STOP); nothing may be sent")
            if b.opted_out and (adapter.capabilities.idiom != "voice" or req.timer_turns is not None):
                await self.store.release(sid, b.token)
                return TurnReply(session_id=sid, opted_out=True)
            now = self.clock()
            session = _session_decoder.decode(b.session) if b.session else None
            if session is not None:
                require_format("session", session.fmt)  # a newer release's: 503, left to it
            compiled = await self._compiled_for(session) if session else None
            if session is not None and compiled is not None:
                session.vars = self.engine(compiled).loaded_vars(session.vars)
            if req.timer_turns is not None and (
                session is None or compiled is None or session.status == "ended" or session.turns != req.timer_turns
            ):
                await self.store.release(sid, b.token)  # the conversation moved on: a stale timer
                return TurnReply(session_id=sid)
            fresh = req.outbound or session is None or compiled is None or (
                req.flow_id is not None and event.kind == "start"  # an outbound call answered: its own flow
            ) or (
                session.status == "ended" and event.kind in CONVERSATIONAL
            )
            carried_inbound_at = session.last_inbound_at if session is not None else 0.0
            if fresh:
                if event.kind not in CONVERSATIONAL:
                    await self.store.release(sid, b.token)  # e.g. a late status for an unknown call
                    if (event.kind == "hangup" and not req.outbound and req.timer_turns is None
                            and (event.text or "").lower() in MISSED_CALL_STATUSES):
                        return await self._missed_call(req, b.opted_out)
                    return TurnReply(session_id=sid)
                compiled = await self.catalog.latest(req.flow_id or self.catalog.route(req.route_key or addr.business))
                if self.admission is not None and not req.outbound and not await self.admission(compiled):
                    variant = _limit_variant(compiled)
                    if variant is None:
                        return await self._over_limit(req, adapter, b.token, compiled)
                    compiled = variant  # the flow's `defaults.limit` state opens this conversation
                new = self.engine(compiled).new_session(
                    sid, business=addr.business, contact=addr.contact, channel=event.channel, now=now,
                    vars=req.vars, contact_name=event.profile_name,
                )
                if session is not None:
                    new.version = session.version
                    if session.language and session.language in compiled.variants:
                        new.language = session.language  # the contact's language goes on (reminders, a new visit)
                session = new
                event = req.event = msgspec.structs.replace(event, kind="start")
                metrics.labelled(metrics.CONVERSATIONS_STARTED, compiled.id, event.channel).inc()
            elif (event.kind == "hangup" and session is not None and session.channel != event.channel
                  and session.status == "active"):
                await self.store.release(sid, b.token)  # a call that is not this (text) conversation
                return TurnReply(session_id=sid)
            assert session is not None and compiled is not None
            watch = STEP_WATCH.get()
            if watch is not None:  # a voice webhook waits: the lock is held, a filler may be said now
                watch.begun(compiled.variant(session.language).settings)  # the contact's language
            result = await self.engine(compiled).turn(session, event, now)
            if req.outbound:  # the contact said nothing: the WhatsApp window is the last real inbound's
                result.session.last_inbound_at = carried_inbound_at
            reply = await self._save(req, adapter, b, compiled, result, now)
        except BaseException:
            with contextlib.suppress(Exception):
                await self.store.release(sid, b.token)
            raise
        elapsed = time.perf_counter() - req.started
        metrics.labelled(metrics.TURNS, event.channel).inc()
        metrics.labelled(metrics.TURN_SECONDS, event.channel).observe(elapsed)
        if log.isEnabledFor(logging.DEBUG):  # per-turn detail; operators get the metrics
            log.debug("turn", extra={
                "session": redact_phone(sid), "flow": compiled.id, "revision": compiled.revision,
                "event": event.kind, "channel": req.channel, "state": result.session.state,
                "ended": result.ended, "ms": round(elapsed * 1000, 2),
            })
        return reply

    async def _save(
        self, req: TurnRequest, adapter: ChannelAdapter, begun: Begin, compiled: CompiledFlow, result: TurnResult,
        now: float,
    ) -> TurnReply:
        """Commit what the turn produced (session, transcript, reply, outbox items, timer, record) in
        one step; the answer to give the webhook."""
        sid, event, version = req.session_id, req.event, begun.version
        session = result.session
        session.version = version + 1
        session.adapter = adapter.name
        within = now - (session.last_inbound_at or 0) < WINDOW_SECONDS
        # Messages answer in the webhook when the channel can and the conversation is still on
        # it; otherwise (WhatsApp, a call moved to SMS, timers, outbound starts) they go out
        # through the outbox, saved in the same atomic commit.
        sync = (not req.answered_later and adapter.capabilities.sync_reply
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
        outbox += self._sends(sid, session, compiled, result.messages, within=within, now=now)
        notes = notify.staff_messages(compiled, result)
        staff_adapter = (self._adapter_for_idiom("sms") or self._adapter_for_idiom("whatsapp")) if notes else None
        for note in notes if staff_adapter else []:
            item_id = f"{sid}|staff-{secrets.token_hex(8)}"
            item = OutboxItem(id=item_id, adapter=staff_adapter or "", business=session.business,
                              contact=note.target or "", messages=[note], revision=compiled.revision,
                              created_at=now)
            outbox.append(OutboxPut(item_id, _encoder.encode(item)))
        reply_messages = [m for m in result.messages if m.kind != "send"] if sync else []
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
            dedupe_id=event.provider_id, reply=encode_reply(stored),  # the store keeps it with the turn
            dedupe_ttl_seconds=self.settings.dedupe_ttl_seconds,
            transcript=[_encoder.encode(e) for e in result.transcript], retention_seconds=retention,
            outbox=outbox, outbox_due=now, timer=timer, contact=session.contact, updated_at=now,
            side=[record] if record is not None else [],
            reminders=[TimerSet(r.due, reminder_member(sid, _encoder.encode(r))) for r in result.reminders],
        )
        await self.store.commit(sid, begun.token, commit)
        if outbox:
            self.outbox.wake.set()
        if result.ended:
            metrics.labelled(metrics.CONVERSATIONS_ENDED, compiled.id, session.outcome or "ended").inc()
        await self.recorder.after_commit(event.channel, result, recorded=True)  # the commit wrote the record
        return TurnReply(
            messages=reply_messages, session_id=sid,
            context=self._context(compiled, sid, within_window=within, event_kind=event.kind, step=step),
        )

    async def _over_limit(self, req: TurnRequest, adapter: ChannelAdapter, token: str,
                          compiled: CompiledFlow) -> TurnReply:
        """A new conversation past the business's daily limit: nothing is saved, the contact gets a
        polite refusal (in the webhook where the channel answers there, else sent at once)."""
        sid = req.session_id
        await self.store.release(sid, token)
        words = getattr(compiled, "words", None) or catalogue()  # the flow's language
        text = words.words.get("limit_refusal") or LIMIT_TEXT
        messages = [Outbound(kind="say", text=text.format(business=compiled.title or "We")), Outbound(kind="end")]
        if adapter.capabilities.sync_reply and not req.answered_later:
            return TurnReply(messages=messages, session_id=sid,
                             context=self._context(compiled, sid, event_kind=req.event.kind))
        try:
            await adapter.send(req.address, messages[:1],
                               self._context(compiled, sid, idempotency_key=f"limit:{req.event.provider_id}"))
        except Exception as exc:
            log.warning("limit refusal to %s not sent: %s", redact_phone(sid), exc)
        return TurnReply(session_id=sid)

    def _sends(self, sid: str, session: Session, compiled: CompiledFlow, messages: list[Outbound], *,
               within: bool, now: float) -> list[OutboxPut]:
        """Outbox items for this turn's `message.send`s: each on the adapter of its channel (the
        conversation's own adapter when it is that channel), to the contact or the number given.
        The WhatsApp window is the conversation's only when the message stays on its channel."""
        out: list[OutboxPut] = []
        for message in messages:
            if message.kind != "send" or not message.via:
                continue
            same = message.via == session.channel and not message.target
            target = self._adapter_for_idiom(message.via, session.adapter if same else None)
            if target is None:
                log.error("session %s: message.send by %s, but no %s channel is configured; not sent",
                          redact_phone(sid), message.via, message.via)
                continue
            open_window = within and same
            item_id = f"{sid}|send-{secrets.token_hex(8)}"
            item = OutboxItem(id=item_id, adapter=target, business=session.business,
                              contact=message.target or session.contact,
                              messages=[msgspec.structs.replace(message, kind="say", via=None, target=None)],
                              revision=compiled.revision, within_window=open_window, created_at=now,
                              window_ends=(session.last_inbound_at or 0) + WINDOW_SECONDS if open_window else 0.0)
            out.append(OutboxPut(item_id, _encoder.encode(item)))
        return out

    async def _duplicate(self, channel: str, sid: str, raw: bytes) -> TurnReply:
        metrics.labelled(metrics.DUPLICATES, channel).inc()
        if not raw:  # a delivery answered through the outbox: the webhook reply was empty
            return TurnReply(messages=[], duplicate=True, context=self._context(None, None))
        stored = decode_reply(raw)  # a newer release's reply: NewerFormat, 503, its retry may reach one
        compiled = None
        if stored.revision:
            with contextlib.suppress(FlowError):
                compiled = await self.catalog.for_revision(stored.revision)
        return TurnReply(
            messages=expand_messages(compiled, stored.messages, stored.flow_choices), duplicate=True,
            session_id=sid, opted_out=stored.opted_out,
            context=self._context(compiled, sid, within_window=stored.within_window,
                                  event_kind=stored.event_kind, step=stored.step),
        )

    # ------------------------------------------------------------------ outbound
    async def start_outbound(
        self, address: Address, channel: str, flow_id: str, vars: dict[str, Any] | None = None,
        *, delivery_id: str | None = None,
    ) -> TurnReply:
        """Start `flow_id` for a contact (admin API, missed-call text-back, reminders). The first
        messages go out through the outbox. OptedOut when the contact said STOP. `delivery_id`
        makes the start idempotent (a reminder fired twice starts once)."""
        if await self.store.is_opted_out(address.contact):
            raise OptedOut(f"contact {redact_phone(address.contact)} opted out (STOP); nothing may be sent")
        adapter = self.channels.get(channel)
        sid = f"{address.business}:{address.contact}"
        place_call = getattr(adapter, "place_call", None)
        if place_call is not None:  # voice: the flow starts when the call is answered (its webhook)
            await self.catalog.latest(flow_id)  # NoRoute when the flow is not loaded
            ref = secrets.token_hex(8)
            if vars:  # kept for the answered call's first turn (the call's URL names `ref` only)
                await self.store.side.hset(f"{OUTBOUND_CALL_KEY}{ref}", {"vars": _encoder.encode(vars)},
                                           ttl_seconds=OUTBOUND_CALL_TTL_SECONDS)
            await place_call(address, flow_id, self._context(None, sid), ref)
            return TurnReply(session_id=sid)
        event = Event(kind="start", channel=adapter.capabilities.idiom,
                      provider_id=delivery_id or f"outbound:{uuid.uuid4().hex[:16]}")
        with correlation(event.provider_id):
            reply = await self._turn(TurnRequest(channel=channel, address=address, session_id=sid, event=event,
                                                 flow_id=flow_id, vars=vars, outbound=True))
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
                await self._turn(TurnRequest(channel=item.adapter, address=addr, session_id=sid, event=event,
                                             proactive=True))
        except Exception as exc2:
            log.warning("undelivered message %s not fed into its conversation yet: %s", redact_phone(item.id), exc2)
            return False
        self.outbox.wake.set()  # the flow's answer to it (staff told) is in the outbox now
        return True

    # ------------------------------------------------------------------ background
    async def run_background(self) -> None:
        """Timer poller and outbox sender until cancelled; safe with several processes."""
        await asyncio.gather(every(self.settings.timer_poll_seconds, self.fire_due_timers, what="timer poller"),
                             self.outbox.run())

    async def send_outbox(self, limit: int = 50) -> int:
        """One pass of the outbox sender (`outbox.OutboxSender.send`); returns how many were sent."""
        return await self.outbox.send(limit)

    async def fire_due_timers(self, limit: int = 100) -> int:
        """Fire every due no-reply timer once (across processes); returns how many turned."""
        fired = 0
        for member in await self.store.claim_due_timers(self.clock(), limit):
            reminder = parse_reminder_member(member)
            if reminder is not None:
                fired += await self._reminders.fire(member, *reminder)
                continue
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
                    reply = await self._turn(TurnRequest(channel=adapter, address=addr, session_id=sid, event=event,
                                                         timer_turns=turns))
                    fired += reply.context.event_kind == "timeout"  # not stale, not opted out
                except Exception as exc:
                    log.warning("timer for %s failed: %s", redact_phone(sid), exc)
        if fired:
            await self.send_outbox()
        return fired
