"""Acceptance: the operator runs it. Real `orchestrator serve` processes on Redis (own key
prefix) where it matters; the admin API, health and metrics through the app otherwise."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from fakes.graph import FakeGraph
from fakes.signing import CALLER, sms_form, twilio_signature
from fakes.twilio import ACCOUNT_SID, AUTH_TOKEN, FakeTwilio
from litestar import Litestar
from litestar.testing import AsyncTestClient
from ports import free_port

from orchestrator.web.app import create_app

from .conftest import ADMIN_TOKEN, FLOWS, ROOT, admin_get, make_settings, sms_texts, twilio_post

CLINIC_NO = "+15555550100"
SERVE_ADMIN = "adm-SECRET-7f3a9c21"
CONTACT = "+15555550177"


class Server:
    """`orchestrator serve` in its own process group; stopped by pid."""

    def __init__(self, env: dict[str, str], workdir: Path, workers: int = 1) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = workdir / f"serve-{self.port}.log"
        self.proc = subprocess.Popen(
            [str(ROOT / ".venv" / "bin" / "orchestrator"), "serve", "--port", str(self.port),
             "--workers", str(workers)],
            env={**os.environ, **env}, cwd=ROOT, stdout=self.log.open("w"), stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{self.base}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except (OSError, urllib.error.URLError):
                pass
            assert self.proc.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, "server did not start: " + self.log.read_text()
            time.sleep(0.1)

    def sms(self, body: str, sender: str = CONTACT) -> tuple[int, str]:
        url = f"{self.base}/webhooks/twilio/sms"
        form = sms_form(body, sid="SM" + uuid.uuid4().hex, sender=sender, to=CLINIC_NO)
        req = urllib.request.Request(url, data=urlencode(form).encode(), headers={
            "X-Twilio-Signature": twilio_signature(AUTH_TOKEN, url, form),
            "Content-Type": "application/x-www-form-urlencoded"})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.base + path, timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def kill(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(15)


@pytest.fixture
def serve_env(tmp_path: Path, redis_prefix: str) -> Iterator[dict[str, str]]:
    with FakeTwilio() as twilio:
        yield {
            "ORCHESTRATOR_REDIS_URL": "redis://127.0.0.1:6379/0", "ORCHESTRATOR_KEY_PREFIX": redis_prefix,
            # the tests sign the URL they call (127.0.0.1:port): the operator's opt-in to that
            "ORCHESTRATOR_PUBLIC_URL": "", "ORCHESTRATOR_TRUST_PROXY_HEADERS": "1",
            "ORCHESTRATOR_ADMIN_TOKEN": SERVE_ADMIN,
            "ORCHESTRATOR_FLOWS_DIR": str(FLOWS), "ORCHESTRATOR_DEFAULT_FLOW": "dental_booking",
            "TWILIO_ACCOUNT_SID": ACCOUNT_SID, "TWILIO_AUTH_TOKEN": AUTH_TOKEN, "TWILIO_FROM_NUMBER": CLINIC_NO,
            "TWILIO_API_BASE": twilio.url, "ORCHESTRATOR_CALENDAR_DB": str(tmp_path / "calendar.sqlite3"),
            "ORCHESTRATOR_RELOAD_SECONDS": "0", "ORCHESTRATOR_LOG_LEVEL": "DEBUG",
        }


def texts(body: str) -> str:
    return " ".join(re.findall(r"<Message>(.*?)</Message>", body, re.S))


BOOKING = ["hi", "book", "Maria Lopez", "cleaning", "tomorrow at 10am", "1"]


@pytest.mark.redis
def test_serve_with_two_workers_books_and_logs_json_without_phones_names_or_secrets(
    serve_env: dict[str, str], tmp_path: Path,
) -> None:
    server = Server(serve_env, tmp_path, workers=2)
    try:
        answers = []
        for line in BOOKING:
            status, body = server.sms(line)
            assert status == 200, body
            answers.append(texts(body))
        assert "You're booked for" in answers[-1] and "Maria Lopez" in answers[-1]
        status, health = server.get("/health")
        assert status == 200 and json.loads(health)["store"] == "ok"
        status, metrics = server.get("/metrics")
        assert status == 200 and "orchestrator_turns_total" in metrics
        assert "orchestrator_turn_seconds_bucket" in metrics
        time.sleep(0.5)
    finally:
        server.kill()
    log = server.log.read_text()
    lines = [ln for ln in log.splitlines() if ln.strip()]
    assert lines, "no log lines at all"
    records = [json.loads(ln) for ln in lines]  # every line is one JSON object
    assert any(r.get("cid") for r in records), "turn log lines carry a correlation id"
    digits = re.sub(r"\D", "", CONTACT)
    for secret in (digits, CONTACT[-7:], "Maria", SERVE_ADMIN, AUTH_TOKEN):
        assert secret not in log, f"{secret!r} leaked into the logs"


def test_serve_with_several_workers_and_no_redis_refuses_to_start_naming_the_key(
    serve_env: dict[str, str], tmp_path: Path,
) -> None:
    env = {k: v for k, v in {**os.environ, **serve_env}.items() if k != "ORCHESTRATOR_REDIS_URL"}
    done = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "orchestrator"), "serve", "--port", str(free_port()), "--workers", "2"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode != 0
    assert "ORCHESTRATOR_REDIS_URL" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


def test_serve_with_one_worker_and_no_redis_still_answers(serve_env: dict[str, str], tmp_path: Path) -> None:
    env = {k: v for k, v in serve_env.items() if k != "ORCHESTRATOR_REDIS_URL"}
    saved = os.environ.pop("ORCHESTRATOR_REDIS_URL", None)
    try:
        server = Server(env, tmp_path, workers=1)
    finally:
        if saved is not None:
            os.environ["ORCHESTRATOR_REDIS_URL"] = saved
    try:
        assert "1) Book a visit" in texts(server.sms("hi")[1])
        assert texts(server.sms("book")[1]) == "Great! What's your name?"
    finally:
        server.kill()


@pytest.mark.redis
def test_a_conversation_continues_on_another_process_after_kill_9(
    serve_env: dict[str, str], tmp_path: Path,
) -> None:
    a = Server(serve_env, tmp_path)
    b = Server(serve_env, tmp_path)
    try:
        assert "1) Book a visit" in texts(a.sms("hi")[1])
        assert texts(b.sms("book")[1]) == "Great! What's your name?"  # the other process continues it
        a.kill(signal.SIGKILL)
        assert "What is the visit for?" in texts(b.sms("Maria Lopez")[1])
        c = Server(serve_env, tmp_path)
        try:
            assert "When would you like to come in" in texts(c.sms("cleaning")[1])
        finally:
            c.kill()
    finally:
        a.kill()
        b.kill()


class PrivateRedis:
    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(workdir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import redis

        deadline = time.monotonic() + 10
        while True:
            try:
                if redis.Redis(port=self.port).ping():
                    break
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "private redis-server did not start"
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.mark.redis
async def test_redis_down_mid_conversation_answers_503_never_500_and_continues_after(
    tmp_path: Path, fake_twilio: FakeTwilio, graph: FakeGraph, flows_copy: Path,
) -> None:
    """Redis restarted mid-conversation (it keeps its data here: a replica or AOF would)."""
    rdb = PrivateRedis(tmp_path)
    port = rdb.port
    settings = make_settings(flows_copy, fake_twilio, graph, redis_url=f"redis://127.0.0.1:{port}/0",
                             redis_timeout_seconds=0.3)
    try:
        async with AsyncTestClient(create_app(settings)) as client:
            assert (await sms_turns(client, "hi", "book")) [-1] == "Great! What's your name?"
            import redis

            redis.Redis(port=port).save()
            rdb.stop()
            down = await twilio_post(client, "/webhooks/twilio/sms", sms_form("Maria Lopez", sid="SM" + "d" * 32))
            assert down.status_code == 503
            assert (await client.get("/health")).status_code == 503
            rdb = PrivateRedis(tmp_path, port)  # back, with the data it saved
            again = await twilio_post(client, "/webhooks/twilio/sms", sms_form("Maria Lopez", sid="SM" + "d" * 32))
            assert "Thanks, Maria Lopez. What is the visit for?" in " ".join(sms_texts(again))
            assert (await client.get("/health")).status_code == 200
    finally:
        rdb.stop()


async def test_admin_api_requires_the_bearer_token(client: AsyncTestClient[Litestar]) -> None:
    assert (await client.get("/api/flows")).status_code == 401
    wrong = await client.get("/api/flows", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    ok = await client.get("/api/flows", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert ok.status_code == 200 and "dental_booking" in ok.text


async def test_every_admin_action_is_audited(client: AsyncTestClient[Litestar]) -> None:
    await admin_get(client, "/api/flows")
    await client.delete(f"/api/contacts/{CALLER}", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    audit = await admin_get(client, "/api/audit")
    text = json.dumps(audit)
    assert "/api/flows" in text or "flows" in text
    assert "contacts" in text.lower() or "erase" in text.lower()
    assert ADMIN_TOKEN not in text  # who = a fingerprint, never the token


async def sms_turns(client: AsyncTestClient[Litestar], *bodies: str, sender: str = CALLER) -> list[str]:
    out = []
    for body in bodies:
        out += sms_texts(await twilio_post(client, "/webhooks/twilio/sms",
                                           sms_form(body, sid="SM" + uuid.uuid4().hex, sender=sender)))
    return out


async def test_contact_export_and_erasure_keep_the_opt_out(client: AsyncTestClient[Litestar]) -> None:
    await sms_turns(client, *BOOKING)
    await sms_turns(client, "STOP")
    exported = await admin_get(client, f"/api/contacts/{CALLER}")
    assert exported["opted_out"] is True
    dump = json.dumps(exported)
    assert "Maria Lopez" in dump and exported["bookings"], "the access request shows the name and booking"
    erased = await client.delete(f"/api/contacts/{CALLER}", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert erased.status_code == 200 and erased.json()["opted_out"] is True
    after = await admin_get(client, f"/api/contacts/{CALLER}")
    assert "Maria Lopez" not in json.dumps(after)
    assert after["opted_out"] is True  # the law requires keeping the opt-out
    assert await sms_turns(client, "book") == []  # still nothing sent to them


async def test_analytics_counts_outcomes_funnel_and_channels(client: AsyncTestClient[Litestar]) -> None:
    await sms_turns(client, *BOOKING)
    await sms_turns(client, "hi", "talk", sender="+15555550188")
    await sms_turns(client, "hi", "book", sender="+15555550199")  # dropped at ask_name
    report: dict[str, Any] = await admin_get(client, "/api/flows/dental_booking/analytics")
    assert (report["started"], report["ended"], report["active"]) == (3, 2, 1), report
    assert report["outcomes"] == {"booked": 1, "handed_off": 1}
    funnel = {row["state"]: row for row in report["funnel"]}
    assert funnel["menu"]["reached"] == 3 and funnel["ask_name"]["reached"] == 2
    assert funnel["ask_name"]["waiting"] + funnel["ask_name"]["dropped"] == 1  # where the third one stopped
    assert funnel["confirm"]["reached"] == 1
    assert report["booking_conversion"] == pytest.approx(1 / 3, abs=1e-3)
    assert report["channels"]["sms"]["started"] == 3


async def test_outbound_start_on_voice_places_a_call_with_machine_detection(
    client: AsyncTestClient[Litestar], fake_twilio: FakeTwilio,
) -> None:
    """Voice starts by calling (#20): the Calls API with answering machine detection; the flow runs
    when the call is answered (tests/channels/test_voice_guards.py follows the call)."""
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    body = {"contact": CONTACT, "flow": "missed_call_textback"}
    for channel in ("voice", "twilio_voice"):
        started = await client.post("/api/conversations", json={**body, "channel": channel}, headers=auth)
        assert started.status_code == 201, started.text
        assert started.json()["channel"] == "twilio_voice"
    assert [c["To"] for c in fake_twilio.calls] == [CONTACT, CONTACT]
    assert all(c["MachineDetection"] == "DetectMessageEnd" for c in fake_twilio.calls)
    assert (await admin_get(client, "/api/conversations", contact=CONTACT)) == []  # nothing runs until answered
    missing = await client.post("/api/conversations", json={**body, "flow": "no_such_flow", "channel": "voice"},
                                headers=auth)
    assert missing.status_code == 404 and len(fake_twilio.calls) == 2  # no call for a flow that is not loaded
    started = await client.post("/api/conversations", json={**body, "channel": "sms"}, headers=auth)
    assert started.status_code == 201, started.text
