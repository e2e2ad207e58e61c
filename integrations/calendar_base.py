"""What every calendar backend shares: the action argument types and the action table.

A backend subclasses `CalendarConnector` and implements five coroutines; the flow sees
the same `calendar.find_slots / book / cancel / reschedule / list_bookings` whichever
backend the server picked (embedded SQLite or Google Calendar).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from orchestrator.connectors import Action, CallContext, ConnectorResult
from orchestrator.schema import Settings, parse_duration

from .slots import SlotError, SlotRules


class FindSlotsArgs(msgspec.Struct, kw_only=True):
    around: str | None = None  # ISO datetime; None = the earliest free slots
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


def duration_of(rules: SlotRules) -> timedelta:
    return rules.duration


def bad_args(exc: Exception) -> ConnectorResult:
    return ConnectorResult(outcome="error", detail=str(exc))


class CalendarConnector:
    """Base of calendar backends: `name = "calendar"` and the action table."""

    name = "calendar"

    def __init__(self) -> None:
        self.actions: Mapping[str, Action] = {
            "find_slots": Action(FindSlotsArgs, self.find_slots, "free slots around a wanted time"),
            "book": Action(BookArgs, self.book, "book a slot (atomic, idempotent per conversation)"),
            "cancel": Action(CancelArgs, self.cancel, "cancel a booking of this contact"),
            "reschedule": Action(RescheduleArgs, self.reschedule, "move a booking to another slot"),
            "list_bookings": Action(ListArgs, self.list_bookings, "upcoming bookings of the contact"),
        }

    async def find_slots(self, args: FindSlotsArgs, ctx: CallContext) -> ConnectorResult:
        raise NotImplementedError

    async def book(self, args: BookArgs, ctx: CallContext) -> ConnectorResult:
        raise NotImplementedError

    async def cancel(self, args: CancelArgs, ctx: CallContext) -> ConnectorResult:
        raise NotImplementedError

    async def reschedule(self, args: RescheduleArgs, ctx: CallContext) -> ConnectorResult:
        raise NotImplementedError

    async def list_bookings(self, args: ListArgs, ctx: CallContext) -> ConnectorResult:
        raise NotImplementedError
