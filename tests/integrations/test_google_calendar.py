"""The Google Calendar connector: the real google-api-python-client against a local fake."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conn_helpers import CtxFactory
from fake_google import FakeGoogleCalendar, Fault

from integrations.calendar_base import BookArgs, CancelArgs, FindSlotsArgs, ListArgs, RescheduleArgs
from integrations.embedded_calendar import EmbeddedCalendar
from integrations.google_calendar import GoogleCalendar, GoogleCalendarError, calendar_from_env, event_id
from orchestrator.errors import ConfigError
from orchestrator.plugins.connectors import ERASED_TITLE, ErasureContext

CAL = "clinic@example.com"
SLOT = {"start": "2026-11-26T10:00:00-05:00", "end": "2026-11-26T10:30:00-05:00", "label": "Thu 26 Nov, 10:00 AM"}


@pytest.fixture(scope="module")
def rsa_pair() -> tuple[str, str]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    cert_free_public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    return private, cert_free_public


@pytest.fixture
def fake(rsa_pair: tuple[str, str]) -> Iterator[FakeGoogleCalendar]:
    server = FakeGoogleCalendar(public_key_pem=rsa_pair[1]).start()
    yield server
    server.stop()


@pytest.fixture
def creds_file(tmp_path: Path, fake: FakeGoogleCalendar, rsa_pair: tuple[str, str]) -> str:
    path = tmp_path / "service-account.json"
    path.write_text(json.dumps({
        "type": "service_account", "project_id": "demo", "private_key_id": "k1", "private_key": rsa_pair[0],
        "client_email": "booker@demo.iam.gserviceaccount.com", "client_id": "1", "token_uri": fake.token_uri,
    }))
    return str(path)


@pytest.fixture
def google(fake: FakeGoogleCalendar, creds_file: str) -> GoogleCalendar:
    return GoogleCalendar(CAL, creds_file, api_base=fake.base, timeout_seconds=2.0, retry_base_seconds=0.01)


async def test_freebusy_skips_busy_times_with_a_real_token_grant(
    google: GoogleCalendar, fake: FakeGoogleCalendar, ctx_factory: CtxFactory
) -> None:
    fake.add_event(CAL, "2026-11-26T10:00:00-05:00", "2026-11-26T11:00:00-05:00")
    result = await google.find_slots(FindSlotsArgs(around="2026-11-26T10:00:00-05:00"), ctx_factory())
    assert result.outcome == "ok"
    labels = [s["label"] for s in result.value]
    assert labels == ["Thu 26 Nov, 11:00 AM", "Thu 26 Nov, 11:30 AM", "Thu 26 Nov, 12:00 PM"]
    assert fake.tokens and fake.count("POST", "/freeBusy") == 1


async def test_book_inserts_one_event_with_contact_details(
    google: GoogleCalendar, fake: FakeGoogleCalendar, ctx_factory: CtxFactory
) -> None:
    ctx = ctx_factory()
    result = await google.book(BookArgs(slot=SLOT, title="Cleaning - Ann", name="Ann", reason="cleaning"), ctx)
    assert result.outcome == "ok"
    assert {k: result.value[k] for k in ("start", "end", "label", "calendar")} == {**SLOT, "calendar": CAL}
    [event] = fake.events(CAL)
    assert event["id"] == result.value["id"] == event_id("slot", CAL, "2026-11-26T15:00:00Z", "0")
    assert event["extendedProperties"]["private"] == {
        "orchestrator": "1", "session": ctx.session_id, "phone": ctx.contact, "flow": "dental_booking",
        "name": "Ann", "reason": "cleaning",
    }
    assert "Contact: +15550001111" in event["description"] and event["start"]["timeZone"] == "America/New_York"
    again = await google.book(BookArgs(slot=SLOT), ctx)  # a retried webhook: same booking, no second event
    assert again.outcome == "ok" and again.value["id"] == result.value["id"] and len(fake.events(CAL)) == 1


async def test_a_human_event_in_the_slot_is_a_conflict(
    google: GoogleCalendar, fake: FakeGoogleCalendar, ctx_factory: CtxFactory
) -> None:
    fake.add_event(CAL, "2026-11-26T09:45:00-05:00", "2026-11-26T10:15:00-05:00")
    result = await google.book(BookArgs(slot=SLOT), ctx_factory())
    assert result.outcome == "conflict" and fake.count("POST", "/calendars") == 0


async def test_two_conversations_racing_exactly_one_wins(
    google: GoogleCalendar, fake: FakeGoogleCalendar, ctx_factory: CtxFactory
) -> None:
    fake.insert_barrier = threading.Barrier(2)  # both have seen the slot free before either inserts
    a = ctx_factory(session_id="biz:+15550000001", contact="+15550000001")
    b = ctx_factory(session_id="biz:+15550000002", contact="+15550000002")
    results = await asyncio.gather(google.book(BookArgs(slot=SLOT), a), google.book(BookArgs(slot=SLOT), b))
    assert sorted(r.outcome for r in results) == ["conflict", "ok"]
    assert fake.count("POST", "/calendars") == 2 and len(fake.events(CAL)) == 1


async def test_duplicate_id_409_from_our_own_retry_is_ok(
    google: GoogleCalendar, fake: FakeGoogleCalendar, ctx_factory: CtxFactory
) -> None:
    fake.insert_barrier = threading.Barrier(2)  # the same conversation's duplicate webhook, concurrently
    ctx = ctx_factory()
    first, second = await asyncio.gather(google.book(BookArgs(slot=SLOT), ctx), google.book(BookArgs(slot=SLOT), ctx))
    assert first.outcome == second.outcome == "ok" and first.value["id"] == second.value["id"]
    assert fake.count("POST", "/calendars") == 2 and len(fake.events(CAL)) == 1


async def test_429_then_success(google: GoogleCalendar, fake: FakeGoogleCalendar, ctx_factory: CtxFactory) -> None:
    fake.faults = [Fault("POST", "/freeBusy", 429, "rateLimitExceeded", {"Retry-After": "0"}),
                   Fault("POST", "/freeBusy", 403, "userRateLimitExceeded")]
    result = await google.find_slots(FindSlotsArgs(around="2026-11-26T10:00"), ctx_factory())
    assert result.outcome == "ok" and fake.count("POST", "/freeBusy") == 3


async def test_persistent_500s_become_the_error_outcome(
    google: GoogleCalendar, fake: FakeGoogleCalendar, ctx_factory: CtxFactory, caplog: pytest.LogCaptureFixture
) -> None:
    fake.faults = [Fault("POST", "/freeBusy", 500) for _ in range(10)]
    result = await google.find_slots(FindSlotsArgs(), ctx_factory())
    assert result.outcome == "error" and "HTTP 500" in (result.detail or "")
    assert fake.count("POST", "/freeBusy") == 4  # the first try + 3 retries
    assert "freebusy failed: HTTP 500" in caplog.text and "PRIVATE KEY" not in caplog.text


async def test_forbidden_is_not_retried(
    google: GoogleCalendar, fake: FakeGoogleCalendar, ctx_factory: CtxFactory
) -> None:
    fake.faults = [Fault("POST", "/freeBusy", 403, "forbidden")]
    result = await google.find_slots(FindSlotsArgs(), ctx_factory())
    assert result.outcome == "error" and fake.count("POST", "/freeBusy") == 1


async def test_unknown_calendar_is_an_error(
    google: GoogleCalendar, fake: FakeGoogleCalendar, ctx_factory: CtxFactory
) -> None:
    fake.unknown_calendars.add(CAL)
    result = await google.find_slots(FindSlotsArgs(), ctx_factory())
    assert result.outcome == "error" and "notFound" in (result.detail or "")


async def test_a_hanging_server_hits_the_timeout(
    fake: FakeGoogleCalendar, creds_file: str, ctx_factory: CtxFactory
) -> None:
    google = GoogleCalendar(CAL, creds_file, api_base=fake.base, timeout_seconds=1.0, retry_base_seconds=0.01)
    fake.hang_seconds = 3.0
    started = time.monotonic()
    result = await google.find_slots(FindSlotsArgs(), ctx_factory())
    elapsed = time.monotonic() - started
    assert result.outcome == "error" and "timed out after 1s" in (result.detail or "")
    assert elapsed < 2.5


async def test_cancel_rebook_list_and_reschedule(
    google: GoogleCalendar, fake: FakeGoogleCalendar, ctx_factory: CtxFactory
) -> None:
    ann = ctx_factory(session_id="s-ann", contact="+15550000001")
    bob = ctx_factory(session_id="s-bob", contact="+15550000002")
    booking = (await google.book(BookArgs(slot=SLOT), ann)).value
    assert (await google.list_bookings(ListArgs(), ann)).value[0]["id"] == booking["id"]
    assert (await google.list_bookings(ListArgs(), bob)).outcome == "empty"
    assert (await google.cancel(CancelArgs(booking_id=booking["id"]), bob)).outcome == "empty"  # not his
    assert (await google.cancel(CancelArgs(booking_id=booking), ann)).outcome == "ok"
    assert fake.events(CAL) == []
    # the cancelled event keeps its id for ever: the slot is re-booked under the next generation's id
    rebooked = await google.book(BookArgs(slot=SLOT), bob)
    assert rebooked.outcome == "ok" and rebooked.value["id"] == event_id("slot", CAL, "2026-11-26T15:00:00Z", "1")
    # Bob moves to 11:00; Ann cannot take 10:00 meanwhile... then she can
    moved = await google.reschedule(RescheduleArgs(booking_id=rebooked.value["id"], slot="2026-11-26T10:15"), bob)
    assert moved.outcome == "ok" and moved.value["label"] == "Thu 26 Nov, 10:15 AM"  # overlaps only its old self
    assert [e["id"] for e in fake.events(CAL)] == [moved.value["id"]]
    assert (await google.book(BookArgs(slot="2026-11-26T11:00"), ann)).outcome == "ok"
    clash = await google.reschedule(RescheduleArgs(booking_id=moved.value["id"], slot="2026-11-26T11:00"), bob)
    assert clash.outcome == "conflict" and len(fake.events(CAL)) == 2


def test_calendar_from_env(tmp_path: Path, creds_file: str, fake: FakeGoogleCalendar) -> None:
    chosen = calendar_from_env({"GOOGLE_APPLICATION_CREDENTIALS": creds_file, "GOOGLE_CALENDAR_ID": CAL,
                                "GOOGLE_API_BASE": fake.api_base})
    assert isinstance(chosen, GoogleCalendar) and chosen.api_base == fake.api_base and chosen.name == "calendar"
    embedded = calendar_from_env({"ORCHESTRATOR_CALENDAR_DB": str(tmp_path / "c.sqlite3")})
    assert isinstance(embedded, EmbeddedCalendar) and embedded.path == tmp_path / "c.sqlite3"
    with pytest.raises(ConfigError, match="GOOGLE_CALENDAR_ID is not set"):
        calendar_from_env({"GOOGLE_APPLICATION_CREDENTIALS": creds_file})


async def test_a_5xx_after_the_insert_landed_is_read_back_as_booked(
    google: GoogleCalendar, fake: FakeGoogleCalendar, ctx_factory: CtxFactory, caplog: pytest.LogCaptureFixture
) -> None:
    # Google stored the event but answered 503, and every retry failed too: the booking exists,
    # so the flow must hear `ok`, not `error` (it would tell the caller nothing was booked)
    fake.faults = [Fault("POST", "/calendars", 503, after=True)] + [Fault("POST", "/calendars", 503)] * 3
    ctx = ctx_factory()
    result = await google.book(BookArgs(slot=SLOT), ctx)
    assert result.outcome == "ok" and result.detail == "already booked"
    [event] = fake.events(CAL)
    assert result.value["id"] == event["id"] and fake.count("POST", "/calendars") == 4
    assert "insert failed (HttpError) but the event exists" in caplog.text and ctx.contact not in caplog.text


async def test_a_5xx_insert_that_did_not_land_stays_an_error(
    google: GoogleCalendar, fake: FakeGoogleCalendar, ctx_factory: CtxFactory, caplog: pytest.LogCaptureFixture
) -> None:
    fake.faults = [Fault("POST", "/calendars", 503)] * 4
    ctx = ctx_factory()
    result = await google.book(BookArgs(slot=SLOT), ctx)
    assert result.outcome == "error" and "HTTP 503" in (result.detail or "") and fake.events(CAL) == []
    assert "book failed: HTTP 503" in caplog.text and ctx.contact not in caplog.text
    assert (await google.book(BookArgs(slot=SLOT), ctx)).outcome == "ok"  # the flow's retry books it


async def test_unknown_calendar_error_is_logged(
    google: GoogleCalendar, fake: FakeGoogleCalendar, ctx_factory: CtxFactory, caplog: pytest.LogCaptureFixture
) -> None:
    fake.unknown_calendars.add(CAL)
    result = await google.book(BookArgs(slot=SLOT), ctx_factory())
    assert result.outcome == "error" and f"calendar {CAL!r} answered notFound" in caplog.text


ANN = "+15550001111"
ERASE = ErasureContext(now=0.0)


async def test_google_calendar_pseudonymises_the_event_through_the_real_client(
    google: GoogleCalendar, fake: FakeGoogleCalendar, ctx_factory: CtxFactory,
) -> None:
    await google.book(BookArgs(slot=SLOT, title="Cleaning - Ann Lee", name="Ann Lee", reason="cleaning"), ctx_factory())
    fake.add_event(CAL, "2026-11-26T14:00:00-05:00", "2026-11-26T15:00:00-05:00", summary="Staff meeting")
    assert [e["title"] for e in await google.export_contact(ANN, ERASE)] == ["Cleaning - Ann Lee"]

    assert await google.erase_contact(ANN, ERASE) == 1
    events = fake.events(CAL)
    [erased] = [e for e in events if e["summary"] != "Staff meeting"]
    assert erased["status"] != "cancelled" and erased["start"]["dateTime"].startswith("2026-11-26T10:00")
    assert erased["summary"] == ERASED_TITLE and not any(t in json.dumps(erased) for t in ("Ann", ANN, ANN[1:]))
    assert fake.count("PATCH", "/calendars") == 1
    assert await google.export_contact(ANN, ERASE) == [] and await google.erase_contact(ANN, ERASE) == 0


async def test_google_calendar_failure_during_erasure_raises(
    google: GoogleCalendar, fake: FakeGoogleCalendar, ctx_factory: CtxFactory,
) -> None:
    await google.book(BookArgs(slot=SLOT, title="Cleaning - Ann Lee"), ctx_factory())
    fake.faults = [Fault("PATCH", "/calendars", 403, "forbidden")]
    with pytest.raises(GoogleCalendarError, match="erase_contact"):
        await google.erase_contact(ANN, ERASE)


async def test_the_owners_personal_calendar_blocks_times_and_is_never_booked_into(
    fake: FakeGoogleCalendar, creds_file: str, ctx_factory: CtxFactory,
) -> None:
    """GOOGLE_BUSY_CALENDAR_IDS: a dentist's own calendar (school run 10:00-11:00) is checked with
    the clinic's in one freebusy query; a slot busy there is neither offered nor booked."""
    own = "dr.ruiz@example.com"
    google = calendar_from_env({"GOOGLE_APPLICATION_CREDENTIALS": creds_file, "GOOGLE_CALENDAR_ID": CAL,
                                "GOOGLE_API_BASE": fake.base, "GOOGLE_BUSY_CALENDAR_IDS": f" {own} ,"},
                               retry_base_seconds=0.01)
    assert isinstance(google, GoogleCalendar) and google.busy_calendar_ids == (own,)
    fake.add_event(own, "2026-11-26T10:00:00-05:00", "2026-11-26T11:00:00-05:00", summary="School run")
    result = await google.find_slots(FindSlotsArgs(around="2026-11-26T10:00:00-05:00"), ctx_factory())
    labels = [s["label"] for s in result.value]
    assert labels == ["Thu 26 Nov, 11:00 AM", "Thu 26 Nov, 11:30 AM", "Thu 26 Nov, 12:00 PM"]
    assert fake.count("POST", "/freeBusy") == 1  # one query for both calendars
    taken = await google.book(BookArgs(slot=SLOT), ctx_factory())
    assert taken.outcome == "conflict"  # SLOT is 10:00: busy in the personal calendar
    assert fake.events(own) and all(e["summary"] == "School run" for e in fake.events(own))
    assert fake.events(CAL) == []
    fake.unknown_calendars.add(own)  # not shared with the service account: say so, offer nothing
    failed = await google.find_slots(FindSlotsArgs(around="2026-11-27T10:00:00-05:00"), ctx_factory())
    assert failed.outcome == "error" and own in (failed.detail or "") and "share it" in (failed.detail or "")
