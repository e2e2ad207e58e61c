"""Staff's no-show mark through the admin API (`POST /api/bookings/{id}/no-show`), counted in the
flows' analytics: on the memory store and on real Redis, with the embedded calendar."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from conftest import AUTH, BIZ, BOOK, Env
from flowkit import FIXED_NOW

from integrations.calendar_base import CancelArgs
from orchestrator.plugins.channels import Address
from orchestrator.plugins.connectors import CallContext
from orchestrator.records.audit import AuditLog

ANN, BOB = "+15555550123", "+15555550124"
TEN = datetime.fromisoformat("2026-11-26T10:00:00-05:00").timestamp()  # BOOK's slot: Thu 26 Nov, 10:00 AM


async def _booking(env: Env, contact: str) -> dict[str, Any]:
    calendar = env.runtime.connectors.get("calendar")
    day = datetime.fromtimestamp(FIXED_NOW, UTC)
    found = [b for b in await calendar.agenda((day, day + timedelta(days=14)))  # type: ignore[attr-defined]
             if b["phone"] == contact]
    assert len(found) == 1, found
    return found[0]


async def test_a_booking_is_a_no_show_only_once_started_and_marking_again_answers_the_same(
    client: Any, env: Env
) -> None:
    await env.converse(ANN, BOOK)
    booking = await _booking(env, ANN)
    url = f"/api/bookings/{booking['id']}/no-show"
    early = await client.post(url, headers=AUTH)
    assert early.status_code == 409 and "has not started yet" in early.json()["detail"]

    env.clock.now = TEN + 20 * 60
    first = await client.post(url, headers=AUTH)
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["booking"]["status"] == "no_show" and body["booking"]["id"] == booking["id"]
    assert body["booking"]["session_id"] == f"{BIZ}:{ANN}"
    [conversation] = (await client.get("/api/conversations", headers=AUTH)).json()
    assert body["conversations"] == [conversation["id"]] and conversation["no_shows"] == [booking["id"]]
    again = await client.post(url, headers=AUTH)
    assert again.status_code == 200 and again.json() == body

    report = (await client.get("/api/flows/dental_booking/analytics", headers=AUTH)).json()
    assert report["outcomes"] == {"booked": 1} and report["no_shows"] == 1
    assert report["no_shows_by_outcome"] == {"booked": 1}
    entries = await AuditLog(env.runtime.store, env.runtime.settings.retention_seconds).entries(limit=10)
    marks = [e for e in entries if e.action == "POST /api/bookings/{booking_id:str}/no-show"]
    assert [(e.target, e.status) for e in marks] == [(f"booking:{booking['id']}", 200)] * 2 + [
        (f"booking:{booking['id']}", 409)]


async def test_unknown_malformed_and_cancelled_bookings(client: Any, env: Env) -> None:
    assert (await client.post("/api/bookings/0123abcd/no-show", headers=AUTH)).status_code == 404
    assert (await client.post("/api/bookings/%20x%3B/no-show", headers=AUTH)).status_code == 400
    assert (await client.post("/api/bookings/0123abcd/no-show")).status_code == 401
    await env.converse(BOB, BOOK)
    booking = await _booking(env, BOB)
    ctx = CallContext(session_id=f"{BIZ}:{BOB}", flow="dental_booking", contact=BOB, timezone="America/New_York",
                      language="en-US", now=env.clock.now)
    calendar = env.runtime.connectors.get("calendar")
    assert (await calendar.cancel(CancelArgs(booking_id=booking["id"]), ctx)).outcome == "ok"  # type: ignore[attr-defined]
    env.clock.now = TEN + 3600
    refused = await client.post(f"/api/bookings/{booking['id']}/no-show", headers=AUTH)
    assert refused.status_code == 409 and "was cancelled" in refused.json()["detail"]
    report = (await client.get("/api/flows/dental_booking/analytics", headers=AUTH)).json()
    assert report["no_shows"] == 0 and report["no_shows_by_outcome"] == {}


async def test_the_reminder_flow_counts_who_confirmed_and_did_not_come(client: Any, env: Env) -> None:
    """Ann books, the reminder goes out, she confirms, and does not come: the no-show counts on
    the booking flow and, beside its `confirmed` outcome, on the reminder flow."""
    await env.converse(ANN, BOOK)
    booking = await _booking(env, ANN)
    reminded = {k: booking[k] for k in ("id", "start", "end", "label", "calendar", "title")}
    await env.runtime.start_outbound(Address(business=BIZ, contact=ANN), "fake_sms", "appointment_reminder",
                                     vars={"booking": reminded})
    await env.say(ANN, "C")
    await env.converse(BOB, ["hi", "hours", "no"])  # another conversation of the booking flow
    env.clock.now = TEN + 3600
    marked = (await client.post(f"/api/bookings/{booking['id']}/no-show", headers=AUTH)).json()
    assert len(marked["conversations"]) == 2
    reminder = (await client.get("/api/flows/appointment_reminder/analytics", headers=AUTH)).json()
    assert reminder["outcomes"] == {"confirmed": 1} and reminder["no_shows"] == 1
    assert reminder["no_shows_by_outcome"] == {"confirmed": 1}
    booking_flow = (await client.get("/api/flows/dental_booking/analytics", headers=AUTH)).json()
    assert booking_flow["started"] == 2 and booking_flow["no_shows"] == 1
    assert booking_flow["no_shows_by_outcome"] == {"booked": 1}
