"""Firing appointment reminders (`settings.reminders`, planned by `engine.reminders`).

A reminder is a durable timer armed in the commit of the turn that booked: its member is
`<session id>|R<payload>` in the timers index, so it survives restarts and is handed to one
poller at a time like a no-reply timer. When it is due:

1. it is re-armed a lease ahead first, so a process dying mid-fire leaves it to another, and
   dropped (or re-armed for its next try) once it is done with;
2. the booking is looked up with the calendar (`<calendar>.list_bookings` for the contact):
   a booking that is gone or no longer starts then (cancelled, moved, the contact erased) has
   no reminder (a moved booking scheduled its own);
3. outside the business's sending hours it waits for the next window, if the visit is still ahead;
4. the reminder flow starts with the contact as an outbound conversation with `booking` set,
   its delivery id derived from the member, so a second firing is answered as a duplicate
   and sends nothing; a contact who said STOP gets nothing (`OptedOut`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import msgspec

from orchestrator.engine.reminders import sending_window
from orchestrator.errors import FlowError, OptedOut
from orchestrator.logs import redact_phone
from orchestrator.model import ReminderDue, Session
from orchestrator.plugins.channels import Address
from orchestrator.plugins.connectors import CallContext

if TYPE_CHECKING:
    from orchestrator.runtime.pipeline import Runtime

log = logging.getLogger("orchestrator.runtime.reminders")
LEASE_SECONDS = 120.0  # a claimed reminder is due again this much later unless its start was recorded
RETRY_SECONDS = 300.0  # the calendar could not say whether the booking stands: ask again then
LOOKUP_TIMEOUT_SECONDS = 5.0
CALENDAR = "calendar"
_reminder = msgspec.msgpack.Decoder(ReminderDue)
_session = msgspec.msgpack.Decoder(Session)


class ReminderFirer:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def fire(self, member: str, session_id: str, payload: bytes) -> bool:
        """Fire one claimed reminder; True when its flow started. While it fires it is armed a
        lease ahead (a process dying here leaves it to another); then it is dropped, or armed
        again for when it may go out."""
        rt = self.runtime
        try:
            reminder = _reminder.decode(payload)
        except msgspec.DecodeError:
            log.error("reminder of %s unreadable; dropped", redact_phone(session_id))
            return False
        now = rt.clock()
        await rt.store.put_timer(member, now + LEASE_SECONDS)
        started, again = await self._fire(member, session_id, reminder, now)
        if again is None:
            await rt.store.drop_timer(member)
        else:
            await rt.store.put_timer(member, again)
        return started

    async def _fire(self, member: str, session_id: str, reminder: ReminderDue, now: float
                    ) -> tuple[bool, float | None]:
        """(whether its flow started, when to try again: None for never)."""
        rt = self.runtime
        try:
            compiled = await rt.catalog.latest(reminder.flow)
        except (FlowError, LookupError) as exc:
            log.error("reminder of %s: flow %r unavailable (%s); not sent", redact_phone(session_id),
                      reminder.flow, exc)
            return False, None
        settings = compiled.settings
        tz = ZoneInfo(settings.timezone)
        start = _start(reminder.start, tz)
        if start is None or start.timestamp() <= now:
            return False, None  # the visit is past: nothing to remind of
        later = _next_window(dt.datetime.fromtimestamp(now, tz), settings.sending_hours)
        if later is not None:  # outside sending hours: the next window, if the visit is still ahead
            return False, later.timestamp() if later < start else None
        business, contact, channel = await self._address(session_id)
        booking = await self._booking(reminder, session_id, contact, compiled, now)
        if booking is None:
            return False, None
        if booking is _UNKNOWN:
            return False, now + RETRY_SECONDS
        adapter = rt._adapter_for_idiom(reminder.channel) or rt._adapter_for_idiom(channel)
        if adapter is None:
            log.error("reminder of %s: no %s channel configured; not sent", redact_phone(session_id),
                      reminder.channel)
            return False, None
        delivery = "reminder:" + hashlib.sha256(member.encode()).hexdigest()[:24]
        try:
            reply = await rt.start_outbound(Address(business=business, contact=contact), adapter, reminder.flow,
                                            vars={"booking": booking}, delivery_id=delivery)
        except OptedOut:
            log.info("reminder of %s not sent: the contact opted out", redact_phone(session_id))
            return False, None
        return not reply.duplicate, None

    async def _address(self, session_id: str) -> tuple[str, str, str]:
        """(business, contact, channel) of the booking's conversation; from its id when the
        session has expired (`<business>:<contact>`)."""
        raw = await self.runtime.store.load(session_id)
        if raw is not None:
            try:
                s = _session.decode(raw)
                return s.business, s.contact, s.channel
            except msgspec.DecodeError:
                pass
        business, _, contact = session_id.rpartition(":")
        return business, contact, "sms"

    async def _booking(self, reminder: ReminderDue, session_id: str, contact: str, compiled: Any,
                       now: float) -> Any:
        """The booking as the calendar has it now; None when it no longer stands as booked;
        `_UNKNOWN` when the calendar could not tell."""
        connectors = self.runtime.connectors
        action = f"{CALENDAR}.list_bookings"
        if not connectors.has_action(action):
            return {"id": reminder.booking_id, "start": reminder.start}
        settings = compiled.settings
        ctx = CallContext(session_id=session_id, flow=compiled.id, contact=contact, timezone=settings.timezone,
                          language=settings.language, now=now, settings=settings, vars={})
        result = await connectors.call(action, {}, ctx, LOOKUP_TIMEOUT_SECONDS)
        if result.outcome == "error":
            log.warning("reminder of %s: the calendar could not list bookings (%s); retrying",
                        redact_phone(session_id), result.detail)
            return _UNKNOWN
        for booking in result.value or [] if result.outcome == "ok" else []:
            if isinstance(booking, dict) and str(booking.get("id")) == reminder.booking_id:
                if _same_time(booking.get("start"), reminder.start):
                    return booking
                break
        log.info("reminder of %s not sent: booking %s was cancelled or moved", redact_phone(session_id),
                 reminder.booking_id)
        return None


_UNKNOWN: Any = object()


def _start(text: str, tz: ZoneInfo) -> dt.datetime | None:
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return when.replace(tzinfo=tz) if when.tzinfo is None else when


def _same_time(a: Any, b: str) -> bool:
    try:
        return dt.datetime.fromisoformat(str(a)) == dt.datetime.fromisoformat(b)
    except ValueError:
        return False


def _next_window(now: dt.datetime, hours: str) -> dt.datetime | None:
    """None when `now` is within the sending hours; else when they next open."""
    start, end = sending_window(hours)
    if start <= now.time() <= end:
        return None
    day = now.date() if now.time() < start else now.date() + dt.timedelta(days=1)
    return dt.datetime.combine(day, start, tzinfo=now.tzinfo)
