"""The embedded CRM: leads once per conversation, notes, statuses, contacts, erasure, and how
the `crm` connector name resolves (a configured external CRM wins)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conn_helpers import CtxFactory

from integrations.crm_http import CrmHttp, LogConversationArgs, UpsertContactArgs
from integrations.embedded_crm import (
    AddNoteArgs,
    CreateLeadArgs,
    EmbeddedCrm,
    FindContactArgs,
    UpdateLeadArgs,
    crm_from_env,
)
from integrations.hubspot import HubSpot
from orchestrator.flow import validate
from orchestrator.flow.loader import load_flow_text
from orchestrator.plugins.connectors import ConnectorRegistry, ErasureContext
from orchestrator.testing.contract import ConnectorContract

ANN, BOB = "+15550001111", "+15550002222"
CTX = ErasureContext(now=0.0)
LEAD = CreateLeadArgs(name="Dana Ruiz", reason="no_heat", address="12 Elm St", preferred_time="tomorrow 8am",
                      email="dana@example.com", fields={"zip": "60201"}, notes="Missed call")


@pytest.fixture
def crm(tmp_path: Path) -> EmbeddedCrm:
    return EmbeddedCrm(path=tmp_path / "crm.sqlite3")


def _count(crm: EmbeddedCrm, table: str) -> int:
    return int(sqlite3.connect(crm.path).execute(f"SELECT count(*) FROM {table}").fetchone()[0])


async def test_a_lead_keeps_every_field_and_a_retried_turn_gets_the_same_lead(
    crm: EmbeddedCrm, ctx_factory: CtxFactory
) -> None:
    ctx = ctx_factory(session_id=f"biz:{ANN}", contact=ANN)
    first = await crm.create_lead(LEAD, ctx)
    assert first.outcome == "ok" and first.detail is None
    lead = first.value
    assert {k: lead[k] for k in ("status", "phone", "name", "email", "reason", "address", "preferred_time",
                                 "source", "flow", "fields")} == {
        "status": "new", "phone": ANN, "name": "Dana Ruiz", "email": "dana@example.com", "reason": "no_heat",
        "address": "12 Elm St", "preferred_time": "tomorrow 8am", "source": "dental_booking", "flow": "dental_booking",
        "fields": {"zip": "60201"}}
    assert [n["text"] for n in lead["notes"]] == ["Missed call"] and lead["created_at"].startswith("2026-11-25T17:00")
    again = await crm.create_lead(LEAD, ctx)  # the turn retried after a crash, or a duplicate webhook
    assert again.outcome == "ok" and again.value == lead and again.detail == "already created"
    assert _count(crm, "leads") == 1 and _count(crm, "notes") == 1 and _count(crm, "contacts") == 1
    more = await crm.create_lead(CreateLeadArgs(reason="no_cooling", name="", fields={"unit": "attic"}), ctx)
    assert more.value["id"] == lead["id"] and more.value["reason"] == "no_cooling"
    assert more.value["name"] == "Dana Ruiz" and more.value["fields"] == {"zip": "60201", "unit": "attic"}


async def test_other_conversations_keys_and_closed_leads_make_new_leads(
    crm: EmbeddedCrm, ctx_factory: CtxFactory
) -> None:
    ann = ctx_factory(session_id=f"biz:{ANN}", contact=ANN)
    bob = ctx_factory(session_id=f"biz:{BOB}", contact=BOB)
    first = (await crm.create_lead(CreateLeadArgs(name="Ann"), ann)).value
    assert (await crm.create_lead(CreateLeadArgs(name="Bob"), bob)).value["id"] != first["id"]
    keyed = (await crm.create_lead(CreateLeadArgs(key="second_unit"), ann)).value
    assert keyed["id"] != first["id"]
    won = await crm.update_lead(UpdateLeadArgs(status="won", lead_id=first["id"], note="Booked a repair"), ann)
    assert won.value["status"] == "won" and [n["text"] for n in won.value["notes"]] == ["Booked a repair"]
    later = (await crm.create_lead(CreateLeadArgs(name="Ann"), ann)).value  # the next call after it was won
    assert later["id"] not in (first["id"], keyed["id"]) and later["status"] == "new"
    listed = await crm.list_leads()
    assert listed[0]["id"] == later["id"] and len(listed) == 4  # newest first
    assert [lead["id"] for lead in await crm.list_leads(status="won")] == [first["id"]]
    assert len(await crm.list_leads(limit=2, offset=3)) == 1


async def test_notes_updates_and_lookups(crm: EmbeddedCrm, ctx_factory: CtxFactory) -> None:
    ctx = ctx_factory(session_id=f"biz:{ANN}", contact=ANN)
    assert (await crm.find_contact(FindContactArgs(), ctx)).outcome == "empty"
    assert (await crm.update_lead(UpdateLeadArgs(status="contacted"), ctx)).outcome == "empty"
    loose = await crm.add_note(AddNoteArgs(text="Called before any lead"), ctx)
    assert loose.outcome == "ok" and loose.value["lead_id"] is None
    lead = (await crm.create_lead(CreateLeadArgs(name="Ann Lee"), ctx)).value
    note = await crm.add_note(AddNoteArgs(text="Prefers mornings"), ctx)
    assert note.value["lead_id"] == lead["id"]
    assert (await crm.add_note(AddNoteArgs(text="Prefers mornings"), ctx)).value == note.value  # once
    assert (await crm.add_note(AddNoteArgs(text="x", lead_id="nope"), ctx)).outcome == "empty"
    assert (await crm.add_note(AddNoteArgs(text="  "), ctx)).outcome == "error"
    assert (await crm.update_lead(UpdateLeadArgs(status="contacted"), ctx)).value["status"] == "contacted"
    found = await crm.find_contact(FindContactArgs(phone=ANN), ctx)
    assert found.outcome == "ok" and found.value["name"] == "Ann Lee"
    assert [(x["status"], [n["text"] for n in x["notes"]]) for x in found.value["leads"]] == [
        ("contacted", ["Prefers mornings"])]
    registry = ConnectorRegistry()
    registry.register(crm)
    bad = await registry.call("crm.update_lead", {"status": "maybe"}, ctx, 5.0)
    assert bad.outcome == "error" and bad.detail == "crm.update_lead: status 'maybe' is not one of new, contacted, " \
        "won, lost"
    assert (await registry.call("crm.update_lead", {"status": " Won"}, ctx, 5.0)).value["status"] == "won"


async def test_every_backend_offers_the_same_actions_with_the_same_arguments(
    crm: EmbeddedCrm, ctx_factory: CtxFactory
) -> None:
    for external in (CrmHttp("http://127.0.0.1:1"), HubSpot("token")):
        assert set(external.actions) == set(crm.actions)  # the flow does not change with the backend
        for action, spec in external.actions.items():
            assert crm.actions[action].args is spec.args, action
    ctx = ctx_factory(session_id=f"biz:{ANN}", contact=ANN)
    contact = await crm.upsert_contact(UpsertContactArgs(name="Ann Lee", fields={"plan": "gold"}), ctx)
    assert contact.value["id"] == ANN and contact.value["fields"] == {"plan": "gold"}
    lead = (await crm.create_lead(CreateLeadArgs(), ctx)).value
    summary = LogConversationArgs(name="Ann Lee", reason="no heat", outcome="lead_taken")
    logged = await crm.log_conversation(summary, ctx)
    assert (await crm.log_conversation(summary, ctx)).value == logged.value  # a retry: one note
    [on_lead] = (await crm.list_leads())[0]["notes"]
    assert on_lead["id"] == logged.value["note_id"] and on_lead["lead_id"] == lead["id"]
    assert "Outcome: lead_taken" in on_lead["text"]


async def test_erasure_deletes_the_contact_their_leads_and_notes_only(
    crm: EmbeddedCrm, ctx_factory: CtxFactory
) -> None:
    assert await crm.export_contact(ANN, CTX) == [] and await crm.erase_contact(ANN, CTX) == 0
    assert not crm.path.exists()  # nothing written yet: no file made to look
    ann = ctx_factory(session_id=f"biz:{ANN}", contact=ANN)
    bob = ctx_factory(session_id=f"biz:{BOB}", contact=BOB)
    await crm.create_lead(LEAD, ann)
    await crm.add_note(AddNoteArgs(text="gate code 1234"), ann)
    await crm.create_lead(CreateLeadArgs(name="Bob Ray", phone="+15550009999"), bob)  # another number, Bob's talk
    await crm.create_lead(CreateLeadArgs(name="Cy"), ctx_factory(session_id="biz:+15550003333",
                                                                  contact="+15550003333"))
    exported = await crm.export_contact(ANN, CTX)
    assert [r["record"] for r in exported] == ["contact", "lead"]
    assert [n["text"] for n in exported[1]["notes"]] == ["Missed call", "gate code 1234"]
    assert [r["record"] for r in await crm.export_contact(BOB, CTX)] == ["lead"]  # found by the session
    assert await crm.erase_contact(ANN, CTX) == 4  # 2 notes, the lead, the contact
    assert await crm.export_contact(ANN, CTX) == [] and await crm.erase_contact(ANN, CTX) == 0
    assert await crm.erase_contact(BOB, CTX) == 1
    dump = json.dumps(sqlite3.connect(crm.path).execute("SELECT * FROM leads").fetchall())
    assert "Dana" not in dump and "Bob" not in dump and "Cy" in dump


async def test_storage_failures_are_the_error_outcome(tmp_path: Path, ctx_factory: CtxFactory,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "not-a-folder").write_text("")
    broken = EmbeddedCrm(path=tmp_path / "not-a-folder" / "crm.sqlite3")
    registry = ConnectorRegistry()
    registry.register(broken)
    ctx = ctx_factory()
    result = await registry.call("crm.create_lead", {"name": "Ann"}, ctx, 5.0)
    assert result.outcome == "error" and "crm create_lead: storage failed" in (result.detail or "")
    assert "create_lead failed" in caplog.text and ctx.contact not in caplog.text


def test_crm_resolves_to_a_configured_external_crm_else_the_embedded_one(tmp_path: Path) -> None:
    calendar = tmp_path / "deploy" / "calendar.sqlite3"
    embedded = crm_from_env({"ORCHESTRATOR_CALENDAR_DB": str(calendar)})
    assert isinstance(embedded, EmbeddedCrm) and embedded.path == calendar.parent / "crm.sqlite3"
    assert not embedded.path.exists()  # made on first use only
    own = crm_from_env({"ORCHESTRATOR_CRM_DB": str(tmp_path / "leads.db")})
    assert isinstance(own, EmbeddedCrm) and own.path == tmp_path / "leads.db"
    assert isinstance(crm_from_env({"HUBSPOT_TOKEN": "t"}), HubSpot)
    assert isinstance(crm_from_env({"CRM_URL": "http://crm.local"}), CrmHttp)
    assert isinstance(crm_from_env({"CRM_URL": "http://crm.local", "HUBSPOT_TOKEN": "t"}), CrmHttp)
    registry = ConnectorRegistry()
    registry.load_entry_points(env={"ORCHESTRATOR_CALENDAR_DB": str(calendar)})
    assert isinstance(registry.get("crm"), EmbeddedCrm) and "crm" in registry.names()


_CALLS_HUBSPOT = """
flow: t
start: log
states:
  log: {call: hubspot.upsert_contact, next: done, on: {error: done}}
  done: {say: bye, end: done}
"""


def test_validate_names_what_an_installed_but_unconfigured_connector_needs(tmp_path: Path) -> None:
    registry = ConnectorRegistry()
    registry.load_entry_points(env={"ORCHESTRATOR_CALENDAR_DB": str(tmp_path / "calendar.sqlite3")})
    assert registry.unconfigured()["hubspot"] == ("HUBSPOT_TOKEN",) and "crm" not in registry.unconfigured()
    [found] = validate.validate(load_flow_text(_CALLS_HUBSPOT, "t.yaml"), registry)
    assert found.message == "state 'log' calls connector 'hubspot', which is installed but not configured"
    assert found.hint == "set HUBSPOT_TOKEN in the environment"
    configured = ConnectorRegistry()
    configured.load_entry_points(env={"HUBSPOT_TOKEN": "t"})
    assert "hubspot" not in configured.unconfigured() and validate.validate(load_flow_text(_CALLS_HUBSPOT, "t.yaml"),
                                                                 configured) == []


_RACER = """
import asyncio, json, sys, time
sys.path[:0] = [{tests!r}]
from conn_helpers import make_ctx
from integrations.embedded_crm import CreateLeadArgs, EmbeddedCrm
crm = EmbeddedCrm(path={db!r})
ctx = make_ctx(session_id="biz:+15550001111", contact="+15550001111")
while time.time() < {go}:
    time.sleep(0.001)
print(json.dumps(asyncio.run(crm.create_lead(CreateLeadArgs(name="Ann"), ctx)).value["id"]))
"""


def test_processes_racing_on_one_conversation_make_one_lead(tmp_path: Path) -> None:
    db = str(tmp_path / "race.sqlite3")
    EmbeddedCrm(path=db)._connect().close()  # schema first, so racers only race on the lead
    code = _RACER.format(tests=str(Path(__file__).parent), db=db, go=time.time() + 2.0)
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) for _ in range(5)]
    ids = {json.loads(p.communicate(timeout=60)[0]) for p in procs}
    assert len(ids) == 1 and _count(EmbeddedCrm(path=db), "leads") == 1


class TestEmbeddedCrmContract(ConnectorContract):
    """The `crm` entry point as `serve` builds it with no CRM configured: the embedded CRM."""

    entry_point = "crm"
    env = {"ORCHESTRATOR_CRM_DB": str(Path(tempfile.mkdtemp(prefix="crm-contract-")) / "crm.sqlite3")}
    calls = [("create_lead", {"name": "Ann", "reason": "no heat"}), ("find_contact", {}),
             ("add_note", {"text": "call after 5"}), ("update_lead", {"status": "contacted"}),
             ("upsert_contact", {"name": "Ann"}), ("log_conversation", {"outcome": "lead_taken"})]
