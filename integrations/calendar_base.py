"""What every calendar backend shares: the action argument types, the action table, the
checks of the arguments and the shape of a booking.

A backend subclasses `CalendarConnector` and implements five storage hooks; the flow sees
the same `calendar.find_slots / book / cancel / reschedule / list_bookings` whichever
backend the server picked (embedded SQLite or Google Calendar).
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import msgspec

from orchestrator.errors import ConnectorError
from orchestrator.flow.schema import Settings, parse_duration
from orchestrator.plugins.connectors import Action, CallContext, Connector, ConnectorResult

from .slots import (
    Interval,
    SlotError,
    SlotRules,
    closed_on,
    coerce_slot,
    find_free,
    is_bookable,
    label,
    parse_around,
    search_window,
    slot_value,
)


class FindSlotsArgs(msgspec.Struct, kw_only=True):
    around: Any = None  # ISO datetime or a datetime answer; None / asap / any time = the earliest
    duration: str | None = None  # default: settings.slot_length
    count: int = 3


class BookArgs(msgspec.Struct, kw_only=True):
    slot: Any  # a slot mapping from find_slots, or an ISO start
    title: str = ""
    duration: str | None = None
    name: str | None = None
    reason: str | None = None
    phone: str | None = None  # default: the conversation's contact


class CancelArgs(msgspec.Struct, kw_only=True):
    booking_id: Any  # the id, or the booking mapping itself


class RescheduleArgs(msgspec.Struct, kw_only=True):
    booking_id: Any
    slot: Any


class ListArgs(msgspec.Struct, kw_only=True):
    phone: str | None = None  # default: the conversation's contact


def booking_id_of(value: Any) -> str:
    if isinstance(value, Mapping):
        value = value.get("id")
    text = str(value or "").strip()
    if not text:
        raise SlotError("booking_id: empty; pass the id saved from calendar.book (e.g. `{{ booking.id }}`)")
    return text


def settings_of(ctx: CallContext) -> Settings:
    return ctx.settings if isinstance(ctx.settings, Settings) else Settings()


def rules_for(ctx: CallContext, duration: str | None = None) -> SlotRules:
    settings = settings_of(ctx)
    seconds = parse_duration(duration) if duration else None
    return SlotRules.from_settings(settings, ctx.timezone or settings.timezone, seconds)


def now_of(ctx: CallContext) -> datetime:
    return datetime.fromtimestamp(ctx.now, UTC)


def bad_args(exc: Exception) -> ConnectorResult:
    return ConnectorResult(outcome="error", detail=str(exc))


AGENDA_LIMIT = 200  # bookings one agenda call lists at most


def booking_value(
    booking_id: str, start: datetime, end: datetime, tz: ZoneInfo, calendar: str, title: str
) -> dict[str, Any]:
    """The booking as the flow sees it (`save: booking`), the same shape for every backend."""
    return {
        "id": booking_id,
        "start": start.astimezone(tz).isoformat(),
        "end": end.astimezone(tz).isoformat(),
        "label": label(start, tz),
        "calendar": calendar,
        "title": title,
    }


def bookable_slot(
    ctx: CallContext, raw: Any, duration: str | None = None
) -> tuple[SlotRules, Interval] | ConnectorResult:
    """The rules and the slot `raw` names, or the outcome refusing it (`error` when it cannot be
    read, `conflict` when it is outside the opening hours, in the past or beyond the horizon)."""
    try:
        rules = rules_for(ctx, duration)
        slot = coerce_slot(raw, rules.tz, rules.duration)
    except (SlotError, ValueError) as exc:
        return bad_args(exc)
    why_not = is_bookable(rules, slot, now_of(ctx))
    if why_not:
        return ConnectorResult(outcome="conflict", detail=why_not)
    return rules, slot


async def errors_as_outcome(call: Awaitable[ConnectorResult]) -> ConnectorResult:
    """A storage hook's ConnectorError (logged where it happened) as the `error` outcome."""
    try:
        return await call
    except ConnectorError as exc:
        return ConnectorResult(outcome="error", detail=str(exc))


def no_booking() -> ConnectorResult:
    return ConnectorResult(outcome="empty", detail="no such booking for this contact")


class CalendarConnector(Connector):
    """Base of calendar backends: `name = "calendar"`, the action table, and the actions'
    argument checks and outcomes. A backend implements the storage hooks below; a hook
    raising ConnectorError (after its own log line) becomes the `error` outcome."""

    name = "calendar"

    def __init__(self) -> None:
        self.actions: Mapping[str, Action] = {
            "find_slots": Action(FindSlotsArgs, self.find_slots, "free slots around a wanted time"),
            "book": Action(BookArgs, self.book, "book a slot (atomic, idempotent per conversation)"),
            "cancel": Action(CancelArgs, self.cancel, "cancel a booking of this contact"),
            "reschedule": Action(RescheduleArgs, self.reschedule, "move a booking to another slot"),
            "list_bookings": Action(ListArgs, self.list_bookings, "upcoming bookings of the contact"),
        }

    # -- storage hooks (one backend each) ---------------------------------------------------
    async def agenda(self, window: Interval, limit: int = AGENDA_LIMIT) -> list[dict[str, Any]]:
        """Every booking starting within `window` (UTC), calendar-wide, soonest first, for the
        owner's console: booking values (`booking_value`) with `name`, `phone`, `reason` and
        `session_id` where this product made them (events made elsewhere: their title only)."""
        raise NotImplementedError

    async def busy_in(self, window: Interval) -> list[Interval]:
        """The busy spans overlapping `window` (UTC)."""
        raise NotImplementedError

    async def insert_booking(
        self, args: BookArgs, ctx: CallContext, slot: Interval, rules: SlotRules
    ) -> ConnectorResult:
        """Book a bookable `slot`: `ok` (also when this conversation booked it already) or `conflict`."""
        raise NotImplementedError

    async def cancel_booking(self, booking_id: str, ctx: CallContext) -> ConnectorResult:
        """Cancel the contact's booking: `ok` with the booking, or no_booking()."""
        raise NotImplementedError

    async def move_booking(
        self, booking_id: str, ctx: CallContext, slot: Interval, rules: SlotRules
    ) -> ConnectorResult:
        """Move the contact's booking to a bookable `slot`: `ok`, `conflict` or no_booking()."""
        raise NotImplementedError

    async def upcoming(self, phone: str, ctx: CallContext) -> list[dict[str, Any]]:
        """The contact's bookings not yet over, earliest first, as booking values."""
        raise NotImplementedError

    # -- actions -----------------------------------------------------------------------------
    async def find_slots(self, args: FindSlotsArgs, ctx: CallContext) -> ConnectorResult:
        try:
            rules = rules_for(ctx, args.duration)
            around = parse_around(args.around, rules.tz)
        except (SlotError, ValueError) as exc:
            return bad_args(exc)
        now = now_of(ctx)
        window = search_window(rules, now, around)
        pad = rules.buffer + rules.duration
        try:
            busy = await self.busy_in((window[0] - pad, window[1] + pad))
        except ConnectorError as exc:
            return ConnectorResult(outcome="error", detail=str(exc))
        slots = find_free(rules, busy, now, around, args.count)
        closed_day = closed_on(rules, now, around)
        closed = closed_day.isoformat() if closed_day is not None else None
        if not slots:
            return ConnectorResult(outcome="empty", value=[], closed=closed,
                                   detail=f"no free slot within {rules.horizon.days} days")
        return ConnectorResult(outcome="ok", value=[slot_value(s, rules.tz) for s in slots], closed=closed)

    async def book(self, args: BookArgs, ctx: CallContext) -> ConnectorResult:
        checked = bookable_slot(ctx, args.slot, args.duration)
        if isinstance(checked, ConnectorResult):
            return checked
        return await errors_as_outcome(self.insert_booking(args, ctx, checked[1], checked[0]))

    async def cancel(self, args: CancelArgs, ctx: CallContext) -> ConnectorResult:
        try:
            booking_id = booking_id_of(args.booking_id)
        except SlotError as exc:
            return bad_args(exc)
        return await errors_as_outcome(self.cancel_booking(booking_id, ctx))

    async def reschedule(self, args: RescheduleArgs, ctx: CallContext) -> ConnectorResult:
        try:
            booking_id = booking_id_of(args.booking_id)
        except SlotError as exc:
            return bad_args(exc)
        checked = bookable_slot(ctx, args.slot)
        if isinstance(checked, ConnectorResult):
            return checked
        return await errors_as_outcome(self.move_booking(booking_id, ctx, checked[1], checked[0]))

    async def list_bookings(self, args: ListArgs, ctx: CallContext) -> ConnectorResult:
        try:
            values = await self.upcoming(args.phone or ctx.contact, ctx)
        except ConnectorError as exc:
            return ConnectorResult(outcome="error", detail=str(exc))
        if not values:
            return ConnectorResult(outcome="empty", detail="no upcoming booking")
        return ConnectorResult(outcome="ok", value=values)
