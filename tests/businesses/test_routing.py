"""Webhooks of two businesses on one server: routed by the number called, verified with the
owning business's own credentials, answered from its own flows, sent with its own account."""

from __future__ import annotations

import asyncio
import logging

from .conftest import ACCOUNTS, CONTACT, LUNA, LUNA_WA, SOL, SOL_WA, WA, sms, whatsapp


async def test_each_number_reaches_its_own_business(client) -> None:  # type: ignore[no-untyped-def]
    luna = await sms(client, "hi", to=LUNA)
    sol = await sms(client, "hi", to=SOL)
    assert luna.status_code == 200 and "Welcome to Luna Hair" in luna.text
    assert sol.status_code == 200 and "Welcome to Sol Dental" in sol.text
    # the same contact holds one conversation at each business, neither seeing the other's
    assert "Thanks Ana, Luna Hair" in (await sms(client, "Ana", to=LUNA)).text
    assert "Welcome to Sol Dental" not in (await sms(client, "Bea", to=SOL)).text


async def test_another_business_signature_is_a_403(client) -> None:  # type: ignore[no-untyped-def]
    forged = await sms(client, "hi", to=LUNA, token=ACCOUNTS["sol_dental"][1])
    assert forged.status_code == 403
    wa = await whatsapp(client, "hi", phone_id=LUNA_WA, secret=WA["sol_dental"][1])
    assert wa.status_code == 403


async def test_an_unknown_number_is_a_404_with_a_log_line(client, caplog) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.WARNING)
    answer = await sms(client, "hi", to="+34919999999", token=ACCOUNTS["luna_hair"][1])
    assert answer.status_code == 404
    assert any("no business serves" in r.getMessage() for r in caplog.records)
    wa = await whatsapp(client, "hi", phone_id="100000000000009", secret=WA["luna_hair"][1])
    assert wa.status_code == 404


async def test_whatsapp_replies_go_out_with_the_business_token_and_number(client, graph_fake) -> None:  # type: ignore[no-untyped-def]
    assert (await whatsapp(client, "hi", phone_id=SOL_WA, secret=WA["sol_dental"][1])).status_code == 200
    for _ in range(100):
        if graph_fake.sent():
            break
        await asyncio.sleep(0.05)
    sent = [r for r in graph_fake.requests if r.method == "POST"]
    assert sent, "no WhatsApp send"
    assert all(r.headers["authorization"] == f"Bearer {WA['sol_dental'][0]}" for r in sent)
    assert all(f"/{SOL_WA}/messages" in r.path for r in sent)
    assert "Sol Dental" in str(sent[0].json())


async def test_whatsapp_handshake_answers_the_business_whose_verify_token_it_is(client) -> None:  # type: ignore[no-untyped-def]
    for verify in (WA["luna_hair"][2], WA["sol_dental"][2]):
        ok = await client.get("/webhooks/whatsapp", params={"hub.mode": "subscribe", "hub.verify_token": verify,
                                                            "hub.challenge": "42"})
        assert ok.status_code == 200 and ok.text == "42"
    bad = await client.get("/webhooks/whatsapp", params={"hub.mode": "subscribe", "hub.verify_token": "x",
                                                         "hub.challenge": "42"})
    assert bad.status_code == 403


async def test_health_lists_the_businesses(client) -> None:  # type: ignore[no-untyped-def]
    report = (await client.get("/health")).json()
    assert report["status"] == "ok" and report["businesses"] == ["luna_hair", "sol_dental"]


async def test_sessions_are_kept_apart(client) -> None:  # type: ignore[no-untyped-def]
    from .conftest import TOKENS, bearer

    await sms(client, "hi", to=LUNA)
    luna = (await client.get(f"/api/contacts/{CONTACT}", headers=bearer(TOKENS["luna_owner"]))).json()
    sol = (await client.get(f"/api/contacts/{CONTACT}", headers=bearer(TOKENS["sol_owner"]))).json()
    assert list(luna["sessions"]) == [f"{LUNA}:{CONTACT}"] and not sol["sessions"]


async def test_an_outbound_start_goes_out_with_the_business_account_and_number(client, twilio_fake) -> None:  # type: ignore[no-untyped-def]
    from .conftest import TOKENS, bearer

    started = await client.post("/api/conversations", json={"contact": CONTACT, "flow": "intake"},
                                headers=bearer(TOKENS["sol_owner"]))
    assert started.status_code == 201, started.text
    for _ in range(100):
        if twilio_fake.messages():
            break
        await asyncio.sleep(0.05)
    [sent] = [r for r in twilio_fake.requests if r.method == "POST"]
    assert f"/Accounts/{ACCOUNTS['sol_dental'][0]}/Messages.json" in sent.path
    form = sent.form()
    assert form["From"] == [SOL] and form["To"] == [CONTACT] and "Welcome to Sol Dental" in form["Body"][0]


async def test_a_callback_naming_no_number_goes_to_the_business_of_its_account(client) -> None:  # type: ignore[no-untyped-def]
    from urllib.parse import urlencode

    from fakes.signing import PUBLIC_URL, twilio_signature

    form = [("AccountSid", ACCOUNTS["sol_dental"][0]), ("CallSid", "CA" + "7" * 32), ("RecordingSid", "RE1"),
            ("RecordingStatus", "in-progress")]
    path = "/webhooks/twilio/voice/recording"

    async def post(token: str) -> int:
        answer = await client.post(path, content=urlencode(form).encode(), headers={
            "X-Twilio-Signature": twilio_signature(token, f"{PUBLIC_URL}{path}", form),
            "Content-Type": "application/x-www-form-urlencoded"})
        return int(answer.status_code)

    assert await post(ACCOUNTS["sol_dental"][1]) == 200
    assert await post(ACCOUNTS["luna_hair"][1]) == 403


async def test_a_missed_call_is_texted_back_from_the_business_number_and_account(
        tmp_path, twilio_fake, graph_fake) -> None:  # type: ignore[no-untyped-def]
    import shutil
    from pathlib import Path
    from urllib.parse import urlencode

    from fakes.signing import PUBLIC_URL, twilio_signature, voice_form
    from litestar.testing import AsyncTestClient

    from orchestrator.web.app import create_app

    from .conftest import make_settings, write_business

    root = tmp_path / "missed"
    for biz, number, wa, prefix, title in (("luna_hair", LUNA, LUNA_WA, "LUNA", "Luna Hair"),
                                          ("sol_dental", SOL, SOL_WA, "SOL", "Sol Dental")):
        folder = write_business(root, biz, number, wa, prefix, title)
        shutil.copy(Path(__file__).resolve().parents[2] / "flows" / "missed_call_textback.yaml", folder / "flows")
    async with AsyncTestClient(create_app(make_settings(root, twilio_fake, graph_fake))) as client:
        path = "/webhooks/twilio/voice/status"
        form = [(k, v) for k, v in voice_form(call_sid="CA" + "9" * 32, status="no-answer")
                if k not in ("To", "Called", "From", "Caller")]
        form += [("To", SOL), ("Called", SOL), ("From", CONTACT), ("Caller", CONTACT)]
        answer = await client.post(path, content=urlencode(form).encode(), headers={
            "X-Twilio-Signature": twilio_signature(ACCOUNTS["sol_dental"][1], f"{PUBLIC_URL}{path}", form),
            "Content-Type": "application/x-www-form-urlencoded"})
        assert answer.status_code == 200
        for _ in range(100):
            if twilio_fake.messages():
                break
            await asyncio.sleep(0.05)
        [sent] = [r for r in twilio_fake.requests if r.method == "POST"]
        assert f"/Accounts/{ACCOUNTS['sol_dental'][0]}/" in sent.path
        assert sent.form()["From"] == [SOL] and sent.form()["To"] == [CONTACT]
