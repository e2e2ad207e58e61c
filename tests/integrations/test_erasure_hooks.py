"""The connectors' erasure hooks (`erase_contact`, `export_contact`) against the embedded
calendar's SQLite file, the fake CRMs (httpx); Google Calendar's are in
test_google_calendar.py: a booking keeps its slot but no longer names the person or the phone."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from conn_helpers import CtxFactory
from fake_crm import FakeCrm, FakeHubSpot
from test_crm_connectors import make_crm

from integrations.calendar_base import BookArgs, FindSlotsArgs
from integrations.crm_http import CrmError, LogConversationArgs, UpsertContactArgs
from integrations.embedded_calendar import EmbeddedCalendar
from integrations.hubspot import HubSpot
from orchestrator.plugins.connectors import ERASED_TITLE, ErasableConnector, ErasureContext

SLOT = {"start": "2026-11-26T10:00:00-05:00", "end": "2026-11-26T10:30:00-05:00", "label": "Thu 26 Nov, 10:00 AM"}
ANN = "+15550001111"
OTHER = "+15550002222"
CTX = ErasureContext(now=0.0)


@pytest.fixture
def crm_server() -> Iterator[FakeCrm]:
    server = FakeCrm()
    yield server
    server.stop()


@pytest.fixture
def hubspot_server() -> Iterator[FakeHubSpot]:
    server = FakeHubSpot()
    yield server
    server.stop()


def names_ann(text: str) -> bool:
    return "Ann" in text or ANN in text or ANN[1:] in text


async def test_embedded_calendar_pseudonymises_the_contacts_bookings_and_keeps_the_slot(
    calendar: EmbeddedCalendar, ctx_factory: CtxFactory,
) -> None:
    assert isinstance(calendar, ErasableConnector)
    ann = ctx_factory()
    booked = await calendar.book(BookArgs(slot=SLOT, title="Cleaning - Ann Lee", name="Ann Lee", reason="cleaning"),
                                 ann)
    other = ctx_factory(session_id=f"biz:{OTHER}", contact=OTHER)
    await calendar.book(BookArgs(slot="2026-11-26T11:00:00-05:00", title="Checkup - Bob", name="Bob"), other)
    exported = await calendar.export_contact(ANN, CTX)
    assert [b["title"] for b in exported] == ["Cleaning - Ann Lee"] and exported[0]["phone"] == ANN

    assert await calendar.erase_contact(ANN, CTX) == 1
    assert await calendar.export_contact(ANN, CTX) == []
    import sqlite3

    rows = sqlite3.connect(calendar.path).execute(
        "SELECT id, title, name, reason, phone, session_id, status, start_ts FROM bookings ORDER BY start_ts",
    ).fetchall()
    assert rows[0][:7] == (booked.value["id"], ERASED_TITLE, None, None, None, None, "confirmed")
    assert not names_ann(json.dumps(rows)) and "Bob" in json.dumps(rows)  # only this contact's rows changed
    free = await calendar.find_slots(FindSlotsArgs(around=SLOT["start"]), ann)
    assert SLOT["label"] not in [s["label"] for s in free.value]  # the time stays taken
    assert await calendar.erase_contact(ANN, CTX) == 0  # run again: nothing left


async def test_embedded_calendar_storage_failure_raises(tmp_path: Path) -> None:
    (tmp_path / "blocked").write_text("a file where the folder should be")
    broken = EmbeddedCalendar(path=tmp_path / "blocked" / "cal.sqlite3")
    with pytest.raises(Exception, match="erase_contact"):
        await broken.erase_contact(ANN, CTX)


async def test_generic_crm_erases_the_contact_and_its_summaries(crm_server: FakeCrm, ctx_factory: CtxFactory) -> None:
    crm = make_crm(crm_server)
    await crm.upsert_contact(UpsertContactArgs(name="Ann Lee"), ctx_factory())
    await crm.log_conversation(LogConversationArgs(name="Ann Lee", outcome="booked"), ctx_factory())
    await crm.upsert_contact(UpsertContactArgs(name="Bob", phone=OTHER), ctx_factory())
    held = await crm.export_contact(ANN, CTX)
    assert names_ann(json.dumps(held))
    assert await crm.erase_contact(ANN, CTX) == 2
    assert not names_ann(json.dumps([crm_server.contacts, crm_server.conversations])) and OTHER in crm_server.contacts
    assert await crm.erase_contact(ANN, CTX) == 0 and await crm.export_contact(ANN, CTX) == []
    crm_server.script = [("DELETE", "/contacts/", 403, {"error": "forbidden"}, {})]
    with pytest.raises(CrmError, match="HTTP 403"):
        await crm.erase_contact(ANN, CTX)


async def test_hubspot_deletes_notes_then_gdpr_deletes_the_contact(
    hubspot_server: FakeHubSpot, ctx_factory: CtxFactory,
) -> None:
    hub = HubSpot("pat-na1-secret", api_base=hubspot_server.base, retry_base_seconds=0.01)
    await hub.log_conversation(LogConversationArgs(name="Ann Lee", outcome="booked"), ctx_factory())
    await hub.upsert_contact(UpsertContactArgs(name="Bob", phone=OTHER), ctx_factory())
    [held] = await hub.export_contact(ANN, CTX)
    assert held["properties"]["firstname"] == "Ann" and len(held["notes"]) == 1
    assert await hub.erase_contact(ANN, CTX) == 2  # one note, one contact
    assert not names_ann(json.dumps([hubspot_server.contacts, hubspot_server.notes]))
    assert [c["phone"] for c in hubspot_server.contacts.values()] == [OTHER]
    assert len(hubspot_server.calls("POST", "/crm/v3/objects/contacts/gdpr-delete")) == 1
    assert await hub.erase_contact(ANN, CTX) == 0
