"""The owner's console over HTTP (docs/SPEC.md §11): sign-in, the session cookie, CSRF, escaping,
the pages' data (the admin API's), saving and rolling back. The browser tests are
test_console_browser.py."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import msgspec
from conftest import BOOK, TOKEN, Env

from integrations.calendar_base import BookArgs
from orchestrator.plugins.connectors import CallContext

ANN = "+15555550123"


async def sign_in(client: Any, token: str = TOKEN) -> Any:
    return await client.post("/console/login", data={"token": token, "next": "/console/conversations"})


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "no CSRF field on the page"
    return found.group(1)


async def test_pages_need_a_session_and_a_wrong_token_shows_no_data(client: Any, env: Env) -> None:
    await env.converse(ANN, BOOK)
    for path in ("/console/conversations", "/console/conversations/rows", "/console/flows",
                 "/console/flows/dental_booking/edit", "/console/bookings"):
        r = await client.get(path)
        assert r.status_code == 303 and r.headers["location"].startswith("/console/login"), path
    r = await client.get("/console/conversations/rows", headers={"HX-Request": "true"})
    assert r.status_code == 401 and r.headers["hx-redirect"] == "/console/login"
    r = await sign_in(client, "wrong-token")
    assert r.status_code == 401 and "console_session" not in r.headers.get("set-cookie", "")
    assert "not the admin token" in r.text and "Traceback" not in r.text and "dental_booking" not in r.text
    assert "55" not in re.sub(r"<[^>]+>", "", r.text)  # no contact number either
    r = await client.get("/console/conversations")
    assert r.status_code == 303


async def test_sign_in_sets_a_strict_httponly_cookie_and_lists_masked_conversations(client: Any, env: Env) -> None:
    await env.converse(ANN, BOOK)
    r = await sign_in(client)
    assert r.status_code == 303 and r.headers["location"] == "/console/conversations"
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "max-age=1800" in cookie
    assert "secure" not in cookie  # plain http here; https (or a https public URL) sets it
    assert TOKEN not in r.headers["set-cookie"]
    page = await client.get("/console/conversations")
    assert page.status_code == 200 and "content-security-policy" in page.headers
    assert "+1********23" in page.text and ANN not in page.text and TOKEN not in page.text
    assert 'hx-trigger="every 2s"' in page.text
    rows = await client.get("/console/conversations/rows?outcome=booked", headers={"HX-Request": "true"})
    assert rows.text.lstrip().startswith("<tbody") and "booked" in rows.text
    none = await client.get("/console/conversations/rows?outcome=nothing_like_it")
    assert "No conversations match" in none.text
    bad = await client.get("/console/conversations?date=yesterday")
    assert bad.status_code == 400 and "YYYY-MM-DD" in bad.text and "Traceback" not in bad.text


async def test_transcript_escapes_what_a_caller_wrote(client: Any, env: Env) -> None:
    await env.converse(ANN, ["hi", "<script>alert(1)</script>"])
    await sign_in(client)
    listing = await client.get("/console/conversations")
    conv = re.search(r'href="/console/conversations/([^"]+)"', listing.text)
    assert conv
    page = await client.get(f"/console/conversations/{conv.group(1)}")
    assert page.status_code == 200
    assert "<script>alert(1)</script>" not in page.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert "Caller" in page.text and "+1********23" in page.text and ANN not in page.text
    missing = await client.get("/console/conversations/nope")
    assert missing.status_code in (400, 404) and "Traceback" not in missing.text


async def test_changes_need_the_csrf_token(client: Any, env: Env) -> None:
    await sign_in(client)
    page = await client.get("/console/flows/dental_booking/edit")
    source = re.search(r'<textarea id="source"[^>]*>(.*?)</textarea>', page.text, re.S)
    assert source
    r = await client.post("/console/flows/dental_booking/check", data={"source": "flow: x"})
    assert r.status_code == 403 and "CSRF" in r.text
    r = await client.post("/console/flows/dental_booking/save", data={"source": "flow: x", "csrf": "forged"})
    assert r.status_code == 403
    r = await client.post("/console/logout", data={})
    assert r.status_code == 403


async def test_check_save_and_rollback(client: Any, env: Env) -> None:
    import html

    await sign_in(client)
    page = await client.get("/console/flows/dental_booking/edit")
    csrf = csrf_of(page.text)
    first = re.search(r'id="serving">([0-9a-f]+)<', page.text)
    assert first
    source = html.unescape(re.search(r'<textarea id="source"[^>]*>(.*?)</textarea>', page.text, re.S).group(1))  # type: ignore[union-attr]
    broken = source.replace("states:", "statez:", 1)
    hx = {"HX-Request": "true", "X-CSRF-Token": csrf}
    r = await client.post("/console/flows/dental_booking/check", data={"source": broken}, headers=hx)
    assert r.status_code == 200 and 'data-severity="error"' in r.text and "data-line=" in r.text
    r = await client.post("/console/flows/dental_booking/save", data={"source": broken}, headers=hx)
    assert r.status_code == 200 and "Not saved" in r.text
    assert (await env.runtime.catalog.latest("dental_booking")).revision == first.group(1)
    changed = source.replace("Thanks", "Thank you", 1) if "Thanks" in source else source + "\n# edited\n"
    r = await client.post("/console/flows/dental_booking/check", data={"source": changed}, headers=hx)
    assert "No problems" in r.text and 'class="d-add"' in r.text
    r = await client.post("/console/flows/dental_booking/save", data={"source": changed}, headers=hx)
    assert r.status_code == 200 and r.headers["hx-redirect"].startswith("/console/flows/dental_booking/edit?saved=")
    second = (await env.runtime.catalog.latest("dental_booking")).revision
    assert second != first.group(1)
    r = await client.post("/console/flows/dental_booking/rollback", data={"revision": first.group(1), "csrf": csrf})
    assert r.status_code == 303
    third = await env.runtime.catalog.latest("dental_booking")
    assert third.revision not in (first.group(1), second)
    restored = await env.runtime.store.get_revision(third.revision)
    assert restored is not None and restored.startswith(source.rstrip("\n"))
    assert await env.runtime.store.latest_revision("dental_booking") == third.revision  # every process serves it
    audit = await client.get("/api/audit", headers={"Authorization": f"Bearer {TOKEN}"})
    actions = [e["action"] for e in audit.json()]
    assert "POST /console/flows/{flow_id}/rollback" in actions and "POST /console/flows/{flow_id}/save" in actions


async def test_funnel_diagram_and_bookings_pages(client: Any, env: Env) -> None:
    await env.converse(ANN, BOOK)
    await sign_in(client)
    funnel = await client.get("/console/flows/dental_booking/funnel")
    assert funnel.status_code == 200 and 'id="funnel-data"' in funnel.text and "chart.umd.min.js" in funnel.text
    diagram = await client.get("/console/flows/dental_booking/diagram")
    assert diagram.status_code == 200 and 'sandbox="allow-scripts"' in diagram.text
    drawn = await client.get("/console/flows/dental_booking/diagram.html")
    assert drawn.status_code == 200 and "ask_name" in drawn.text
    assert "sha256-" in drawn.headers["content-security-policy"]
    bookings = await client.get("/console/bookings")
    assert bookings.status_code == 200 and "+1********23" in bookings.text and "upcoming" in bookings.text
    static = await client.get("/console/static/vendor/htmx.min.js")
    assert static.status_code == 200


async def test_too_many_wrong_tokens_answer_429(client: Any) -> None:
    codes = [(await sign_in(client, f"guess-{n}")).status_code for n in range(25)]
    assert codes[:20] == [401] * 20 and codes[-1] == 429
    r = await sign_in(client, "guess")
    assert "too many wrong tokens" in r.text and "console_session" not in r.headers.get("set-cookie", "")


async def test_the_cookie_is_secure_behind_https_and_expires(env: Env) -> None:
    import time

    import httpx

    from orchestrator.web.app import create_app
    from orchestrator.web.console import session

    app = create_app(env.runtime.settings, runtime=env.runtime, start_background=False)
    app.state.runtime = env.runtime
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://testserver") as c:
        r = await sign_in(c)
        assert "secure" in r.headers["set-cookie"].lower()
        value = r.cookies["console_session"]
    assert session.read(env.runtime.settings, value, time.time()) is not None
    assert session.read(env.runtime.settings, value, time.time() + session.SESSION_SECONDS + 1) is None
    forged = value[:-2] + ("AA" if not value.endswith("AA") else "BB")
    assert session.read(env.runtime.settings, forged, time.time()) is None
    ref = session.seal(env.runtime.settings, "+15555550100:+15555550123~1")
    assert "5555" not in ref and session.unseal(env.runtime.settings, ref) == "+15555550100:+15555550123~1"
    assert session.unseal(env.runtime.settings, ref[:-2] + "xx") is None


async def test_bookings_page_lists_the_whole_calendar_and_links_the_conversations(client: Any, env: Env) -> None:
    """A booking staff made in the calendar itself shows beside the one a conversation made."""
    await env.converse(ANN, BOOK)
    calendar = env.runtime.connectors.get("calendar")
    compiled = await env.runtime.catalog.latest("dental_booking")
    ctx = CallContext(session_id="", flow="", contact="+15555550177", timezone="America/New_York",
                      language="en-US", now=env.clock(), settings=compiled.settings, vars={})
    find_args = msgspec.convert({"around": "any", "count": 5}, calendar.actions["find_slots"].args)
    slots = await calendar.find_slots(find_args, ctx)
    made = await calendar.book(BookArgs(slot=slots.value[-1], title="Walk-in <b>", name="Zed Staff"), ctx)
    assert made.outcome == "ok"
    await sign_in(client)
    page = await client.get("/console/bookings")
    assert page.status_code == 200
    assert "Every booking in the calendar" in page.text
    assert "Zed Staff" in page.text and "made outside a conversation" in page.text
    assert "Walk-in &lt;b&gt;" in page.text  # escaped
    assert "+1********77" in page.text and "+15555550177" not in page.text  # masked
    assert page.text.count("/console/conversations/") >= 1  # Ann's booking links her conversation
    assert page.text.index("Zed Staff") < page.text.index("Ann Lee")  # soonest first: Zed's is today


async def test_a_live_transcript_shows_the_next_turn_and_stops_polling_at_the_end(client: Any, env: Env) -> None:
    await env.converse(ANN, ["hi", "book"])
    await sign_in(client)
    listing = await client.get("/console/conversations")
    conv = re.search(r'href="/console/conversations/([^"]+)"', listing.text)
    assert conv
    page = await client.get(f"/console/conversations/{conv.group(1)}")
    live = f'hx-get="/console/conversations/{conv.group(1)}/live" hx-trigger="every 2s"'
    assert live in page.text and "Ann Lee" not in page.text
    await env.converse(ANN, ["Ann Lee"])
    fragment = await client.get(f"/console/conversations/{conv.group(1)}/live", headers={"HX-Request": "true"})
    assert fragment.status_code == 200 and fragment.text.lstrip().startswith('<div id="conversation"')
    assert "Ann Lee" in fragment.text and live in fragment.text  # still going: still polled
    await env.converse(ANN, ["cleaning", "tomorrow at 10am", "1"])
    ended = await client.get(f"/console/conversations/{conv.group(1)}/live", headers={"HX-Request": "true"})
    assert "booked" in ended.text and "hx-trigger" not in ended.text  # over: the page stops asking
    await client.post("/console/logout", data={"csrf": csrf_of(page.text)})
    signed_out = await client.get(f"/console/conversations/{conv.group(1)}/live", headers={"HX-Request": "true"})
    assert signed_out.status_code == 401 and "Ann Lee" not in signed_out.text


async def test_an_owner_marks_a_past_booking_a_no_show_and_the_funnel_counts_it(client: Any, env: Env) -> None:
    """Ann's visit (Thu 10:00) has started: its row gets the No-show button; the click (HTMX, with
    the session's CSRF token) answers the row saying no-show; the funnel shows the count."""
    from datetime import datetime

    await env.converse(ANN, BOOK)
    await sign_in(client)
    upcoming = await client.get("/console/bookings")
    assert "upcoming" in upcoming.text and ">No-show</button>" not in upcoming.text  # not started yet
    env.clock.now = datetime.fromisoformat("2026-11-26T10:20:00-05:00").timestamp()
    page = await client.get("/console/bookings")
    found = re.search(r'hx-post="(/console/bookings/([0-9a-f]+)/no-show)"', page.text)
    assert found and ">No-show</button>" in page.text, page.text
    url, booking_id = found.group(1), found.group(2)
    forged = await client.post(url, data={"csrf": "forged"}, headers={"HX-Request": "true"})
    assert forged.status_code == 403
    row = await client.post(url, headers={"HX-Request": "true", "X-CSRF-Token": csrf_of(page.text)})
    assert row.status_code == 200 and row.text.startswith("<tr>") and '<td class="status">no-show' in row.text
    assert ">No-show</button>" not in row.text and "Ann Lee" in row.text
    again = await client.post(url, data={"csrf": csrf_of(page.text)}, follow_redirects=False)  # a plain form
    assert again.status_code == 303 and again.headers["location"] == "/console/bookings"
    assert "no-show" in (await client.get("/console/bookings")).text
    funnel = await client.get("/console/flows/dental_booking/funnel")
    assert "<dt>No-shows</dt><dd>1 (1 of the 1 booked)</dd>" in funnel.text
    entries = (await client.get("/api/audit", headers={"Authorization": f"Bearer {TOKEN}"})).json()
    assert [e["target"] for e in entries if "no-show" in e["action"]] == [f"booking:{booking_id}"] * 2


async def test_a_refused_no_show_shows_why_in_the_row(client: Any, env: Env) -> None:
    """A mark the calendar refuses (the visit has not started): HTMX gets the row with the
    reason, a plain form the error page."""
    from datetime import UTC, datetime

    await env.converse(ANN, BOOK)
    await sign_in(client)
    csrf = csrf_of((await client.get("/console/bookings")).text)
    calendar = env.runtime.connectors.get("calendar")
    day = datetime(2026, 11, 26, tzinfo=UTC)
    [ann] = await calendar.agenda((day, day + timedelta(days=1)))  # type: ignore[attr-defined]
    url = f"/console/bookings/{ann['id']}/no-show"
    row = await client.post(url, headers={"HX-Request": "true", "X-CSRF-Token": csrf})
    assert row.status_code == 200 and 'role="alert"' in row.text and "has not started yet" in row.text
    assert "Ann Lee" in row.text
    plain = await client.post(url, data={"csrf": csrf})
    assert plain.status_code == 409 and "has not started yet" in plain.text and "Traceback" not in plain.text
