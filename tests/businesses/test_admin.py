"""Admins per business: each token reaches only its business (another's is a 404), staff read
only, the operator reaches all and lists them, every audit entry names the business and the admin."""

from __future__ import annotations

import pytest

from .conftest import CONTACT, LUNA, OPERATOR, SOL, TOKENS, bearer, sms


async def _conversation_of(client, business: str) -> str:  # type: ignore[no-untyped-def]
    rows = (await client.get("/api/conversations", params={"business": business}, headers=bearer(OPERATOR))).json()
    assert len(rows) == 1, rows
    return str(rows[0]["id"])


@pytest.fixture
async def talked(client):  # type: ignore[no-untyped-def]
    await sms(client, "hi", to=LUNA)
    await sms(client, "Ana", to=LUNA)
    await sms(client, "hi", to=SOL)
    return {"luna_hair": await _conversation_of(client, "luna_hair"),
            "sol_dental": await _conversation_of(client, "sol_dental")}


OWN = {"luna_hair": ("luna_owner", "luna_staff"), "sol_dental": ("sol_owner", "sol_staff")}


@pytest.mark.parametrize("business,other", [("luna_hair", "sol_dental"), ("sol_dental", "luna_hair")])
@pytest.mark.parametrize("role", [0, 1])
async def test_a_business_admin_sees_only_its_business(client, talked, business, other, role) -> None:  # type: ignore[no-untyped-def]
    token = TOKENS[OWN[business][role]]
    h = bearer(token)
    rows = (await client.get("/api/conversations", headers=h)).json()
    assert [r["id"] for r in rows] == [talked[business]]
    assert (await client.get(f"/api/conversations/{talked[business]}", headers=h)).status_code == 200
    # the other business: 404 whichever way it is asked for, never a 403
    assert (await client.get(f"/api/conversations/{talked[other]}", headers=h)).status_code == 404
    assert (await client.get("/api/conversations", params={"business": other}, headers=h)).status_code == 404
    assert (await client.get("/api/flows/intake/analytics", params={"business": other},
                             headers=h)).status_code == 404
    assert (await client.get("/api/leads", params={"business": other}, headers=h)).status_code == 404
    assert (await client.get("/api/businesses", headers=h)).status_code == 404
    if role == 0:  # owner
        assert (await client.get(f"/api/contacts/{CONTACT}", params={"business": other},
                                 headers=h)).status_code == 404
        assert (await client.get("/api/flows/intake", params={"business": other}, headers=h)).status_code == 404
        assert (await client.get("/api/flows/intake", headers=h)).status_code == 200


@pytest.mark.parametrize("business", ["luna_hair", "sol_dental"])
async def test_staff_read_conversations_bookings_and_analytics_only(client, talked, business) -> None:  # type: ignore[no-untyped-def]
    h = bearer(TOKENS[OWN[business][1]])
    for path in ("/api/conversations", f"/api/conversations/{talked[business]}", "/api/flows/intake/analytics",
                 "/api/leads", "/api/flows"):
        assert (await client.get(path, headers=h)).status_code == 200, path
    for method, path in (("GET", f"/api/contacts/{CONTACT}"), ("DELETE", f"/api/contacts/{CONTACT}"),
                         ("PUT", "/api/flows/intake"), ("GET", "/api/audit"), ("GET", "/api/flows/intake"),
                         ("POST", "/api/conversations")):
        answer = await client.request(method, path, headers=h, content=b"{}")
        assert answer.status_code == 403, (method, path, answer.status_code)


async def test_the_operator_reaches_every_business_and_lists_them(client, talked) -> None:  # type: ignore[no-untyped-def]
    h = bearer(OPERATOR)
    listed = (await client.get("/api/businesses", headers=h)).json()
    assert [b["id"] for b in listed["businesses"]] == ["luna_hair", "sol_dental"]
    assert listed["businesses"][0]["admins"] == [{"name": "Owner", "role": "owner"},
                                                 {"name": "Front desk", "role": "staff"}]
    assert "token_sha256" not in str(listed)
    everyone = (await client.get("/api/conversations", headers=h)).json()  # every business's, newest first
    assert {r["id"] for r in everyone} == set(talked.values())
    assert [r["id"] for r in (await client.get("/api/conversations", params={"limit": 1}, headers=h)).json()] == \
        [talked["sol_dental"]]
    assert (await client.get("/api/flows", headers=h)).status_code == 400  # which business?
    assert (await client.get(f"/api/conversations/{talked['sol_dental']}", params={"business": "sol_dental"},
                             headers=h)).status_code == 200
    assert (await client.get(f"/api/conversations/{talked['luna_hair']}", headers=h)).status_code == 200
    assert (await client.get(f"/api/conversations/{talked['luna_hair']}", params={"business": "sol_dental"},
                             headers=h)).status_code == 404
    assert (await client.get("/api/conversations", params={"business": "nope"}, headers=h)).status_code == 404


async def test_a_wrong_token_is_a_401(client) -> None:  # type: ignore[no-untyped-def]
    assert (await client.get("/api/conversations", headers=bearer("not-a-token"))).status_code == 401
    assert (await client.get("/api/conversations")).status_code == 401


async def test_every_audit_entry_names_the_business_and_the_admin(client, talked) -> None:  # type: ignore[no-untyped-def]
    await client.get("/api/conversations", headers=bearer(TOKENS["luna_staff"]))
    await client.get(f"/api/conversations/{talked['sol_dental']}", headers=bearer(TOKENS["luna_staff"]))
    await client.get("/api/flows", headers=bearer(TOKENS["sol_owner"]))
    luna = (await client.get("/api/audit", headers=bearer(TOKENS["luna_owner"]))).json()
    assert luna and all(e["business"] == "luna_hair" and e["admin"] for e in luna)
    assert {e["admin"] for e in luna} >= {"Front desk", "operator"}
    assert not any(e["admin"] == "Owner" and e["action"] == "GET /api/flows" for e in luna)  # sol's owner's entry
    sol = (await client.get("/api/audit", params={"business": "sol_dental"}, headers=bearer(OPERATOR))).json()
    assert all(e["business"] == "sol_dental" for e in sol)
    assert any(e["admin"] == "Owner" and e["action"] == "GET /api/flows" for e in sol)
    operator = (await client.get("/api/audit", headers=bearer(OPERATOR))).json()
    assert all(e["business"] == "*" and e["admin"] == "operator" for e in operator)


FLOW_YAML = (b"flow: intake\ntitle: Edited\nstart: hi\nstates:\n  hi:\n    say: \"Hello again\"\n    end: done\n")


def _routes(conv: str) -> list[tuple[str, str, dict[str, object]]]:
    """Every admin route with a request that succeeds for an owner of the business."""
    contact = "%2B34600111222"
    return [
        ("GET", "/api/flows", {}),
        ("GET", "/api/flows/intake", {}),
        ("POST", "/api/flows/intake/validate", {"content": FLOW_YAML}),
        ("PUT", "/api/flows/intake", {"content": FLOW_YAML}),
        ("GET", "/api/flows/intake/diagram", {}),
        ("GET", "/api/flows/intake/analytics", {}),
        ("GET", "/api/conversations", {}),
        ("GET", f"/api/conversations/{conv}", {}),
        ("POST", "/api/conversations", {"json": {"contact": "+34600999888", "flow": "intake"}}),
        ("GET", f"/api/contacts/{contact}", {}),
        ("DELETE", f"/api/contacts/{contact}", {}),
        ("GET", "/api/leads", {}),
        ("GET", "/api/outbox/failed", {}),
        ("GET", "/api/audit", {}),
    ]


STAFF_READS = {("GET", "/api/flows"), ("GET", "/api/flows/intake/analytics"), ("GET", "/api/conversations"),
               ("GET", "/api/leads")}


@pytest.mark.parametrize("business,other", [("luna_hair", "sol_dental"), ("sol_dental", "luna_hair")])
@pytest.mark.parametrize("role", ["owner", "staff"])
async def test_the_isolation_matrix_every_admin_route_both_roles_both_businesses(  # type: ignore[no-untyped-def]
        client, talked, business, other, role) -> None:
    token = TOKENS[OWN[business][0 if role == "owner" else 1]]
    h = bearer(token)
    for method, path, kw in _routes(talked[business]):
        # another business named: a 404, whatever the route and the role
        answer = await client.request(method, path, params={"business": other}, headers=h, **kw)  # type: ignore[arg-type]
        assert answer.status_code == 404, (role, method, path, answer.status_code)
        # another business's conversation by its id: a 404
    for method in ("GET",):
        answer = await client.request(method, f"/api/conversations/{talked[other]}", headers=h)
        assert answer.status_code == 404
    for method, path, kw in _routes(talked[business]):
        answer = await client.request(method, path, headers=h, **kw)  # type: ignore[arg-type]
        allowed = role == "owner" or (method, path.split("?")[0]) in STAFF_READS or \
            (method == "GET" and path.startswith("/api/conversations/"))
        if allowed:
            assert answer.status_code < 400, (role, method, path, answer.status_code, answer.text[:200])
        else:
            assert answer.status_code == 403, (role, method, path, answer.status_code)
    # what one business's owner did never shows at the other
    other_conversations = (await client.get("/api/conversations", params={"business": other},
                                            headers=bearer(OPERATOR))).json()
    assert [r["id"] for r in other_conversations] == [talked[other]]


async def _past_booking(client, business: str) -> str:  # type: ignore[no-untyped-def]
    """A booking in the business's own calendar that started days ago (booked on a clock a week back)."""
    import time

    from integrations.calendar_base import BookArgs, FindSlotsArgs
    from orchestrator.flow.schema import Settings
    from orchestrator.plugins.connectors import CallContext

    calendar = client.app.state.businesses.get(business).runtime.connectors.get("calendar")
    number = LUNA if business == "luna_hair" else SOL
    ctx = CallContext(session_id=f"{number}:{CONTACT}", flow="intake", contact=CONTACT, timezone="Europe/Madrid",
                      language="en", now=time.time() - 7 * 86400, settings=Settings(timezone="Europe/Madrid"))
    [slot] = (await calendar.find_slots(FindSlotsArgs(count=1), ctx)).value
    made = await calendar.book(BookArgs(slot=slot), ctx)
    assert made.outcome == "ok", made
    return str(made.value["id"])


async def test_only_an_owner_marks_a_no_show_and_only_in_its_own_calendar(client) -> None:  # type: ignore[no-untyped-def]
    luna, sol = await _past_booking(client, "luna_hair"), await _past_booking(client, "sol_dental")
    owner, staff = bearer(TOKENS["luna_owner"]), bearer(TOKENS["luna_staff"])
    assert (await client.post(f"/api/bookings/{luna}/no-show", headers=staff)).status_code == 403
    assert (await client.post(f"/api/bookings/{sol}/no-show", headers=owner)).status_code == 404  # sol's booking
    assert (await client.post(f"/api/bookings/{sol}/no-show", params={"business": "sol_dental"},
                              headers=owner)).status_code == 404
    marked = await client.post(f"/api/bookings/{luna}/no-show", headers=owner)
    assert marked.status_code == 200 and marked.json()["booking"]["status"] == "no_show", marked.text
    assert (await client.post(f"/api/bookings/{luna}/no-show", headers=owner)).json() == marked.json()
    by_operator = await client.post(f"/api/bookings/{sol}/no-show", params={"business": "sol_dental"},
                                    headers=bearer(OPERATOR))
    assert by_operator.status_code == 200 and by_operator.json()["booking"]["id"] == sol
    audit = (await client.get("/api/audit", headers=owner)).json()
    marks = [(e["admin"], e["status"]) for e in audit if e["action"].startswith("POST /api/bookings/")]
    assert marks == [("Owner", 200), ("Owner", 200), ("Owner", 404), ("Owner", 404), ("Front desk", 403)]
