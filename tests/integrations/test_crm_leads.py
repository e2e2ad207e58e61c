"""The lead actions behave alike on every `crm` backend (embedded SQLite, the HTTP CRM and
HubSpot through their real clients against local fakes): a flow does not change when the owner
connects a CRM."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conn_helpers import CtxFactory
from fake_crm import FakeCrm, FakeHubSpot
from test_crm_connectors import make_crm

from integrations.crm_base import AddNoteArgs, CreateLeadArgs, FindContactArgs, UpdateLeadArgs
from integrations.embedded_crm import EmbeddedCrm
from integrations.hubspot import HubSpot

ANN, NOBODY = "+15550001111", "+15550009999"
LEAD = CreateLeadArgs(name="Dana Ruiz", reason="no_heat", address="12 Elm St",
                      preferred_time={"start": "2026-11-26T08:00:00-05:00", "label": "as soon as possible"},
                      notes="Missed call")

Backend = tuple[Any, Callable[[], int], Callable[[], int]]  # connector, leads held, notes held


@pytest.fixture(params=["embedded", "http", "hubspot"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "embedded":
        crm = EmbeddedCrm(path=tmp_path / "crm.sqlite3")

        def rows(table: str) -> int:
            import sqlite3
            return int(sqlite3.connect(crm.path).execute(f"SELECT count(*) FROM {table}").fetchone()[0])

        yield crm, lambda: rows("leads"), lambda: rows("notes")
    elif request.param == "http":
        server = FakeCrm()
        yield (make_crm(server), lambda: len(server.leads),  # a lead's first note is its `notes` field
               lambda: len(server.notes) + sum(1 for lead in server.leads.values() if lead.get("notes")))
        server.stop()
    else:
        hub = FakeHubSpot()
        yield (HubSpot(hub.token, api_base=hub.base, retry_base_seconds=0.01),
               lambda: sum(1 for c in hub.contacts.values() if c.get("hs_lead_status")), lambda: len(hub.notes))
        hub.stop()


async def test_a_retried_create_lead_is_one_lead_and_the_flow_can_update_and_note_it(
    backend: Backend, ctx_factory: CtxFactory
) -> None:
    crm, leads, notes = backend
    ctx = ctx_factory(session_id=f"biz:{ANN}", contact=ANN)
    assert (await crm.update_lead(UpdateLeadArgs(status="contacted"), ctx)).outcome == "empty"  # no lead yet
    first = await crm.create_lead(LEAD, ctx)
    again = await crm.create_lead(LEAD, ctx)  # the turn retried
    assert first.outcome == again.outcome == "ok" and first.value["id"] == again.value["id"]
    assert first.value["status"] == "new" and first.value["name"] == "Dana Ruiz"
    assert first.value["preferred_time"] == "as soon as possible"
    assert leads() == 1 and notes() == 1
    for note in ("Gate code 1234", "Gate code 1234"):
        assert (await crm.add_note(AddNoteArgs(text=note), ctx)).outcome == "ok"
    assert notes() == 2
    assert (await crm.update_lead(UpdateLeadArgs(status="Contacted"), ctx)).value["status"] == "contacted"
    won = await crm.update_lead(UpdateLeadArgs(status="won", lead_id=str(first.value["id"])), ctx)
    assert won.outcome == "ok" and won.value["status"] == "won"
    bad = await crm.update_lead(UpdateLeadArgs(status="maybe"), ctx)
    assert bad.outcome == "error" and "new, contacted, won, lost" in (bad.detail or "")
    found = await crm.find_contact(FindContactArgs(), ctx)
    assert found.outcome == "ok" and ANN in str(found.value)
    assert (await crm.find_contact(FindContactArgs(phone=NOBODY), ctx)).outcome == "empty"
