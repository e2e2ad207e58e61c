"""What every calendar backend shares: the action argument types, the action table, the
checks of the arguments and the shape of a booking.

A backend subclasses `CalendarConnector` and implements its storage hooks; the flow sees
the same `calendar.find_slots / book / cancel / reschedule / list_bookings` whichever
backend the server picked (embedded SQLite or Google Calendar).
"""

from __future__ import annotations

import ast
import json
from collections.abc import Awaitable, Mapping
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import msgspec

from orchestrator.errors import ConnectorError, NoShowRefused
from orchestrator.flow.schema import BusinessHours, Settings, parse_duration
from orchestrator.plugins.connectors import Action, CallContext, Connector, ConnectorResult

from .slots import (
    Interval,
    SlotError,
    SlotRules,
    beyond_horizon,
    choose,
    closed_on,
    coerce_slot,
    earliest_start,
    find_free,
    full_days,
    is_bookable,
    label,
    parse_around,
    search_window,
    slot_value,
    wall_time,
)


class FindSlotsArgs(msgspec.Struct, kw_only=True):
    around: Any = None  # ISO datetime or a datetime answer; None / asap / any time = the earliest
    duration: str | None = None  # default: settings.slot_length
    count: int = 3
    staff: str | None = None  # one of settings.staff (its own calendar); empty / "any": whoever is free
    resource: str | None = None  # the same as staff (a room, a chair, a technician)


class BookArgs(msgspec.Struct, kw_only=True):
    slot: Any  # a slot mapping from find_slots, or an ISO start
    title: str = ""
    duration: str | None = None
    name: str | None = None
    reason: str | None = None
    phone: str | None = None  # default: the conversation's contact
    staff: str | None = None  # default: the slot's own (`find_slots` with settings.staff names who)
    resource: str | None = None  # the same as staff


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


ANY_STAFF = ("", "any", "anyone", "any staff")


class Staff(msgspec.Struct, frozen=True):
    """A person (or room) with a calendar of their own: `id`, the name the contact sees, and
    the backend's calendar for them (`BookableCalendar.staff_calendar`)."""

    id: str
    name: str
    calendar: str
    hours: BusinessHours | None = None  # their own week; None: the business's hours
    days_off: tuple[str, ...] = ()

    def rules(self, business: SlotRules) -> SlotRules:
        return business.for_member(self.hours, self.days_off, f"settings.staff.{self.id}")


def staff_of(ctx: CallContext) -> dict[str, Any]:
    """settings.staff: id -> its StaffMember (name, calendar); empty when the flow has none."""
    return dict(settings_of(ctx).staff)


def now_of(ctx: CallContext) -> datetime:
    return datetime.fromtimestamp(ctx.now, UTC)


def bad_args(exc: Exception) -> ConnectorResult:
    return ConnectorResult(outcome="error", detail=str(exc))


AGENDA_LIMIT = 200  # bookings one agenda call lists at most


def _name(member: Any, staff_id: str) -> str:
    """A settings.staff entry's name, else its id titled ("front_desk" -> "Front Desk")."""
    return str(getattr(member, "name", None) or staff_id.replace("_", " ").title())


def staffed(value: dict[str, Any], person: Staff | None) -> dict[str, Any]:
    """A slot or booking with who it is with: `staff`, `staff_name`, and the label naming them."""
    if person is None:
        return value
    return {**value, "staff": person.id, "staff_name": person.name, "label": f"{value['label']} · {person.name}"}


def slot_staff(raw: Any) -> str | None:
    """The `staff` a slot from find_slots names (a mapping, or its JSON rendering)."""
    if isinstance(raw, str) and raw.strip().startswith("{"):
        try:
            raw = json.loads(raw)
        except ValueError:
            try:
                raw = ast.literal_eval(raw.strip())
            except (ValueError, SyntaxError):
                return None
    return str(raw["staff"]) if isinstance(raw, Mapping) and raw.get("staff") else None


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
    ctx: CallContext, raw: Any, duration: str | None = None, person: Staff | None = None
) -> tuple[SlotRules, Interval] | ConnectorResult:
    """The rules (`person`'s own hours and days off, when given) and the slot `raw` names, or the
    outcome refusing it (`error` when it cannot be read, `conflict` when it is outside the
    opening hours, in the past or beyond `max_ahead`)."""
    try:
        rules = rules_for(ctx, duration)
        if person is not None:
            rules = person.rules(rules)
        slot = coerce_slot(raw, rules.tz, rules.duration)
    except (SlotError, ValueError) as exc:
        return bad_args(exc)
    why_not = is_bookable(rules, slot, now_of(ctx))
    if why_not:
        return ConnectorResult(outcome="conflict", detail=f"{person.name}: {why_not}" if person else why_not)
    return rules, slot


async def errors_as_outcome(call: Awaitable[ConnectorResult]) -> ConnectorResult:
    """A storage hook's ConnectorError (logged where it happened) as the `error` outcome."""
    try:
        return await call
    except ConnectorError as exc:
        return ConnectorResult(outcome="error", detail=str(exc))


def _whole_days(rules: SlotRules, window: Interval) -> Interval:
    """`window` stretched to the local midnights around it: a day's visits are counted whole."""
    first = window[0].astimezone(rules.tz).date()
    last = window[1].astimezone(rules.tz).date() + timedelta(days=1)
    return wall_time(first, time(0, 0), rules.tz), wall_time(last, time(0, 0), rules.tz)


NO_SHOW = "no_show"  # a booking's status once staff marked that the contact did not come


def no_show_check(booking_id: str, status: str, start: datetime, now: datetime) -> None:
    """Raise NoShowRefused unless a booking with this status and start may be marked a no-show
    at `now` (a booking marked already may: marking again answers the same)."""
    if status == "cancelled":
        raise NoShowRefused(f"booking {booking_id} was cancelled: only a booking that was kept on the calendar "
                            "can be a no-show")
    if status not in ("confirmed", NO_SHOW):
        raise NoShowRefused(f"booking {booking_id} is {status}, not confirmed: it cannot be a no-show")
    if start > now:
        raise NoShowRefused(f"booking {booking_id} has not started yet (it starts {start.isoformat()}): mark a "
                            "no-show once its start has passed")


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
        owner's console: booking values (`booking_value`) with `status` (`confirmed` or
        `no_show`; cancelled ones are left out), `name`, `phone`, `reason` and `session_id` where
        this product made them (events made elsewhere: their title only)."""
        raise NotImplementedError

    async def busy_in(self, window: Interval, calendar: str | None = None) -> list[Interval]:
        """The busy spans overlapping `window` (UTC) of `calendar` (None: the business's own)."""
        raise NotImplementedError

    async def insert_booking(
        self, args: BookArgs, ctx: CallContext, slot: Interval, rules: SlotRules, calendar: str | None = None
    ) -> ConnectorResult:
        """Book a bookable `slot` in `calendar` (None: the business's own): `ok` (also when this
        conversation booked it already) or `conflict`."""
        raise NotImplementedError

    async def visits_in(self, window: Interval, calendar: str | None = None) -> list[Interval]:
        """Each visit (one interval per event, never merged) starting within `window` (UTC) in
        `calendar`, for `max_per_day`. A backend whose busy times are its bookings one by one
        need not override it."""
        return [v for v in await self.busy_in(window, calendar) if window[0] <= v[0] < window[1]]

    def staff_calendar(self, staff_id: str, member: Any) -> str:
        """The calendar of one of settings.staff in this backend."""
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

    async def mark_no_show(self, booking_id: str, now: float | None = None) -> dict[str, Any] | None:
        """Staff's mark that the contact did not come (any booking of the calendar, not one
        contact's): the booking value (`booking_value`, with `status: "no_show"`, and `session_id`
        where this product made it), or None when there is no such booking. Only a confirmed
        booking whose start is past at `now` (epoch seconds; None: the wall clock) can be marked:
        NoShowRefused otherwise (`no_show_check`). Marking again answers the same. A no-show
        still took its time (it stays busy); it is no longer one of the contact's bookings to
        cancel, move or remind of."""
        raise NotImplementedError

    # -- actions -----------------------------------------------------------------------------
    def chosen_staff(self, ctx: CallContext, wanted: str | None) -> list[Staff] | ConnectorResult:
        """Whose calendars a call looks at: none (the business's own calendar) when the flow
        declares no staff, else the one named, or all of them in their declared order."""
        declared = staff_of(ctx)
        key = str(wanted or "").strip()
        if not declared:
            if key.lower() in ANY_STAFF:
                return []
            return bad_args(SlotError(f"staff: {key!r} asked for, but the flow declares no settings.staff"))
        ids = list(declared) if key.lower() in ANY_STAFF else [k for k in declared if k.lower() == key.lower()
                                                                or _name(declared[k], k).lower() == key.lower()]
        if not ids:
            return bad_args(SlotError(f"staff: {key!r} is not one of settings.staff ({', '.join(declared)})"))
        try:
            return [Staff(id=i, name=_name(declared[i], i), calendar=self.staff_calendar(i, declared[i]),
                          hours=declared[i].hours, days_off=tuple(declared[i].days_off)) for i in ids]
        except SlotError as exc:
            return bad_args(exc)

    async def find_slots(self, args: FindSlotsArgs, ctx: CallContext) -> ConnectorResult:
        try:
            rules = rules_for(ctx, args.duration)
            around = parse_around(args.around, rules.tz)
        except (SlotError, ValueError) as exc:
            return bad_args(exc)
        people = self.chosen_staff(ctx, args.staff or args.resource)
        if isinstance(people, ConnectorResult):
            return people
        try:
            own_rules = [person.rules(rules) for person in people]
        except SlotError as exc:
            return bad_args(exc)
        now = now_of(ctx)
        window = search_window(rules, now, around)
        pad = rules.buffer + rules.duration
        padded = (window[0] - pad, window[1] + pad)
        slots: list[tuple[Interval, Staff | None]] = []
        try:
            if not people:
                slots = [(s, None) for s in await self._free(rules, None, padded, now, around, args.count)]
            else:  # each person's best times, then the best of those; a time two have goes to the first
                who: dict[datetime, tuple[Interval, Staff]] = {}
                for person, own in zip(people, own_rules, strict=True):
                    for slot in await self._free(own, person.calendar, padded, now, around, args.count):
                        who.setdefault(slot[0], (slot, person))
                best = choose(rules, [slot for slot, _ in who.values()], earliest_start(rules, now), around,
                              args.count)
                slots = [(slot, who[slot[0]][1]) for slot in best]
        except ConnectorError as exc:
            return ConnectorResult(outcome="error", detail=str(exc))
        asked_for = (people[0].name, own_rules[0]) if len(people) == 1 else None
        notices = self._notices(rules, asked_for, now, around)
        if not slots:
            return ConnectorResult(outcome="empty", value=[], detail=f"no free slot within {rules.horizon.days} days",
                                   **notices)
        return ConnectorResult(outcome="ok", value=[staffed(slot_value(s, rules.tz), p) for s, p in slots],
                               **notices)

    async def _free(self, rules: SlotRules, calendar: str | None, window: Interval, now: datetime,
                    around: datetime | None, count: int) -> list[Interval]:
        """One calendar's best free slots: its busy times, and none on a day it is full."""
        busy = await self.busy_in(window, calendar)
        full = full_days(rules, await self.visits_in(_whole_days(rules, window), calendar)) \
            if rules.max_per_day is not None else frozenset()
        return find_free(rules, busy, now, around, count, full)

    @staticmethod
    def _notices(rules: SlotRules, asked_for: tuple[str, SlotRules] | None, now: datetime,
                 around: datetime | None) -> dict[str, Any]:
        """What the contact must hear besides the slots: the day they asked for is closed (for
        the business, or for the one person they asked for: their name and rules), or lies past
        `max_ahead`."""
        last = beyond_horizon(rules, now, around)
        if last is not None:
            return {"too_far": last.isoformat()}
        closed_day = closed_on(rules, now, around)
        if closed_day is not None:
            return {"closed": closed_day.isoformat()}
        if asked_for is not None:
            off = closed_on(asked_for[1], now, around)
            if off is not None:
                return {"closed": off.isoformat(), "closed_for": asked_for[0]}
        return {}

    async def book(self, args: BookArgs, ctx: CallContext) -> ConnectorResult:
        people = self.chosen_staff(ctx, args.staff or args.resource or slot_staff(args.slot))
        if isinstance(people, ConnectorResult):
            return people
        if people and len(people) > 1:  # "any" at booking time: the slot names nobody
            return bad_args(SlotError("staff: book a slot from find_slots (it names who), or pass staff:"))
        person = people[0] if people else None
        checked = bookable_slot(ctx, args.slot, args.duration, person)
        if isinstance(checked, ConnectorResult):
            return checked
        rules, slot = checked
        full = await errors_as_outcome(self._day_full(rules, slot, ctx, person.calendar if person else None))
        if full.outcome != "ok":
            return full
        result = await errors_as_outcome(self.insert_booking(args, ctx, slot, rules,
                                                             person.calendar if person else None))
        if person is not None and result.outcome == "ok" and isinstance(result.value, dict):
            result = msgspec.structs.replace(result, value=staffed(result.value, person))
        return result

    async def _day_full(self, rules: SlotRules, slot: Interval, ctx: CallContext,
                        calendar: str | None) -> ConnectorResult:
        """`conflict` when the slot's day already holds `max_per_day` visits in its calendar (this
        conversation's own booking, booked again, does not count against it)."""
        if rules.max_per_day is None:
            return ConnectorResult(outcome="ok")
        visits = await self.visits_in(_whole_days(rules, slot), calendar)
        day = slot[0].astimezone(rules.tz).date()
        if day in full_days(rules, [v for v in visits if v != slot]):
            return ConnectorResult(outcome="conflict",
                                   detail=f"{day.isoformat()} is fully booked ({rules.max_per_day} visits a day)")
        return ConnectorResult(outcome="ok")

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
        who = slot_staff(args.booking_id) or slot_staff(args.slot)  # the booking stays with its person
        people = self.chosen_staff(ctx, who) if who and staff_of(ctx) else []
        person = people[0] if isinstance(people, list) and len(people) == 1 else None
        checked = bookable_slot(ctx, args.slot, None, person)
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
