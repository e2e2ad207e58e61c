"""Data per business: opt-outs, erasure, exports, limits."""

from __future__ import annotations

import asyncio
from pathlib import Path

from .conftest import CONTACT, LUNA, OPERATOR, SOL, TOKENS, bearer, make_settings, sms, write_business


async def test_a_stop_to_one_business_is_not_a_stop_to_another(client) -> None:  # type: ignore[no-untyped-def]
    await sms(client, "hi", to=LUNA)
    await sms(client, "hi", to=SOL)
    stop = await sms(client, "STOP", to=LUNA)
    assert "unsubscribed" in stop.text
    assert "Welcome to" not in (await sms(client, "hello again", to=LUNA)).text  # nothing more from Luna
    assert "Thanks Bea, Sol Dental" in (await sms(client, "Bea", to=SOL)).text  # Sol goes on
    luna = (await client.get(f"/api/contacts/{CONTACT}", headers=bearer(TOKENS["luna_owner"]))).json()
    sol = (await client.get(f"/api/contacts/{CONTACT}", headers=bearer(TOKENS["sol_owner"]))).json()
    assert luna["opted_out"] is True and sol["opted_out"] is False


async def test_erasing_a_contact_at_one_business_leaves_its_data_at_another(client) -> None:  # type: ignore[no-untyped-def]
    for to in (LUNA, SOL):
        await sms(client, "hi", to=to)
        await sms(client, "Ana", to=to)
    erased = await client.delete(f"/api/contacts/{CONTACT}", headers=bearer(TOKENS["luna_owner"]))
    assert erased.status_code == 200 and erased.json()["removed"] > 0
    luna = (await client.get(f"/api/contacts/{CONTACT}", headers=bearer(TOKENS["luna_owner"]))).json()
    sol = (await client.get(f"/api/contacts/{CONTACT}", headers=bearer(TOKENS["sol_owner"]))).json()
    assert not luna["sessions"] and not luna["conversations"]
    assert sol["sessions"] and len(sol["conversations"]) == 1
    assert (await client.get("/api/conversations", params={"business": "sol_dental"},
                             headers=bearer(OPERATOR))).json()


async def test_each_business_has_its_own_calendar_and_crm_files(client, businesses_dir: Path) -> None:  # type: ignore[no-untyped-def]
    registry = client.app.state.businesses
    luna, sol = registry.get("luna_hair"), registry.get("sol_dental")
    assert luna.settings.environ["ORCHESTRATOR_CALENDAR_DB"] != sol.settings.environ["ORCHESTRATOR_CALENDAR_DB"]
    assert luna.settings.environ["ORCHESTRATOR_CALENDAR_DB"].startswith(str(businesses_dir / "luna_hair"))
    assert luna.connectors.get("calendar") is not sol.connectors.get("calendar")
    assert luna.settings.retention_days == 30
    assert luna.runtime.store is not sol.runtime.store


async def test_past_the_daily_limit_new_contacts_are_refused_politely_and_staff_told_once(
        tmp_path: Path, twilio_fake, graph_fake) -> None:  # type: ignore[no-untyped-def]
    from litestar.testing import AsyncTestClient

    from orchestrator.web.app import create_app

    root = tmp_path / "limited"
    write_business(root, "luna_hair", LUNA, "109876543210001", "LUNA", "Luna Hair",
                   extra='limits: {conversations_per_day: 2}\nstaff_number: "+34600999000"\n')
    write_business(root, "sol_dental", SOL, "109876543210002", "SOL", "Sol Dental")
    async with AsyncTestClient(create_app(make_settings(root, twilio_fake, graph_fake))) as client:
        for n in range(2):
            assert "Welcome to Luna Hair" in (await sms(client, "hi", to=LUNA, sender=f"+3460000000{n}")).text
        for n in range(2, 5):
            refused = await sms(client, "hi", to=LUNA, sender=f"+3460000000{n}")
            assert refused.status_code == 200 and "cannot take more conversations today" in refused.text
        # a conversation already running goes on; the other business is not limited
        assert "Thanks Ana" in (await sms(client, "Ana", to=LUNA, sender="+34600000000")).text
        for n in range(5):
            assert "Welcome to Sol Dental" in (await sms(client, "hi", to=SOL, sender=f"+3461000000{n}")).text
        for _ in range(50):
            if twilio_fake.messages():
                break
            await asyncio.sleep(0.02)
        told = [m for m in twilio_fake.messages() if m["To"] == ["+34600999000"]]
        assert len(told) == 1 and "limit of 2" in told[0]["Body"][0]
        assert told[0]["From"] == [LUNA]


async def test_past_the_limit_the_flow_defaults_limit_state_opens_the_conversation(
        tmp_path: Path, twilio_fake, graph_fake) -> None:  # type: ignore[no-untyped-def]
    from litestar.testing import AsyncTestClient

    from orchestrator.web.app import create_app

    root = tmp_path / "limited"
    folder = write_business(root, "luna_hair", LUNA, "109876543210001", "LUNA", "Luna Hair",
                            extra="limits: {conversations_per_day: 1}\n")
    flow = (folder / "flows" / "intake.yaml").read_text()
    flow = flow.replace("states:\n", "defaults: {limit: busy}\nstates:\n  busy:\n"
                        "    ask: \"We're fully booked today. Leave your name and we'll call you.\"\n"
                        "    input: name\n    save: who\n    next: bye\n")
    (folder / "flows" / "intake.yaml").write_text(flow)
    async with AsyncTestClient(create_app(make_settings(root, twilio_fake, graph_fake))) as client:
        assert "Welcome to Luna Hair" in (await sms(client, "hi", to=LUNA, sender="+34600000001")).text
        busy = await sms(client, "hi", to=LUNA, sender="+34600000002")
        assert "fully booked today" in busy.text
        assert "Thanks Eva, Luna Hair" in (await sms(client, "Eva", to=LUNA, sender="+34600000002")).text


async def test_concurrent_calls_past_the_limit_hear_busy_and_a_finished_call_frees_its_place(
        tmp_path: Path, twilio_fake, graph_fake) -> None:  # type: ignore[no-untyped-def]
    from urllib.parse import urlencode

    from fakes.signing import PUBLIC_URL, twilio_signature, voice_form
    from litestar.testing import AsyncTestClient

    from orchestrator.web.app import create_app

    from .conftest import ACCOUNTS

    root = tmp_path / "calls"
    write_business(root, "luna_hair", LUNA, "109876543210001", "LUNA", "Luna Hair",
                   extra="limits: {concurrent_calls: 1}\n")
    write_business(root, "sol_dental", SOL, "109876543210002", "SOL", "Sol Dental")

    async def call(client, sid: str, to: str = LUNA, path: str = "/webhooks/twilio/voice",  # type: ignore[no-untyped-def]
                   status: str = "ringing") -> str:
        form = [(k, v) for k, v in voice_form(call_sid=sid, status=status) if k not in ("To", "Called")]
        form += [("To", to), ("Called", to)]
        token = ACCOUNTS["luna_hair" if to == LUNA else "sol_dental"][1]
        answer = await client.post(path, content=urlencode(form).encode(), headers={
            "X-Twilio-Signature": twilio_signature(token, f"{PUBLIC_URL}{path}", form),
            "Content-Type": "application/x-www-form-urlencoded"})
        assert answer.status_code == 200, answer.text
        return str(answer.text)

    async with AsyncTestClient(create_app(make_settings(root, twilio_fake, graph_fake))) as client:
        first = await call(client, "CA" + "1" * 32)
        assert "Welcome to Luna Hair" in first
        assert "Welcome to Luna Hair" in await call(client, "CA" + "1" * 32)  # Twilio's retry of the same call
        busy = await call(client, "CA" + "2" * 32)
        assert "all our lines are busy" in busy and "<Hangup" in busy and "Welcome" not in busy
        assert "Welcome to Sol Dental" in await call(client, "CA" + "3" * 32, to=SOL)  # not limited
        await call(client, "CA" + "1" * 32, path="/webhooks/twilio/voice/status", status="completed")
        assert "Welcome to Luna Hair" in await call(client, "CA" + "4" * 32)
