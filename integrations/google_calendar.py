"""Google Calendar as the `calendar` connector (same actions as the embedded one).

Availability comes from `freebusy.query`; slot arithmetic is `integrations.slots`.
Bookings are events carrying the contact, name and reason in the description and in
`extendedProperties.private` (so `list_bookings` finds them by phone).

Never a double booking. Google accepts overlapping events, so "check freebusy, then
insert" alone lets two conversations that both saw the slot free both book it. The event
id is therefore derived from (calendar, slot start, generation): ids are unique per
calendar, so of two racing inserts Google accepts exactly one and answers the other 409
`duplicate`. On a 409 we read the event: if it carries our session id it is our own
earlier booking (a retry: `ok`, idempotent); if it is live and someone else's, `conflict`;
if it was cancelled (a deleted event keeps its id for ever), the next generation's id is
the slot's new lock and the race starts again on it. freebusy still guards against
events entered by people, which no id can see.

    calendar = calendar_from_env(os.environ)   # Google when configured, else embedded
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import random
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar
from zoneinfo import ZoneInfo

import httplib2

from orchestrator.errors import ConfigError, ConnectorError
from orchestrator.plugins.base import PluginSettings, env, read_settings
from orchestrator.plugins.connectors import ERASED_TITLE, CallContext, Connector, ConnectorResult, ErasureContext

from .calendar_base import (
    AGENDA_LIMIT,
    NO_SHOW,
    BookArgs,
    CalendarConnector,
    booking_value,
    no_booking,
    no_show_check,
    now_of,
    staff_of,
)
from .slots import Interval, SlotError, SlotRules

log = logging.getLogger("integrations.google_calendar")

SCOPES = ["https://www.googleapis.com/auth/calendar"]
DEFAULT_API_BASE = "https://www.googleapis.com/calendar/v3/"
RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
RATE_LIMIT_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded"})
MAX_GENERATIONS = 50  # re-bookings of one slot after cancellations
# the private extended property holding staff's mark on a booking (`no_show`); Google has no status
# of its own for "the visit was missed", and the event must stay (it took the time)
STATUS_PROPERTY = "orchestrator_status"
T = TypeVar("T")


class GoogleCalendarError(ConnectorError):
    """A Google Calendar call failed after retries; the flow takes its `error` route."""


def event_id(*parts: str) -> str:
    """A deterministic event id in Google's alphabet (base32hex a-v0-9, 5-1024 chars)."""
    digest = hashlib.sha256("|".join(parts).encode()).digest()
    return base64.b32hexencode(digest).decode().rstrip("=").lower()


def _rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _event_times(slot: Interval, tz: ZoneInfo) -> dict[str, dict[str, str]]:
    return {"start": {"dateTime": slot[0].astimezone(tz).isoformat(), "timeZone": tz.key},
            "end": {"dateTime": slot[1].astimezone(tz).isoformat(), "timeZone": tz.key}}


def _private(event: Mapping[str, Any]) -> dict[str, Any]:
    return dict((event.get("extendedProperties") or {}).get("private") or {})


def _status(event: Mapping[str, Any]) -> str:
    """A booking's status as the connector reports it: `cancelled`, `no_show`, else `confirmed`."""
    if event.get("status") == "cancelled":
        return "cancelled"
    return NO_SHOW if _private(event).get(STATUS_PROPERTY) == NO_SHOW else "confirmed"


def _parse_event_time(value: Mapping[str, Any]) -> datetime:
    text = value.get("dateTime") or value.get("date") or ""
    parsed = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class GoogleCalendar(CalendarConnector):
    name = "calendar"

    def __init__(
        self,
        calendar_id: str,
        credentials_file: str | None = None,
        *,
        credentials: Any = None,
        api_base: str | None = None,
        timeout_seconds: float = 8.0,
        retries: int = 3,
        retry_base_seconds: float = 0.5,
        send_updates: str = "none",
        busy_calendar_ids: tuple[str, ...] = (),
        staff_calendars: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__()
        if not calendar_id:
            raise ConfigError("GOOGLE_CALENDAR_ID is empty; set it to the calendar's id (e.g. its email address)")
        self.calendar_id = calendar_id
        # calendars whose events block the business too (the owner's own, a shared room): read for
        # busy times, never booked into
        self.busy_calendar_ids = tuple(c for c in busy_calendar_ids if c and c != calendar_id)
        # settings.staff id -> their calendar (GOOGLE_STAFF_CALENDARS; a flow's staff.<id>.calendar wins)
        self.staff_calendars = dict(staff_calendars or {})
        self._seen: set[str] = set(self.staff_calendars.values())  # staff calendars booked into: erasure covers them
        self._credentials_file = credentials_file
        self._credentials = credentials
        self.api_base = (api_base or DEFAULT_API_BASE).rstrip("/") + "/"
        if not self.api_base.endswith("/calendar/v3/"):
            self.api_base += "calendar/v3/"
        self.timeout_seconds = timeout_seconds
        self.retries = retries
        self.retry_base_seconds = retry_base_seconds
        self.send_updates = send_updates
        self._service: Any = None

    # -- plumbing ----------------------------------------------------------------------------
    def _creds(self) -> Any:
        if self._credentials is None:
            from google.oauth2 import service_account

            if not self._credentials_file:
                raise ConfigError("GOOGLE_APPLICATION_CREDENTIALS is not set; point it at a service-account JSON file")
            self._credentials = service_account.Credentials.from_service_account_file(
                self._credentials_file, scopes=SCOPES
            )
        return self._credentials

    def _http(self) -> Any:
        """A fresh authorised Http per call: httplib2 objects are not thread-safe."""
        import google_auth_httplib2

        return google_auth_httplib2.AuthorizedHttp(self._creds(), http=httplib2.Http(timeout=self.timeout_seconds))

    def _api(self) -> Any:
        if self._service is None:
            from googleapiclient.discovery import build

            self._service = build(
                "calendar", "v3", http=self._http(), static_discovery=True, cache_discovery=False,
                client_options={"api_endpoint": self.api_base},
            )
        return self._service

    def _execute(self, op: str, make: Callable[[Any], Any]) -> Any:
        """Run one request with backoff on 429, 5xx and 403 rate limits; raise GoogleCalendarError."""
        from googleapiclient.errors import HttpError

        for attempt in range(self.retries + 1):
            try:
                return make(self._api()).execute(http=self._http(), num_retries=0)
            except HttpError as exc:
                status = exc.status_code or 0
                reasons = {str(d.get("reason")) for d in (exc.error_details or []) if isinstance(d, dict)}
                retryable = status in RETRYABLE_STATUS or (status == 403 and reasons & RATE_LIMIT_REASONS)
                if not retryable or attempt == self.retries:
                    raise
                delay = self._retry_after(exc.resp) or self.retry_base_seconds * 2**attempt * (0.5 + random.random())
                log.warning("google calendar %s: HTTP %s, retry %d in %.2fs", op, status, attempt + 1, delay)
                time.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _retry_after(resp: Any) -> float | None:
        try:
            return min(float(resp.get("retry-after")), 30.0)
        except (TypeError, ValueError, AttributeError):
            return None

    async def _run(self, op: str, fn: Callable[[], T]) -> T:
        """`fn` in a worker thread; every failure becomes GoogleCalendarError with a log line."""
        from googleapiclient.errors import HttpError

        try:
            return await asyncio.to_thread(fn)
        except GoogleCalendarError as exc:  # raised by our own checks (freebusy errors, re-bookings)
            log.error("%s", exc)
            raise
        except HttpError as exc:
            log.error("google calendar %s failed: HTTP %s %s", op, exc.status_code, exc.reason)
            raise GoogleCalendarError(f"google calendar {op} failed: HTTP {exc.status_code} {exc.reason}") from None
        except TimeoutError as exc:
            log.error("google calendar %s timed out after %.1fs", op, self.timeout_seconds)
            raise GoogleCalendarError(f"google calendar {op} timed out after {self.timeout_seconds:g}s") from exc
        except (OSError, httplib2.HttpLib2Error) as exc:
            log.error("google calendar %s: connection failed: %s", op, type(exc).__name__)
            raise GoogleCalendarError(f"google calendar {op}: cannot reach the API ({type(exc).__name__})") from exc
        except Exception as exc:  # google.auth RefreshError and friends: never leak the key
            if type(exc).__module__.startswith("google"):
                log.error("google calendar %s: auth failed: %s", op, type(exc).__name__)
                detail = f"google calendar {op}: authorisation failed ({type(exc).__name__})"
                raise GoogleCalendarError(detail) from None
            raise

    # -- Google calls (blocking; run through _run) -----------------------------------------
    def _busy_sync(self, window: Interval, calendar: str | None = None) -> list[Interval]:
        """Busy spans of the booking calendar and of every busy calendar, in one freebusy query. A
        calendar that answers with errors (not shared with the service account, unknown) fails
        the query: offering a time that may be taken is worse than saying the calendar is down."""
        ids = (calendar or self.calendar_id, *self.busy_calendar_ids)
        body = {"timeMin": _rfc3339(window[0]), "timeMax": _rfc3339(window[1]), "items": [{"id": c} for c in ids]}
        result = self._execute("freebusy", lambda api: api.freebusy().query(body=body))
        busy: list[Interval] = []
        for calendar_id in ids:
            cal = (result.get("calendars") or {}).get(calendar_id) or {}
            if cal.get("errors"):
                reasons = ", ".join(str(e.get("reason")) for e in cal["errors"])
                raise GoogleCalendarError(f"google calendar freebusy: calendar {calendar_id!r} answered {reasons}"
                                          + (" (share it with the service account)" if calendar_id != ids[0]
                                             else ""))
            busy += [(_parse_event_time({"dateTime": b["start"]}), _parse_event_time({"dateTime": b["end"]}))
                     for b in cal.get("busy", [])]
        return sorted(busy)

    def _get_sync(self, eid: str, calendar: str | None = None) -> dict[str, Any] | None:
        from googleapiclient.errors import HttpError

        try:
            event: dict[str, Any] = self._execute(
                "events.get", lambda api: api.events().get(calendarId=calendar or self.calendar_id, eventId=eid)
            )
        except HttpError as exc:
            if exc.status_code in (404, 410):
                return None
            raise
        return event

    def _book_sync(
        self, slot: Interval, buffer_pad: Interval, body: dict[str, Any], session: str, ignore: Interval | None = None,
        calendar: str | None = None,
    ) -> ConnectorResult:
        """Claim the slot's deterministic id (see the module docstring). `ignore`: a busy span
        that does not count (the event being rescheduled)."""
        from googleapiclient.errors import HttpError

        start_key = _rfc3339(slot[0])
        checked_freebusy = False
        for generation in range(MAX_GENERATIONS):
            cal = calendar or self.calendar_id
            eid = event_id("slot", cal, start_key, str(generation))
            existing = self._get_sync(eid, cal)
            if existing is not None and existing.get("status") == "cancelled":
                continue  # a cancelled booking keeps its id: the next generation is the lock
            if existing is not None:
                return self._claimed(existing, session)
            if not checked_freebusy:  # people's own events (and other durations) are only visible here
                if [b for b in self._busy_sync(buffer_pad, cal) if b != ignore]:
                    return ConnectorResult(outcome="conflict", detail="the slot is busy")
                checked_freebusy = True
            try:
                event = self._insert_sync({**body, "id": eid}, cal)
            except HttpError as exc:
                if (exc.status_code or 0) >= 500:  # the insert may have landed before the error
                    return self._read_back(eid, session, exc, cal)
                if exc.status_code != 409:
                    raise
                raced = self._get_sync(eid, cal)  # 409 duplicate: someone (maybe us, earlier) holds this id
                if raced is None or raced.get("status") == "cancelled":
                    continue
                return self._claimed(raced, session)
            except (TimeoutError, OSError, httplib2.HttpLib2Error) as exc:
                return self._read_back(eid, session, exc, cal)
            return ConnectorResult(outcome="ok", value=self._value(event, cal))
        raise GoogleCalendarError(f"google calendar book: slot {start_key} was re-booked {MAX_GENERATIONS} times")

    def _read_back(self, eid: str, session: str, failure: Exception, calendar: str | None = None) -> ConnectorResult:
        """The insert failed without an answer we can trust (5xx after retries, a timeout, a
        dropped connection): Google may have stored the event anyway. Read the id back: our
        own event means the booking is made (never report a booking that exists as failed);
        otherwise the insert's failure stands."""
        try:
            event = self._get_sync(eid, calendar)
        except Exception:
            event = None
        if event is not None and event.get("status") != "cancelled":
            log.warning("google calendar book: insert failed (%s) but the event exists; read back",
                        type(failure).__name__)
            return self._claimed(event, session, calendar)
        raise failure

    def _insert_sync(self, body: dict[str, Any], calendar: str | None = None) -> dict[str, Any]:
        event: dict[str, Any] = self._execute(
            "events.insert",
            lambda api: api.events().insert(calendarId=calendar or self.calendar_id, body=body,
                                            sendUpdates=self.send_updates),
        )
        return event

    def _claimed(self, event: Mapping[str, Any], session: str, calendar: str | None = None) -> ConnectorResult:
        if _private(event).get("session") == session:
            return ConnectorResult(outcome="ok", value=self._value(event, calendar), detail="already booked")
        return ConnectorResult(outcome="conflict", detail="the slot was just taken")

    def _value(self, event: Mapping[str, Any], calendar: str | None = None) -> dict[str, Any]:
        tz = ZoneInfo(str((event.get("start") or {}).get("timeZone") or "UTC"))
        value = booking_value(event["id"], _parse_event_time(event["start"]), _parse_event_time(event["end"]), tz,
                              calendar or self.calendar_id, event.get("summary", ""))
        staff = _private(event).get("staff")
        return {**value, "staff": staff} if staff else value

    def _event_body(self, args: BookArgs, ctx: CallContext, slot: Interval, tz: ZoneInfo) -> dict[str, Any]:
        phone = args.phone or ctx.contact
        private = {"orchestrator": "1", "session": ctx.session_id, "phone": phone, "flow": ctx.flow}
        if args.name:
            private["name"] = args.name
        if args.reason:
            private["reason"] = args.reason
        lines = [f"Contact: {phone}"] + [f"{k.title()}: {v}" for k, v in (("name", args.name), ("reason", args.reason))
                                          if v]
        return {
            "summary": args.title or "Appointment",
            "description": "\n".join([*lines, f"Booked by the {ctx.flow} flow."]),
            **_event_times(slot, tz),
            "extendedProperties": {"private": private},
        }

    def _calendars(self, ctx: CallContext | None = None) -> list[str]:
        """The business's calendar, then its staff's (configured, the flow's, booked into)."""
        staff = [self.staff_calendar(k, m) for k, m in staff_of(ctx).items()] if ctx is not None else []
        return list(dict.fromkeys([self.calendar_id, *self.staff_calendars.values(), *staff, *sorted(self._seen)]))

    def _owned_sync(self, booking_id: str, contact: str, ctx: CallContext | None = None
                    ) -> tuple[dict[str, Any], str] | None:
        """The contact's live event `booking_id` and the calendar holding it (not a no-show: staff's
        record that the visit was missed, which the contact cannot cancel away)."""
        for calendar in self._calendars(ctx):
            event = self._get_sync(booking_id, calendar)
            if event is None or event.get("status") == "cancelled":
                continue
            if _status(event) == NO_SHOW:
                return None
            phone = _private(event).get("phone")
            if phone and contact and phone != contact:
                return None
            return event, calendar
        return None

    def _delete_sync(self, booking_id: str, calendar: str | None = None) -> None:
        from googleapiclient.errors import HttpError

        try:
            self._execute(
                "events.delete",
                lambda api: api.events().delete(
                    calendarId=calendar or self.calendar_id, eventId=booking_id, sendUpdates=self.send_updates
                ),
            )
        except HttpError as exc:
            if exc.status_code not in (404, 410):  # already gone: the cancel is done
                raise

    # -- storage hooks -----------------------------------------------------------------------
    def staff_calendar(self, staff_id: str, member: Any) -> str:
        calendar = getattr(member, "calendar", None) or self.staff_calendars.get(staff_id)
        if not calendar:
            raise SlotError(f"staff: {staff_id!r} has no Google calendar; set settings.staff.{staff_id}.calendar "
                            "or GOOGLE_STAFF_CALENDARS")
        return str(calendar)

    async def busy_in(self, window: Interval, calendar: str | None = None) -> list[Interval]:
        return await self._run("freebusy", lambda: self._busy_sync(window, calendar))

    async def insert_booking(
        self, args: BookArgs, ctx: CallContext, slot: Interval, rules: SlotRules, calendar: str | None = None
    ) -> ConnectorResult:
        body = self._event_body(args, ctx, slot, rules.tz)
        if calendar and calendar != self.calendar_id:
            self._seen.add(calendar)
            staff = next((k for k, m in staff_of(ctx).items() if self.staff_calendar(k, m) == calendar), None)
            if staff:
                body["extendedProperties"]["private"]["staff"] = staff
        pad = (slot[0] - rules.buffer, slot[1] + rules.buffer)
        result = await self._run("book", lambda: self._book_sync(slot, pad, body, ctx.session_id,
                                                                 calendar=calendar))
        if result.outcome == "ok":
            log.info("google calendar: booked %s at %s", result.value["id"], slot[0].isoformat())
        return result

    async def cancel_booking(self, booking_id: str, ctx: CallContext) -> ConnectorResult:
        def run() -> ConnectorResult:
            owned = self._owned_sync(booking_id, ctx.contact, ctx)
            if owned is None:
                return no_booking()
            event, calendar = owned
            self._delete_sync(booking_id, calendar)
            return ConnectorResult(outcome="ok", value={**self._value(event, calendar), "status": "cancelled"})

        return await self._run("cancel", run)

    async def move_booking(
        self, booking_id: str, ctx: CallContext, slot: Interval, rules: SlotRules
    ) -> ConnectorResult:
        """Book the new slot (guarded like any booking), then delete the old event.

        The booking id changes: ids are tied to the slot they lock."""

        def run() -> ConnectorResult:
            owned = self._owned_sync(booking_id, ctx.contact, ctx)
            if owned is None:
                return no_booking()
            old, calendar = owned
            private = _private(old)
            kept: dict[str, Any] = {k: old[k] for k in ("summary", "description") if k in old}
            body = {
                **kept,
                **_event_times(slot, rules.tz),
                "extendedProperties": {"private": {**private, "session": ctx.session_id}},
            }
            # our own old event must not count as busy when the new slot overlaps it
            pad = (slot[0] - rules.buffer, slot[1] + rules.buffer)
            old_span = (_parse_event_time(old["start"]), _parse_event_time(old["end"]))
            result = self._book_sync(slot, pad, body, ctx.session_id, ignore=old_span, calendar=calendar)
            if result.outcome == "ok" and result.value["id"] != booking_id:
                self._delete_sync(booking_id, calendar)
            return result

        return await self._run("reschedule", run)

    async def visits_in(self, window: Interval, calendar: str | None = None) -> list[Interval]:
        """Each timed event of the booking calendar starting in `window`, one by one (freebusy
        merges back-to-back events into one span, which would undercount a full day)."""
        def run() -> list[Interval]:
            visits: list[Interval] = []
            for e in self._all_events_sync(calendar or self.calendar_id, timeMin=_rfc3339(window[0]),
                                           timeMax=_rfc3339(window[1])):
                if e.get("transparency") == "transparent" or "dateTime" not in (e.get("start") or {}):
                    continue  # free-marked and all-day events are not visits
                start = _parse_event_time(e["start"])
                if window[0] <= start < window[1]:
                    visits.append((start, _parse_event_time(e["end"])))
            return visits

        return await self._run("find_slots", run)

    async def agenda(self, window: Interval, limit: int = AGENDA_LIMIT) -> list[dict[str, Any]]:
        def run() -> list[dict[str, Any]]:
            result = self._execute(
                "events.list",
                lambda api: api.events().list(
                    calendarId=self.calendar_id, timeMin=_rfc3339(window[0]), timeMax=_rfc3339(window[1]),
                    singleEvents=True, orderBy="startTime", maxResults=min(limit, 250),
                ),
            )
            return [e for e in result.get("items", []) if e.get("status") != "cancelled"
                    and "dateTime" in (e.get("start") or {})]  # all-day events are not bookings

        out = []
        for event in await self._run("agenda", run):
            private = _private(event)
            out.append({**self._value(event), "status": _status(event), "name": private.get("name"),
                        "phone": private.get("phone"), "reason": private.get("reason"),
                        "session_id": private.get("session")})
        return out

    async def mark_no_show(self, booking_id: str, now: float | None = None) -> dict[str, Any] | None:
        when = datetime.fromtimestamp(time.time() if now is None else now, UTC)

        def run() -> dict[str, Any] | None:
            for calendar in self._calendars():  # the business's calendar, then its staff's
                event = self._get_sync(booking_id, calendar)
                if event is None:
                    continue
                status = _status(event)
                no_show_check(booking_id, status, _parse_event_time(event["start"]), when)
                if status != NO_SHOW:  # patch merges the private properties: the others stay
                    body = {"extendedProperties": {"private": {STATUS_PROPERTY: NO_SHOW}}}
                    event = self._execute("events.patch", lambda api, calendar=calendar, body=body: api.events().patch(
                        calendarId=calendar, eventId=booking_id, body=body, sendUpdates="none"))
                    log.info("google calendar: booking %s marked a no-show", booking_id)
                return {**self._value(event, calendar), "status": NO_SHOW, "session_id": _private(event).get("session")}
            return None

        return await self._run("mark_no_show", run)

    async def upcoming(self, phone: str, ctx: CallContext) -> list[dict[str, Any]]:
        def run() -> list[dict[str, Any]]:
            found = []
            for calendar in self._calendars(ctx):  # the business's calendar and its staff's
                result = self._execute(
                    "events.list",
                    lambda api, calendar=calendar: api.events().list(
                        calendarId=calendar, privateExtendedProperty=f"phone={phone}",
                        timeMin=_rfc3339(now_of(ctx)), singleEvents=True, orderBy="startTime", maxResults=50,
                    ),
                )
                found += [self._value(e, calendar) for e in result.get("items", []) if _status(e) == "confirmed"]
            return sorted(found, key=lambda b: str(b["start"]))

        return await self._run("list_bookings", run)


    # -- erasure (admin DELETE / GET /api/contacts/{phone}) ----------------------------------
    def _all_events_sync(self, calendar: str, **query: Any) -> list[dict[str, Any]]:
        """Every live (not cancelled) event of `calendar` an events.list `query` finds, all pages."""
        events: list[dict[str, Any]] = []
        page: str | None = None
        while True:
            result = self._execute(
                "events.list",
                lambda api, page=page: api.events().list(
                    calendarId=calendar, singleEvents=True, maxResults=250, pageToken=page, **query),
            )
            events += [e for e in result.get("items", []) if e.get("status") != "cancelled"]
            page = result.get("nextPageToken")
            if not page:
                return events

    def _events_of_sync(self, phone: str) -> list[dict[str, Any]]:
        """Every live event this product created for `phone` in this calendar (all pages)."""
        return self._all_events_sync(self.calendar_id, privateExtendedProperty=f"phone={phone}")

    async def erase_contact(self, phone: str, ctx: ErasureContext) -> int:
        """Pseudonymise the contact's events: the time stays booked; the summary, description,
        attendees and private properties no longer name the person or the phone."""

        def run() -> int:
            changed = 0
            for event in self._events_of_sync(phone):
                body = {
                    "summary": ERASED_TITLE, "description": "The contact's details were erased on request.",
                    "attendees": [],
                    # patch merges the private properties: each one naming the contact is overwritten
                    "extendedProperties": {"private": {"orchestrator": "1", "erased": "1", "phone": "",
                                                       "name": "", "reason": "", "session": ""}},
                }
                eid = event["id"]
                self._execute("events.patch", lambda api, eid=eid, body=body: api.events().patch(
                    calendarId=self.calendar_id, eventId=eid, body=body, sendUpdates="none"))
                changed += 1
            return changed

        return await self._run("erase_contact", run)

    async def export_contact(self, phone: str, ctx: ErasureContext) -> list[dict[str, Any]]:
        events = await self._run("export_contact", lambda: self._events_of_sync(phone))
        return [{**self._value(e), "status": _status(e), "description": e.get("description", "")} for e in events]


class CalendarSettings(PluginSettings):
    application_credentials: str | None = None  # GOOGLE_APPLICATION_CREDENTIALS: a service-account file
    calendar_id: str | None = None  # GOOGLE_CALENDAR_ID
    api_base: str | None = None  # GOOGLE_API_BASE: a fake server in tests
    timeout_seconds: float = 8.0  # GOOGLE_TIMEOUT_SECONDS
    busy_calendar_ids: str | None = None  # GOOGLE_BUSY_CALENDAR_IDS: comma-separated calendars that block times too
    staff_calendars: str | None = None  # GOOGLE_STAFF_CALENDARS: "ana=ana@example.com,luis=..." (settings.staff ids)
    db: Annotated[str | None, env("ORCHESTRATOR_CALENDAR_DB")] = None  # the embedded calendar's SQLite file


class Calendar(Connector):
    """The `calendar` entry point: Google Calendar when GOOGLE_APPLICATION_CREDENTIALS and
    GOOGLE_CALENDAR_ID are set, else the embedded SQLite calendar (always configured)."""

    name = "calendar"
    settings_type = CalendarSettings
    env_prefix = "GOOGLE_"

    @classmethod
    def is_configured(cls, config: CalendarSettings) -> bool:
        return True

    @classmethod
    def from_settings(cls, config: CalendarSettings, **kwargs: Any) -> CalendarConnector:
        creds, calendar_id = config.application_credentials, config.calendar_id
        if creds and calendar_id:
            busy = tuple(c.strip() for c in (config.busy_calendar_ids or "").split(",") if c.strip())
            staff = dict(item.split("=", 1) for item in (config.staff_calendars or "").replace(" ", "").split(",")
                         if "=" in item)
            return GoogleCalendar(calendar_id, creds, api_base=config.api_base,
                                  timeout_seconds=config.timeout_seconds, busy_calendar_ids=busy,
                                  staff_calendars=staff, **kwargs)
        if creds or calendar_id:
            missing = "GOOGLE_CALENDAR_ID" if creds else "GOOGLE_APPLICATION_CREDENTIALS"
            raise ConfigError(f"Google Calendar is half configured: {missing} is not set; set both, or neither "
                              "for the embedded calendar")
        from .embedded_calendar import EmbeddedCalendar

        return EmbeddedCalendar(path=config.db or None)


def calendar_from_env(env: Mapping[str, str], **kwargs: Any) -> Connector:
    """`Calendar` built from an environment mapping."""
    config: CalendarSettings = read_settings(CalendarSettings, Calendar.env_prefix, env)
    return Calendar.from_settings(config, **kwargs)
