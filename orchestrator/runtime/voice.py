"""Voice turns that never leave a caller in silence (SPEC §13, voice).

A voice turn runs as a task. When it has not answered within the flow's
`settings.voice_filler_after` (800 ms) once its lock is held, the webhook answers at once with
a filler ("One moment while I check the calendar.") and a `<Redirect>` to the continuation
route; the turn goes on in this process. The continuation (`Inbound(kind="continue")`, signed
like every Twilio request) waits for the turn's answer: here, the task itself; in another
process or after a restart, the turn's stored reply (the dedupe record, through
`store.begin`, which waits on the conversation's lock). Asked again, it answers the same.

The words said while waiting are the message catalogues' `voice_*` keys (`engine/voice_phrases.py`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from typing import TYPE_CHECKING, Any

import msgspec

from orchestrator.engine.voice_phrases import filler_text, words
from orchestrator.errors import LockTimeout
from orchestrator.flow.schema import parse_duration
from orchestrator.logs import redact_phone
from orchestrator.model import Event, Outbound, Session
from orchestrator.plugins.channels import Inbound, ReplyContext
from orchestrator.plugins.connectors import STEP_WATCH, StepWatch
from orchestrator.runtime.replies import TurnReply

if TYPE_CHECKING:
    from orchestrator.runtime.pipeline import Runtime, TurnRequest

log = logging.getLogger("orchestrator.runtime.voice")

# How long a continuation waits before it says "still checking" and redirects again: inside
# Twilio's 15 s webhook timeout, longer than a turn's connector budget (8.5 s).
CONTINUE_WAIT_SECONDS = 9.0
MAX_CONTINUE_ROUNDS = 3  # then an apology and a hang-up: a turn is bounded well before this
KEEP_DONE_SECONDS = 60.0  # a finished turn's answer stays here for a late continuation

@functools.lru_cache(maxsize=32)
def _after(duration: str) -> float:
    return parse_duration(duration)


class VoiceWaits:
    """The turns answered by a filler that are still running (or just finished) in this process."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._pending: dict[str, tuple[asyncio.Task[TurnReply], StepWatch]] = {}

    async def turn(self, req: TurnRequest) -> TurnReply:
        """Run a voice turn; its answer, or a filler with a continuation when it is slow.

        One task, one future and (once the turn holds its lock) one timer: a fast turn pays
        little more than the task (measured in benchmarks/README.md)."""
        rt = self.runtime
        pid = req.event.provider_id
        if not pid:
            return await rt._turn(req)
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[bool] = loop.create_future()  # True: say a filler now
        arrived = time.perf_counter()
        timer: list[asyncio.TimerHandle] = []

        def slow() -> None:
            if not answer.done():
                answer.set_result(True)

        def begun(settings: Any) -> None:
            # until the lock is held this is an ordinary turn: a lock wait ends in a 503 the
            # provider retries, never in a filler for a turn that did not start
            after = _after(getattr(settings, "voice_filler_after", "800ms")) - (time.perf_counter() - arrived)
            timer.append(loop.call_later(max(0.0, after), slow))

        def done(_: asyncio.Task[TurnReply]) -> None:
            if not answer.done():
                answer.set_result(False)

        watch = StepWatch(begun)
        token = STEP_WATCH.set(watch)
        try:
            task = loop.create_task(rt._turn(req))  # the task's context shares `watch`
        finally:
            STEP_WATCH.reset(token)
        task.add_done_callback(done)
        try:
            filler = await answer
        finally:
            if timer:
                timer[0].cancel()
        if not filler:
            return task.result()
        key = f"{req.session_id}|{pid}"
        self._pending[key] = (task, watch)
        task.add_done_callback(functools.partial(self._finished, key))
        text = filler_text(watch.settings, watch.action)
        log.info("voice turn slow: filler said, continuing", extra={
            "session": redact_phone(req.session_id), "action": watch.action})
        return self._waiting(req.session_id, pid, watch.settings, text, 1)

    def _finished(self, key: str, task: asyncio.Task[TurnReply]) -> None:
        if not task.cancelled() and task.exception() is not None:  # retrieved: a continuation re-raises it
            log.warning("voice turn answered by a filler failed: %s", task.exception())
        asyncio.get_running_loop().call_later(KEEP_DONE_SECONDS, self._pending.pop, key, None)

    def _waiting(self, sid: str, pid: str, settings: Any, text: str, round_: int) -> TurnReply:
        rt = self.runtime
        language = getattr(settings, "language", None)
        return TurnReply(
            messages=[Outbound(kind="say", text=text, language=language)], session_id=sid,
            context=ReplyContext(settings=settings, public_url=rt.settings.public_url or "", session_id=sid,
                                 continuation=pid, continuation_round=round_),
        )

    async def resume(self, channel: str, inbound: Inbound, sid: str) -> TurnReply:
        """A continuation: the answer of the turn it names, waited for (bounded)."""
        pid = inbound.message_id or ""
        round_ = max(1, inbound.wait_round)
        held = self._pending.get(f"{sid}|{pid}")
        if held is not None:
            task, watch = held
            await asyncio.wait((asyncio.shield(task),), timeout=CONTINUE_WAIT_SECONDS)
            if task.done():
                return task.result()
            return self._still(sid, pid, watch.settings, round_)
        return await self._stored(channel, inbound, sid, pid, round_)

    def _still(self, sid: str, pid: str, settings: Any, round_: int) -> TurnReply:
        if round_ >= MAX_CONTINUE_ROUNDS:
            return TurnReply(
                messages=[Outbound(kind="say", text=words(settings)["voice_gave_up"]), Outbound(kind="end")],
                session_id=sid, context=ReplyContext(settings=settings, public_url=self.runtime.settings.public_url
                                                     or "", session_id=sid),
            )
        return self._waiting(sid, pid, settings, words(settings)["voice_still"], round_ + 1)

    async def _stored(self, channel: str, inbound: Inbound, sid: str, pid: str, round_: int) -> TurnReply:
        """Not running here (another process, a restart): the turn's stored reply, waiting on the
        conversation's lock while another process still runs it."""
        rt = self.runtime
        s = rt.settings
        assert inbound.address is not None
        try:
            b = await rt.store.begin(sid, pid, lock_ttl_seconds=s.lock_ttl_seconds,
                                     wait_seconds=CONTINUE_WAIT_SECONDS, contact=inbound.address.contact)
        except LockTimeout:
            return self._still(sid, pid, None, round_)
        if b.duplicate_reply is not None:
            return await rt._duplicate(channel, sid, b.duplicate_reply)
        # the lock was free and the turn never saved: it was lost (a crash, a restart). Ask again.
        await rt.store.release(sid, b.token)
        from orchestrator.runtime.pipeline import TurnRequest

        log.warning("voice continuation for %s: the turn was lost; asking again", redact_phone(sid))
        rest = pid.partition(":")[2]
        if not rest:  # the call's first turn: start it again (nothing of it was saved)
            event = Event(kind="start", channel="voice", provider_id=pid)
        else:
            event = Event(kind="empty", channel="voice", provider_id=f"{pid}:again")
        return await rt._turn(TurnRequest(channel=channel, address=inbound.address, session_id=sid, event=event,
                                          route_key=inbound.route_key))


    # ---- warm transfer ------------------------------------------------------------------------

    async def whisper(self, inbound: Inbound, sid: str) -> TurnReply:
        """The person answering a transfer: what they hear (the `_whisper` line the handoff kept,
        then "press 1"), and their key press (1: connect, recorded for the `dial` that follows;
        anything else or nothing: not connected, the caller's `no_answer` route runs)."""
        rt = self.runtime
        key = inbound.message_id or ""
        public = rt.settings.public_url or ""
        step = key.rpartition(":")[2]
        if inbound.status == "accepted":
            await rt.store.record_status(key, "accepted")
            return TurnReply(session_id=sid, context=ReplyContext(public_url=public, session_id=sid,
                                                                  whisper="accepted"))
        raw = await rt.store.load(sid)
        session = msgspec.msgpack.decode(raw, type=Session) if raw else None
        compiled = await rt._compiled_for(session) if session is not None else None
        settings = compiled.variant(session.language).settings if compiled is not None and session else None
        ctx = ReplyContext(settings=settings, public_url=public, session_id=sid, step=step)
        if inbound.status == "declined":
            return TurnReply(messages=[Outbound(kind="say", text=words(settings)["voice_whisper_declined"]),
                                       Outbound(kind="end")], session_id=sid, context=ctx)
        line = str((session.vars.get("_whisper") if session is not None else None) or "A call for you.")
        ctx.whisper = "ask"
        return TurnReply(messages=[Outbound(kind="say", text=f"{line} {words(settings)['voice_whisper_accept']}")],
                         session_id=sid, context=ctx)

    async def transfer_outcome(self, event: Event, key: str) -> Event:
        """A warm transfer's `dial`: connected counts only when the person answering pressed 1;
        else it is `no-answer` (the whisper hung up on them, or nobody answered)."""
        status = (event.text or "").lower()
        if status in ("completed", "answered") and await self.runtime.store.get_status(key) is None:
            return msgspec.structs.replace(event, text="no-answer")
        return event
