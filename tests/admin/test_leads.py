"""An HVAC company's missed-call flow keeps the caller as a lead in the embedded CRM: exactly one
lead, every field, listed by GET /api/leads, exported and erased with the contact (memory and
real Redis stores)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from conftest import AUTH, Env

from integrations.crm_http import CrmHttp
from integrations.embedded_crm import EmbeddedCrm

ROOT = Path(__file__).resolve().parents[2]
HVAC = (ROOT / "examples" / "flows" / "hvac_missed_call.yaml").read_text()
DANA, EVE = "+15555550131", "+15555550132"


async def _leads(client: Any, **params: Any) -> Any:
    response = await client.get("/api/leads", params=params, headers=AUTH)
    assert response.status_code == 200, response.text
    return response.json()


async def test_the_hvac_missed_call_lead_lands_once_in_get_api_leads_and_goes_with_the_contact(
    client: Any, env: Env, tmp_path: Path,
) -> None:
    crm = EmbeddedCrm(path=tmp_path / "crm.sqlite3")
    env.runtime.connectors.register(crm, "crm")
    assert (await client.put("/api/flows/hvac_missed_call", content=HVAC, headers=AUTH)).status_code == 200
    assert await _leads(client) == []
    for contact in (DANA, EVE):
        started = await client.post("/api/conversations", json={"contact": contact, "flow": "hvac_missed_call",
                                                                "channel": "sms"}, headers=AUTH)
        assert started.status_code == 201, started.text
    await env.converse(DANA, ["Dana Ruiz", "1", "12 Elm St, Evanston", "tomorrow at 8am"])
    again = await env.say(DANA, "hello?")  # after the end: a new conversation, no new lead
    assert again is not None
    [lead] = await _leads(client)
    assert {k: lead[k] for k in ("status", "phone", "name", "reason", "address", "source", "flow")} == {
        "status": "new", "phone": DANA, "name": "Dana Ruiz", "reason": "no_heat", "address": "12 Elm St, Evanston",
        "source": "missed call", "flow": "hvac_missed_call"}
    assert lead["preferred_time"] and [n["text"] for n in lead["notes"]] == [
        "Missed call; texted back by Northside Heating & Cooling."]
    assert await _leads(client, status="new") == [lead] and await _leads(client, status="won") == []
    assert (await client.get("/api/leads", params={"status": "maybe"}, headers=AUTH)).status_code == 400
    assert (await client.get("/api/leads", headers={"Authorization": "Bearer nope"})).status_code == 401

    await env.converse(EVE, ["Eve", "2", "3 Oak Ave", "now"])
    listed = await _leads(client)
    assert [(x["name"], x["reason"]) for x in listed] == [("Eve", "no_cooling"), ("Dana Ruiz", "no_heat")]
    assert listed[0]["preferred_time"] == "as soon as possible"  # the answer's label, not its mapping
    exported = (await client.get(f"/api/contacts/{DANA}", headers=AUTH)).json()["connectors"]["crm"]
    assert [r["record"] for r in exported] == ["contact", "lead"] and exported[1]["id"] == lead["id"]
    erased = (await client.delete(f"/api/contacts/{DANA}", headers=AUTH)).json()
    assert erased["complete"] is True and erased["connectors"]["crm"] == 3  # the note, the lead, the contact
    assert [x["name"] for x in await _leads(client)] == ["Eve"]
    assert (await client.get(f"/api/contacts/{DANA}", headers=AUTH)).json()["connectors"]["crm"] == []


async def test_leads_are_a_404_naming_the_external_crm_when_one_is_configured(client: Any, env: Env) -> None:
    env.runtime.connectors.register(CrmHttp("http://127.0.0.1:1"), "crm")
    missing = await client.get("/api/leads", headers=AUTH)
    assert missing.status_code == 404 and "CRM_URL" in missing.json()["detail"]
