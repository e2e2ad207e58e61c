"""The admin API end to end (litestar test client) on the memory store and on real Redis."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
import redis.asyncio as aioredis
from conftest import AGENT, AUTH, BOOK, HOURS, TOKEN, Env
from rediskit import REDIS_URL

from orchestrator.records.audit import audit_key, contact_ref, fingerprint
from orchestrator.web.admin import MAX_LIMIT

ANN, BOB, CAT, DAN = "+15555550123", "+15555550124", "+15555550125", "+15555550126"


async def test_auth_refuses_missing_and_wrong_tokens_and_audits_everything(client: Any) -> None:
    assert (await client.get("/api/flows")).status_code == 401
    assert (await client.get("/api/flows", headers={"Authorization": "Bearer nope"})).status_code == 401
    assert (await client.get("/api/flows", headers={"Authorization": TOKEN})).status_code == 401  # no scheme
    ok = await client.get("/api/flows", headers=AUTH)
    assert ok.status_code == 200
    entries = (await client.get("/api/audit", headers=AUTH)).json()
    seen = [(e["who"], e["action"], e["status"]) for e in entries]
    # refusals are counted per minute (bounded space), not one entry each
    assert [e["detail"] for e in entries if e["who"] == "anonymous"] == [{"count": 3}]
    assert ("anonymous", "refused /api (per minute)", 401) in seen
    assert (fingerprint(TOKEN), "GET /api/flows", 200) in seen
    assert all(TOKEN not in str(e) for e in entries)


async def test_flows_list_get_and_diagram(client: Any) -> None:
    flows = {f["id"]: f for f in (await client.get("/api/flows", headers=AUTH)).json()}
    assert set(flows) == {"appointment_reminder", "dental_booking", "missed_call_textback", "salon_bilingual"}
    dental = flows["dental_booking"]
    assert dental["title"] == "Bright Smile Dental" and dental["revision"] in dental["revisions"]
    one = (await client.get("/api/flows/dental_booking", headers=AUTH)).json()
    assert one["source"].startswith("# Bright Smile Dental") and "flowchart" in one["diagram"]
    dot = await client.get("/api/flows/dental_booking/diagram", params={"format": "dot"}, headers=AUTH)
    assert dot.status_code == 200 and dot.text.lstrip().startswith("digraph")
    html = await client.get("/api/flows/dental_booking/diagram", params={"format": "html"}, headers=AUTH)
    assert "<svg" in html.text
    assert (await client.get("/api/flows/dental_booking/diagram", params={"format": "png"},
                             headers=AUTH)).status_code == 400
    assert (await client.get("/api/flows/nope", headers=AUTH)).status_code == 404
    assert (await client.get("/api/flows/Bad-Id!", headers=AUTH)).status_code == 400


async def test_validate_and_upload_revisions(client: Any, env: Env) -> None:
    source = (env.flows / "dental_booking.yaml").read_text()
    good = await client.post("/api/flows/dental_booking/validate", content=source, headers=AUTH)
    assert good.status_code == 200 and good.json() == {"valid": True, "errors": [], "diagnostics": []}
    broken = source.replace("next: find_slots", "next: find_slotz", 1)
    bad = (await client.post("/api/flows/dental_booking/validate", content=broken, headers=AUTH)).json()
    assert not bad["valid"]
    assert any(e.startswith("dental_booking.yaml:") and "find_slotz" in e for e in bad["errors"]), bad["errors"]
    line = broken.splitlines().index("    next: find_slotz") + 1
    assert any(d["line"] == line for d in bad["diagnostics"])

    # a conversation on the first revision, then a new revision is uploaded
    await env.converse(ANN, ["hi", "hours"])
    old = (await client.get("/api/flows/dental_booking", headers=AUTH)).json()["revision"]
    rejected = await client.put("/api/flows/dental_booking", content=broken, headers=AUTH)
    assert rejected.status_code == 422 and rejected.json()["errors"] == bad["errors"]
    assert (await client.get("/api/flows/dental_booking", headers=AUTH)).json()["revision"] == old
    wrong_id = await client.put("/api/flows/dental_booking", content=source.replace(
        "flow: dental_booking", "flow: other"), headers=AUTH)
    assert wrong_id.status_code == 422
    v2 = source.replace("Have a great day!", "Have a lovely day!")
    put = await client.put("/api/flows/dental_booking", content=v2, headers=AUTH)
    assert put.status_code == 200
    new = put.json()["revision"]
    assert new != old
    listed = (await client.get("/api/flows/dental_booking", headers=AUTH)).json()
    assert listed["revision"] == new and listed["revisions"][-2:] == [old, new]
    assert "lovely" in (env.flows / "dental_booking.yaml").read_text()  # kept across restarts
    # the running conversation keeps its revision; a new one gets the new revision
    assert "great day" in (await env.say(ANN, "no")).messages[0].text
    replies = await env.converse(BOB, ["hi", "hours", "no"])
    assert "lovely day" in replies[-1].messages[0].text
    assert (await client.put("/api/flows/dental_booking", content=b"\xff\xfe", headers=AUTH)).status_code == 400
    audit = (await client.get("/api/audit", headers=AUTH)).json()
    puts = [(e["action"], e["target"], e["status"]) for e in audit if e["action"].startswith("PUT")]
    assert ("PUT /api/flows/{flow_id:str}", "flow:dental_booking", 200) in puts
    assert ("PUT /api/flows/{flow_id:str}", "flow:dental_booking", 422) in puts


async def test_a_flow_with_only_warnings_is_served_and_its_warnings_returned(client: Any, env: Env) -> None:
    # as `orchestrator validate` passes a flow with warnings, so do the validate route and the upload
    source = (await client.get("/api/flows/dental_booking", headers=AUTH)).json()["source"]
    warned = source.replace("    on: {fail: handoff}\n", "", 1)
    assert warned != source
    report = (await client.post("/api/flows/dental_booking/validate", content=warned, headers=AUTH)).json()
    assert report["valid"] and report["diagnostics"], report
    assert {d["severity"] for d in report["diagnostics"]} == {"warning"}
    assert any("built-in fallback" in d["message"] for d in report["diagnostics"])
    put = await client.put("/api/flows/dental_booking", content=warned, headers=AUTH)
    assert put.status_code == 200, put.text
    assert [w["text"] for w in put.json()["warnings"]] == report["errors"]
    assert (await client.get("/api/flows/dental_booking", headers=AUTH)).json()["revision"] == put.json()["revision"]
    # an error beside the warning still refuses it
    broken = warned.replace("next: find_slots", "next: find_slotz", 1)
    refused = await client.put("/api/flows/dental_booking", content=broken, headers=AUTH)
    assert refused.status_code == 422 and not refused.json()["valid"]
    assert {d["severity"] for d in refused.json()["diagnostics"]} == {"warning", "error"}


async def test_conversations_list_and_detail(client: Any, env: Env) -> None:
    await env.converse(ANN, BOOK)
    await env.converse(BOB, HOURS)
    rows = (await client.get("/api/conversations", headers=AUTH)).json()
    assert [r["contact"] for r in rows] == [BOB, ANN]  # newest first
    booked = (await client.get("/api/conversations", params={"outcome": "booked"}, headers=AUTH)).json()
    assert [r["contact"] for r in booked] == [ANN]
    assert booked[0]["turns"] == len(BOOK) and booked[0]["status"] == "ended"
    assert booked[0]["path"][:3] == ["greet", "menu", "ask_name"] and booked[0]["last_state"] == "confirm"
    by_contact = (await client.get("/api/conversations", params={"contact": "+1 555 555 0124"},
                                   headers=AUTH)).json()
    assert [r["outcome"] for r in by_contact] == ["info_given"]
    assert (await client.get("/api/conversations", params={"channel": "whatsapp"}, headers=AUTH)).json() == []
    assert (await client.get("/api/conversations", params={"flow": "missed_call_textback"},
                             headers=AUTH)).json() == []
    window = {"since": "2026-11-25T11:00:00-05:00", "until": "2026-11-25T11:59:00-05:00"}
    assert (await client.get("/api/conversations", params=window, headers=AUTH)).json() == []
    assert (await client.get("/api/conversations", params={"since": "yesterday"}, headers=AUTH)).status_code == 400
    assert (await client.get("/api/conversations", params={"contact": "+12"}, headers=AUTH)).status_code == 400
    assert (await client.get("/api/conversations", params={"contact": "a b/c"}, headers=AUTH)).status_code == 400
    # a channel's own contact id (a WhatsApp user id) is a contact too
    assert (await client.get("/api/conversations", params={"contact": "US.1349"}, headers=AUTH)).json() == []
    assert (await client.get("/api/conversations", params={"limit": 0}, headers=AUTH)).status_code == 400

    detail = (await client.get(f"/api/conversations/{booked[0]['id']}", headers=AUTH)).json()
    assert [t["text"] for t in detail["turns"] if t["dir"] == "in"] == BOOK
    assert detail["states"][:2] == ["greet", "menu"] and "confirm" in detail["states"]
    assert detail["variables"]["patient_name"] == "Ann Lee"
    calls = {c["action"]: c for c in detail["connector_calls"]}
    assert set(calls) == {"calendar.find_slots", "calendar.book"}
    assert calls["calendar.book"]["outcome"] == "ok" and calls["calendar.book"]["ms"] >= 0
    assert detail["summary"]["outcome"] == "booked" and detail["summary"]["booking"]["label"]
    assert (await client.get("/api/conversations/nope", headers=AUTH)).status_code == 404
    assert (await client.get(f"/api/conversations/{booked[0]['id']}0", headers=AUTH)).status_code == 404


async def test_staff_notification_carries_the_summary(client: Any, env: Env) -> None:
    await env.converse(ANN, BOOK)
    await env.converse(CAT, AGENT)
    await env.runtime.send_outbox()
    staff = [(to, [m.text for m in msgs]) for to, msgs in env.sms.sent]
    assert len(staff) == 2 and {to for to, _ in staff} == {"+15555550199"}
    booked_note = staff[0][1][0]
    assert "Ann Lee" in booked_note and "outcome booked" in booked_note
    assert "Booked: Thu 26 Nov, 10:00 AM." in booked_note
    assert "Reason: Cleaning." in booked_note and "Preferred time: Thu 26 Nov, 10:00 AM." in booked_note
    assert "needs a follow-up" in staff[1][1][0]
    assert not [m for _, msgs in env.sms.sent for m in msgs if m.kind != "notify"]


async def expire_session(env: Env, sid: str, prefix: str | None) -> None:
    """What the session TTL does to an abandoned conversation: its live state is gone."""
    if prefix is None:
        env.runtime.store._sessions.pop(sid)  # type: ignore[attr-defined]
        return
    r = aioredis.Redis.from_url(REDIS_URL)
    try:
        assert await r.delete(f"{prefix}:{{{sid}}}:s") == 1
    finally:
        await r.aclose()


async def test_analytics_after_several_conversations(client: Any, env: Env, store: Any) -> None:
    await env.converse(ANN, BOOK)
    await env.converse(BOB, HOURS)
    await env.converse(CAT, AGENT)
    await env.converse(DAN, ["hi", "book"])  # still waiting for a name
    report = (await client.get("/api/flows/dental_booking/analytics", headers=AUTH)).json()
    assert report["started"] == 4 and report["ended"] == 3 and report["active"] == 1
    assert report["outcomes"] == {"booked": 1, "handed_off": 1, "info_given": 1}
    assert report["booked"] == 1 and report["booking_conversion"] == 0.25
    assert report["average_turns"] == round((len(BOOK) + len(HOURS) + len(AGENT)) / 3, 2)
    assert report["average_duration_seconds"] == round(7 * ((len(BOOK) + len(HOURS) + len(AGENT)) - 3) / 3, 2)
    funnel = {row["state"]: row for row in report["funnel"]}
    assert funnel["menu"]["reached"] == 4 and funnel["ask_name"]["reached"] == 2
    assert funnel["ask_name"]["waiting"] == 1 and funnel["confirm"]["reached"] == 1
    assert report["channels"] == {"sms": {"started": 4, "booked": 1, "info_given": 1, "handed_off": 1, "active": 1}}
    # the waiting conversation's session expires: it counts as dropped off at its last state
    await expire_session(env, f"+15555550100:{DAN}", store[1])
    report = (await client.get("/api/flows/dental_booking/analytics", headers=AUTH)).json()
    assert report["abandoned"] == 1 and report["drop_off"] == {"ask_name": 1}
    assert (await client.get("/api/flows/missed_call_textback/analytics", headers=AUTH)).json()["started"] == 0
    assert (await client.get("/api/flows/nope/analytics", headers=AUTH)).status_code == 404


async def test_outbound_start_and_opted_out(client: Any, env: Env) -> None:
    body = {"contact": ANN, "flow": "missed_call_textback", "channel": "sms"}
    started = await client.post("/api/conversations", json=body, headers=AUTH)
    assert started.status_code == 201, started.text
    conv = started.json()["conversation_id"]
    assert await env.runtime.send_outbox() == 1
    assert env.sms.sent[0][0] == ANN and "Sorry we missed your call" in env.sms.sent[0][1][0].text
    detail = (await client.get(f"/api/conversations/{conv}", headers=AUTH)).json()
    assert detail["conversation"]["flow"] == "missed_call_textback" and detail["live_state"] == "ask_name"
    await env.runtime.store.set_opt_out(BOB, True)
    refused = await client.post("/api/conversations", json={**body, "contact": BOB}, headers=AUTH)
    assert refused.status_code == 409
    assert (await client.post("/api/conversations", json={**body, "contact": "12"}, headers=AUTH)).status_code == 400
    assert (await client.post("/api/conversations", json={**body, "flow": "nope"}, headers=AUTH)).status_code == 404
    assert (await client.post("/api/conversations", json={**body, "channel": "fax"}, headers=AUTH)).status_code == 400
    assert (await client.post("/api/conversations", content=b"{not json", headers=AUTH)).status_code == 400
    assert (await client.post("/api/conversations", json={"contact": ANN}, headers=AUTH)).status_code == 400


async def _redis_leftovers(prefix: str, contact: str) -> list[str]:
    """Every key (and sorted-set / set member) under `prefix` that names `contact`."""
    r = aioredis.Redis.from_url(REDIS_URL)
    found = []
    try:
        async for raw in r.scan_iter(match=f"{prefix}:*", count=1000):
            key = raw.decode()
            if contact in key:
                found.append(key)
            kind = (await r.type(raw)).decode()
            members: list[Any] = []
            if kind == "zset":
                members = await r.zrange(raw, 0, -1)
            elif kind == "set":
                members = list(await r.smembers(raw))
            found += [f"{key} -> {m.decode()}" for m in members if contact in m.decode()]
    finally:
        await r.aclose()
    return found


async def test_contact_export_and_erase(client: Any, env: Env, store: Any) -> None:
    await env.converse(ANN, BOOK)
    await env.converse(ANN, HOURS)
    await env.converse(BOB, HOURS)
    await env.runtime.send_outbox()
    await env.runtime.store.set_opt_out(ANN, True)
    exported = (await client.get(f"/api/contacts/{ANN}", headers=AUTH)).json()
    assert exported["opted_out"] is True
    assert list(exported["sessions"]) == [f"+15555550100:{ANN}"]
    assert len(exported["conversations"]) == 2
    assert exported["bookings"][0]["label"].startswith("Thu 26 Nov")
    ins = [e["text"] for e in exported["transcripts"][f"+15555550100:{ANN}"] if e["dir"] == "in"]
    assert ins == BOOK + HOURS

    erased = await client.delete(f"/api/contacts/{ANN}", headers=AUTH)
    assert erased.status_code == 200 and erased.json()["opted_out"] is True and erased.json()["removed"] > 0
    after = (await client.get(f"/api/contacts/{ANN}", headers=AUTH)).json()
    assert (after["sessions"], after["transcripts"], after["conversations"], after["bookings"], after["opted_out"]) \
        == ({}, {}, [], [], True)
    assert [r["contact"] for r in (await client.get("/api/conversations", headers=AUTH)).json()] == [BOB]
    audit = (await client.get("/api/audit", headers=AUTH)).json()
    ref = contact_ref(ANN, audit_key(env.runtime.settings))
    assert ref != "contact:" + hashlib.sha256(ANN.encode()).hexdigest()[:16]  # keyed, not a bare hash
    assert ("DELETE /api/contacts/{phone:str}", ref) in [(e["action"], e.get("target")) for e in audit]
    assert ANN not in str(audit)
    prefix = store[1]
    if prefix is not None:
        leftovers = await _redis_leftovers(prefix, ANN)
        assert leftovers == [f"{prefix}:optout:{ANN}"]
        assert await _redis_leftovers(prefix, BOB)  # the other contact is untouched
    assert (await client.delete("/api/contacts/not%20a%20phone", headers=AUTH)).status_code == 400
    assert (await client.delete("/api/contacts/+1%20555", headers=AUTH)).status_code == 400  # a number, too short


@pytest.mark.parametrize("path", ["/health", "/metrics"])
async def test_operator_routes_need_no_token(client: Any, env: Env, path: str) -> None:
    await env.converse(ANN, BOOK)
    response = await client.get(path)
    assert response.status_code == 200
    if path == "/metrics":
        text = response.text
        assert 'orchestrator_connector_calls_total{action="calendar.book",outcome="ok"}' in text
        assert "orchestrator_turn_seconds_bucket" in text and 'orchestrator_turns_total{channel="sms"}' in text
    else:
        assert response.json()["flows"] == [
            "appointment_reminder", "dental_booking", "missed_call_textback", "salon_bilingual"]


async def test_openapi_schema_is_served(client: Any) -> None:
    schema = (await client.get("/schema/openapi.json")).json()
    paths = schema["paths"]
    for path in ("/api/flows", "/api/flows/{flow_id}", "/api/conversations", "/api/contacts/{phone}",
                 "/api/flows/{flow_id}/analytics"):
        assert path in paths, sorted(paths)
    assert schema["components"]["securitySchemes"]["BearerToken"]["scheme"] == "bearer"


async def test_conversation_filters_combine_and_page(client: Any, env: Env) -> None:
    await env.converse(ANN, BOOK)
    first_end = env.clock.now
    env.clock.now += 3600
    await env.converse(BOB, HOURS, channel="whatsapp")
    await env.converse(CAT, HOURS)

    def ask(**params: Any) -> Any:
        return client.get("/api/conversations", params=params, headers=AUTH)

    assert [r["contact"] for r in (await ask(channel="whatsapp")).json()] == [BOB]
    assert [r["contact"] for r in (await ask(channel="sms", outcome="info_given")).json()] == [CAT]
    assert [r["contact"] for r in (await ask(flow="dental_booking", outcome="booked")).json()] == [ANN]
    assert [r["contact"] for r in (await ask(until=str(first_end))).json()] == [ANN]
    assert [r["contact"] for r in (await ask(since=str(first_end + 1))).json()] == [CAT, BOB]
    assert [r["contact"] for r in (await ask(outcome="info_given", limit=1, offset=1)).json()] == [BOB]
    assert [r["contact"] for r in (await ask(limit=2, offset=1)).json()] == [BOB, ANN]
    assert (await ask(contact=ANN, outcome="info_given")).json() == []
    assert (await ask(limit=MAX_LIMIT + 1)).status_code == 400
    assert (await ask(flow="Not A Flow")).status_code == 400


async def test_analytics_window_and_funnel_order(client: Any, env: Env) -> None:
    await env.converse(ANN, BOOK)
    first_end = env.clock.now
    env.clock.now += 3600
    await env.converse(BOB, HOURS)
    url = "/api/flows/dental_booking/analytics"
    early = (await client.get(url, params={"until": str(first_end)}, headers=AUTH)).json()
    late = (await client.get(url, params={"since": str(first_end + 1)}, headers=AUTH)).json()
    assert (early["started"], early["outcomes"]) == (1, {"booked": 1})
    assert (late["started"], late["outcomes"], late["booked"]) == (1, {"info_given": 1}, 0)
    whole = (await client.get(url, headers=AUTH)).json()
    order = list((await env.runtime.catalog.latest("dental_booking")).flow.states)
    funnel = [row["state"] for row in whole["funnel"]]
    assert funnel == [s for s in order if s in funnel]  # the flow's own state order
    assert funnel[0] == "greet" and whole["funnel"][0]["reached"] == 2
    assert all(row["reached"] >= row["dropped"] + row["waiting"] for row in whole["funnel"])
    assert (await client.get(url, params={"until": "later"}, headers=AUTH)).status_code == 400


async def test_bad_put_answers_422_with_positioned_diagnostics(client: Any, env: Env) -> None:
    source = (env.flows / "dental_booking.yaml").read_text()
    broken = source.replace("next: find_slots", "next: find_slotz", 1)
    answer = await client.put("/api/flows/dental_booking", content=broken, headers=AUTH)
    assert answer.status_code == 422
    body = answer.json()
    assert body["valid"] is False and body["errors"] == [d["text"] for d in body["diagnostics"]]
    [diag] = [d for d in body["diagnostics"] if "find_slotz" in d["message"]]
    assert set(diag) == {"file", "line", "col", "message", "hint", "path", "text", "severity"}
    assert diag["severity"] == "error"
    assert diag["text"].startswith(f"{diag['file']}:{diag['line']}:{diag['col']}: {diag['message']}")
    assert diag["path"].startswith("$.states.")
    not_yaml = await client.put("/api/flows/dental_booking", content=b"flow: [", headers=AUTH)
    assert not_yaml.status_code == 422 and "YAML" in not_yaml.json()["errors"][0]


async def test_unknown_ids_answer_404(client: Any, env: Env) -> None:
    await env.converse(ANN, HOURS)
    [row] = (await client.get("/api/conversations", headers=AUTH)).json()
    sid, _, ms = row["id"].rpartition("~")
    for path in (f"/api/conversations/{sid}~{int(ms) + 1}", "/api/conversations/%2B1~1",
                 "/api/flows/nope/analytics", "/api/flows/nope/diagram", "/api/flows/nope"):
        answer = await client.get(path, headers=AUTH)
        assert answer.status_code == 404, path
        assert answer.json()["detail"], path


async def test_openapi_documents_typed_responses(client: Any) -> None:
    schema = (await client.get("/schema/openapi.json")).json()
    components = schema["components"]["schemas"]
    for name in ("FlowSummary", "FlowDetail", "FlowRevision", "ValidationReport", "Diagnostic", "FlowAnalytics",
                 "FunnelStep", "ConversationRecord", "ConversationDetail", "TranscriptLine",
                 "StartedConversation", "ContactData", "Erasure", "AuditEntry"):
        assert name in components, sorted(components)
    assert set(components["FunnelStep"]["properties"]) == {"state", "reached", "dropped", "waiting"}

    def ref(path: str, method: str, status: str) -> str:
        content = schema["paths"][path][method]["responses"][status]["content"]["application/json"]["schema"]
        return json.dumps(content)

    assert "FlowAnalytics" in ref("/api/flows/{flow_id}/analytics", "get", "200")
    assert "ConversationRecord" in ref("/api/conversations", "get", "200")
    assert "ConversationDetail" in ref("/api/conversations/{conv_id}", "get", "200")
    assert "ValidationReport" in ref("/api/flows/{flow_id}", "put", "422")
    assert "FlowRevision" in ref("/api/flows/{flow_id}", "put", "200")
    assert "404" in schema["paths"]["/api/conversations/{conv_id}"]["get"]["responses"]
    assert "409" in schema["paths"]["/api/conversations"]["post"]["responses"]


async def test_the_list_shows_running_conversations_as_they_stand_now(client: Any, env: Env) -> None:
    """Records are written at a conversation's first and last turns only; the list reads the
    live session of the rows still running, and the filters apply to that current data."""
    await env.converse(ANN, ["hi", "book", "Ann Lee"])
    last_turn_at = env.clock.now
    rows = (await client.get("/api/conversations", headers=AUTH)).json()
    assert len(rows) == 1 and rows[0].get("status", "active") == "active"  # the default is left out
    assert rows[0]["turns"] == 3 and rows[0]["last_state"] == "ask_reason"
    assert rows[0]["path"][:3] == ["greet", "menu", "ask_name"] and rows[0]["last_activity_at"] == last_turn_at
    assert rows[0].get("outcome") is None and rows[0].get("ended_at") is None

    await env.say(ANN, "cleaning", channel="whatsapp")  # the same conversation, carried on WhatsApp
    moved = (await client.get("/api/conversations", params={"channel": "whatsapp"}, headers=AUTH)).json()
    assert [(r["contact"], r["turns"], r["channels"]) for r in moved] == [(ANN, 4, ["sms", "whatsapp"])]
    detail = (await client.get(f"/api/conversations/{rows[0]['id']}", headers=AUTH)).json()
    assert detail["conversation"]["turns"] == 4 and detail["live_state"] == detail["conversation"]["last_state"]

    await env.converse(BOB, HOURS)
    ended = (await client.get("/api/conversations", params={"outcome": "info_given"}, headers=AUTH)).json()
    assert [(r["contact"], r["status"], r["last_activity_at"]) for r in ended] == [(BOB, "ended", env.clock.now)]
    running = (await client.get("/api/conversations", params={"contact": ANN, "channel": "whatsapp"},
                                headers=AUTH)).json()
    assert [r.get("status", "active") for r in running] == ["active"]


async def test_erasure_pseudonymises_the_calendar_and_reports_a_failing_connector(
    client: Any, env: Env, tmp_path: Any,
) -> None:
    import sqlite3

    from integrations.crm_http import CrmHttp

    await env.converse(ANN, BOOK)  # books "Cleaning - Ann Lee" in the embedded calendar
    await env.converse(BOB, ["hi", "book", "Bob Ray", "cleaning", "tomorrow at 2pm", "1"])
    exported = (await client.get(f"/api/contacts/{ANN}", headers=AUTH)).json()
    [held] = exported["connectors"]["calendar"]
    assert held["phone"] == ANN and held["name"] == "Ann Lee"

    # a CRM that cannot be reached (nothing listens on port 1), through its real client
    env.runtime.connectors.register(CrmHttp("http://127.0.0.1:1", retries=0, timeout_seconds=1), "crm")
    failed = await client.delete(f"/api/contacts/{ANN}", headers=AUTH)
    assert failed.status_code == 502, failed.text
    body = failed.json()
    assert body["complete"] is False and body["connectors"] == {"calendar": 1}
    assert [f["connector"] for f in body["failed"]] == ["crm"] and "again" in body["failed"][0]["retry"]

    rows = sqlite3.connect(tmp_path / "cal.sqlite3").execute(
        "SELECT title, name, reason, phone, session_id, status, start_ts FROM bookings ORDER BY start_ts").fetchall()
    assert len(rows) == 2 and all(r[5] == "confirmed" for r in rows)  # both slots stay taken
    dump = json.dumps(rows)
    assert "Ann" not in dump and ANN not in dump and "Bob Ray" in dump  # only the erased contact's booking

    env.runtime.connectors.remove("crm")  # the CRM fixed (here: gone); the erasure run again
    again = await client.delete(f"/api/contacts/{ANN}", headers=AUTH)
    assert again.status_code == 200 and again.json()["complete"] is True and again.json()["connectors"] == {
        "calendar": 0}
    assert (await client.get(f"/api/contacts/{ANN}", headers=AUTH)).json()["connectors"] == {"calendar": []}
