"""Acceptance: booking is what the clinic pays for. Real app on Redis (own key prefix), the
embedded calendar in a private file: conflicts re-offer, failures hand off, revisions pin."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import redis.asyncio as aioredis
from fakes.graph import FakeGraph
from fakes.signing import CLINIC, sms_form
from fakes.twilio import FakeTwilio
from litestar import Litestar
from litestar.testing import AsyncTestClient

from orchestrator.settings import AppSettings
from orchestrator.web.app import create_app

from .conftest import ADMIN_TOKEN, conversation_of, make_settings, sms_texts, twilio_post

pytestmark = pytest.mark.redis
ANN, BOB = "+15555550111", "+15555550122"


@pytest.fixture
def redis_settings(flows_copy: Path, fake_twilio: FakeTwilio, graph: FakeGraph, redis_prefix: str) -> AppSettings:
    return make_settings(flows_copy, fake_twilio, graph, redis_url="redis://127.0.0.1:6379/0",
                         key_prefix=redis_prefix)


@pytest.fixture
async def rclient(redis_settings: AppSettings) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(create_app(redis_settings)) as c:
        yield c


async def say(client: AsyncTestClient[Litestar], who: str, body: str) -> str:
    response = await twilio_post(client, "/webhooks/twilio/sms", sms_form(body, sid="SM" + uuid.uuid4().hex,
                                                                         sender=who))
    return "\n".join(sms_texts(response))


async def to_offer(client: AsyncTestClient[Litestar], who: str, name: str) -> str:
    for line in ("hi", "book", name, "cleaning"):
        await say(client, who, line)
    return await say(client, who, "tomorrow at 10am")


async def test_sms_booking_end_to_end_on_redis_with_hash_tagged_keys(
    rclient: AsyncTestClient[Litestar], redis_prefix: str,
) -> None:
    offer = await to_offer(rclient, ANN, "Ann Lee")
    assert "1) Thu 26 Nov, 10:00 AM" in offer or "1) " in offer
    done = await say(rclient, ANN, "1")
    assert "You're booked for" in done and "Ann Lee" in done
    conv = await conversation_of(rclient, ANN)
    assert conv["conversation"]["outcome"] == "booked"
    summary = conv["summary"]  # what the CRM and the front desk read
    assert (summary["name"], summary["reason"], summary["outcome"]) == ("Ann Lee", "cleaning", "booked")
    tomorrow = (datetime.now(ZoneInfo("America/New_York")) + timedelta(days=1)).date().isoformat()
    assert summary["wanted"].startswith(f"{tomorrow}T10:00") and summary["booking"]["label"] in done
    assert any(c["action"].startswith("calendar.book") for c in conv["connector_calls"])
    r = aioredis.Redis.from_url("redis://127.0.0.1:6379/0")
    try:
        keys = [k.decode() async for k in r.scan_iter(match=f"{redis_prefix}*")]
    finally:
        await r.aclose()
    # delivery statuses are single keys by message id; everything else of the conversation shares a tag
    session_keys = [k for k in keys if f"{CLINIC}:{ANN}" in k and not k.startswith(f"{redis_prefix}:st:")]
    assert session_keys, keys
    assert all(f"{{{CLINIC}:{ANN}}}" in k for k in session_keys), session_keys  # one cluster slot


async def test_two_contacts_racing_for_one_slot_one_books_the_other_is_reoffered(
    rclient: AsyncTestClient[Litestar],
) -> None:
    offer_a = await to_offer(rclient, ANN, "Ann Lee")
    offer_b = await to_offer(rclient, BOB, "Bob Stone")
    first_slot = offer_a.split("1) ", 1)[1].split("\n", 1)[0]
    assert f"1) {first_slot}" in offer_b  # both were offered the same slot
    assert "You're booked for" in await say(rclient, ANN, "1")
    lost = await say(rclient, BOB, "1")
    assert "that slot was just taken" in lost
    assert f"1) {first_slot}\n" not in lost + "\n" and f") {first_slot}\n" not in lost + "\n"
    assert "You're booked for" in await say(rclient, BOB, "1")
    a, b = await conversation_of(rclient, ANN), await conversation_of(rclient, BOB)
    assert a["conversation"]["outcome"] == b["conversation"]["outcome"] == "booked"
    assert a["summary"]["booking"]["start"] != b["summary"]["booking"]["start"]


async def test_calendar_failure_takes_the_error_route_to_a_person(
    flows_copy: Path, fake_twilio: FakeTwilio, graph: FakeGraph, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    monkeypatch.setenv("ORCHESTRATOR_CALENDAR_DB", str(blocker / "calendar.sqlite3"))  # cannot be opened
    async with AsyncTestClient(create_app(make_settings(flows_copy, fake_twilio, graph))) as client:
        reply = await to_offer(client, ANN, "Ann Lee")
        assert "can't reach our calendar" in reply
        assert "passed your details to our front desk" in reply
        conv = await conversation_of(client, ANN)
    assert conv["conversation"]["outcome"] == "handed_off"
    assert any(c.get("outcome") == "error" for c in conv["connector_calls"]), conv["connector_calls"]


async def test_uploaded_revision_serves_new_conversations_while_old_ones_finish_on_theirs(
    rclient: AsyncTestClient[Litestar], flows_copy: Path,
) -> None:
    await say(rclient, ANN, "hi")
    assert await say(rclient, ANN, "book") == "Great! What's your name?"
    new_source = (flows_copy / "dental_booking.yaml").read_text().replace(
        "Great! What's your name?", "Lovely! Who is the appointment for?").replace(
        'What is the visit for?"', 'What brings you in?"')
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/yaml"}
    put = await rclient.put("/api/flows/dental_booking", content=new_source.encode(), headers=headers)
    assert put.status_code in (200, 201), put.text
    # the old conversation keeps its revision's wording
    assert "What is the visit for?" in await say(rclient, ANN, "Ann Lee")
    # a new conversation gets the new revision
    await say(rclient, BOB, "hi")
    assert await say(rclient, BOB, "book") == "Lovely! Who is the appointment for?"
    flows = (await rclient.get("/api/flows", headers=headers)).json()
    assert "dental_booking" in str(flows)


async def test_invalid_upload_is_422_with_validation_errors_and_nothing_changes(
    rclient: AsyncTestClient[Litestar], flows_copy: Path,
) -> None:
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/yaml"}
    bad = (flows_copy / "dental_booking.yaml").read_text().replace("next: ask_reason", "next: ask_reasn", 1)
    response = await rclient.put("/api/flows/dental_booking", content=bad.encode(), headers=headers)
    assert response.status_code == 422
    assert "ask_reasn" in response.text and "did you mean 'ask_reason'" in response.text
    await say(rclient, ANN, "hi")
    await say(rclient, ANN, "book")
    assert "What is the visit for?" in await say(rclient, ANN, "Ann Lee")
