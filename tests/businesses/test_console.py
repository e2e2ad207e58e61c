"""The console with many businesses: a business admin sees only its business, staff cannot edit,
the operator picks a business."""

from __future__ import annotations

import re
from typing import Any

from .conftest import LUNA, OPERATOR, SOL, TOKENS, sms


async def sign_in(client: Any, token: str) -> Any:
    return await client.post("/console/login", data={"token": token, "next": "/console/conversations"},
                             follow_redirects=False)


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found
    return found.group(1)


async def _talk(client: Any) -> None:
    await sms(client, "hi", to=LUNA, sender="+34600111001")
    await sms(client, "hi", to=SOL, sender="+34600222002")


async def test_a_business_admin_sees_only_its_conversations(client: Any) -> None:
    await _talk(client)
    r = await sign_in(client, TOKENS["luna_owner"])
    assert r.status_code == 303 and r.headers["location"] == "/console/conversations"
    page = await client.get("/console/conversations")
    assert page.status_code == 200 and "+3********01" in page.text and "+3********02" not in page.text
    assert "luna_hair" in page.text
    assert (await client.get("/console/businesses")).status_code == 404
    assert (await client.get("/console/flows/intake/edit")).status_code == 200  # an owner edits


async def test_staff_read_but_cannot_edit(client: Any) -> None:
    await _talk(client)
    await sign_in(client, TOKENS["sol_staff"])
    page = await client.get("/console/conversations")
    assert page.status_code == 200 and "+3********02" in page.text and "+3********01" not in page.text
    assert (await client.get("/console/bookings")).status_code == 200
    assert (await client.get("/console/flows/intake/funnel")).status_code == 200
    assert (await client.get("/console/flows/intake/edit")).status_code == 403
    edit = await client.post("/console/flows/intake/save", data={"source": "x", "csrf": csrf_of(page.text)})
    assert edit.status_code == 403


async def test_the_operator_picks_a_business(client: Any) -> None:
    await _talk(client)
    r = await sign_in(client, OPERATOR)
    assert r.status_code == 303 and r.headers["location"] == "/console/businesses"
    unpicked = await client.get("/console/conversations", follow_redirects=False)
    assert unpicked.headers.get("location") == "/console/businesses"
    picker = await client.get("/console/businesses")
    assert picker.status_code == 200 and "Luna Hair" in picker.text and "Sol Dental" in picker.text
    chosen = await client.post("/console/businesses", data={"business": "sol_dental", "csrf": csrf_of(picker.text)},
                               follow_redirects=False)
    assert chosen.status_code == 303
    page = await client.get("/console/conversations")
    assert "+3********02" in page.text and "+3********01" not in page.text


async def test_a_wrong_token_signs_nobody_in(client: Any) -> None:
    r = await sign_in(client, "nope")
    assert r.status_code == 401 and "console_session" not in r.headers.get("set-cookie", "")


async def test_staff_see_bookings_without_the_no_show_button_and_cannot_post_it(client: Any) -> None:
    from .test_admin import _past_booking

    booking = await _past_booking(client, "sol_dental")
    await sign_in(client, TOKENS["sol_staff"])
    page = await client.get("/console/bookings")
    assert page.status_code == 200 and "past" in page.text and ">No-show</button>" not in page.text
    refused = await client.post(f"/console/bookings/{booking}/no-show", data={"csrf": csrf_of(page.text)})
    assert refused.status_code == 403
    await client.post("/console/logout", data={"csrf": csrf_of(page.text)})
    await sign_in(client, TOKENS["sol_owner"])
    page = await client.get("/console/bookings")
    assert f'hx-post="/console/bookings/{booking}/no-show"' in page.text
    marked = await client.post(f"/console/bookings/{booking}/no-show",
                               headers={"HX-Request": "true", "X-CSRF-Token": csrf_of(page.text)})
    assert marked.status_code == 200 and "no-show" in marked.text
    await client.post("/console/logout", data={"csrf": csrf_of(page.text)})
    await sign_in(client, TOKENS["luna_owner"])  # another business's booking: not in luna's calendar
    page = await client.get("/console/bookings")
    other = await client.post(f"/console/bookings/{booking}/no-show", data={"csrf": csrf_of(page.text)})
    assert other.status_code == 404
