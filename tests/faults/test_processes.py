"""RELIABILITY.md rows that need real processes: two uvicorn servers on one private
redis-server, killed (-9), paused (SIGSTOP) or restarted under the tests' control.

Rows here: 3 (missing secret), 4 (20 copies across 2 processes), 5 / 6 (kill -9 after /
before the save), 7 (2 processes x 50 messages), 10 (Redis killed and restarted),
11 (Redis paused 3 s). The others run in-process in test_reliability.py.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import msgspec
import pytest
import redis
from faultkit import (
    ECHO_NUMBER,
    KILL_APP,
    ROOT,
    Cluster,
    ServerProcess,
    decode_session,
    run_cli,
    server_env,
    session_key,
    signed_sms,
    signed_whatsapp,
    twiml_messages,
)

from orchestrator.model import TranscriptEntry
from orchestrator.stores.codecs import parse_session_value, unpack_turn

pytestmark = [pytest.mark.fault, pytest.mark.timeout(90)]
Servers = tuple[Cluster, ServerProcess, ServerProcess]
CLINIC = "+15555550100"
WA_PHONE_ID = "106540352242922"


def session(c: Cluster, sid: str) -> Any:
    raw = redis.Redis(port=c.redis.port).get(session_key(c.prefix, sid))
    raw = parse_session_value(raw)[2] if raw else raw
    return decode_session(raw) if raw else None


def transcript(c: Cluster, sid: str) -> list[TranscriptEntry]:
    raw = redis.Redis(port=c.redis.port).lrange(f"{c.prefix}:{{{sid}}}:t", 0, -1)
    # one list element per turn (store_redis.pack_turn); unpack_turn also reads older elements
    return [msgspec.msgpack.decode(e, type=TranscriptEntry) for x in raw for e in unpack_turn(x)]


def post(server: ServerProcess, hook: tuple[str, bytes, dict[str, str]], timeout: float = 10.0) -> httpx.Response:
    path, body, headers = hook
    return httpx.post(server.url + path, content=body, headers=headers, timeout=timeout)


async def apost(client: httpx.AsyncClient, server: ServerProcess, hook: tuple[str, bytes, dict[str, str]]
                ) -> httpx.Response:
    path, body, headers = hook
    return await client.post(server.url + path, content=body, headers=headers, timeout=15.0)


def wait_until(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


def test_03_missing_secret_refuses_to_start_naming_the_key(cluster: Servers) -> None:
    c, _, _ = cluster
    env = c.env()
    del env["TWILIO_AUTH_TOKEN"]
    done = run_cli(["orchestrator.cli.main", "serve", "--port", "9"], env)
    assert done.returncode != 0
    assert "TWILIO_AUTH_TOKEN" in done.stderr + done.stdout
    env = c.env()
    env["WHATSAPP_APP_SECRET"] = ""
    done = run_cli(["orchestrator.cli.main", "serve", "--port", "9"], env)
    assert done.returncode != 0 and "WHATSAPP_APP_SECRET" in done.stderr + done.stdout
    # the uvicorn factory path (what `--workers N` runs) refuses too
    server = ServerProcess(env)
    with pytest.raises(RuntimeError, match="WHATSAPP_APP_SECRET"):
        server.start(timeout=20)


def test_04_same_webhook_20x_across_two_processes_one_advance_one_outbound(cluster: Servers) -> None:
    c, a, b = cluster
    control_user, user = "16315550401", "16315550402"
    assert post(a, signed_whatsapp("hi", "wamid.control0401", control_user)).status_code == 200
    wait_until(lambda: any(m["to"] == control_user for m in c.graph.sent()))
    time.sleep(0.5)
    one_delivery = [m for m in c.graph.sent() if m["to"] == control_user]
    hook = signed_whatsapp("hi", "wamid.same0402", user)

    async def storm() -> list[int]:
        async with httpx.AsyncClient() as client:
            replies = await asyncio.gather(*(apost(client, (a, b)[i % 2], hook) for i in range(20)))
        return [r.status_code for r in replies]

    assert asyncio.run(storm()) == [200] * 20
    wait_until(lambda: len([m for m in c.graph.sent() if m["to"] == user]) >= len(one_delivery))
    time.sleep(1.0)  # both processes' outbox senders had time to send a duplicate, if any
    sent = [m for m in c.graph.sent() if m["to"] == user]
    assert [m["type"] for m in sent] == [m["type"] for m in one_delivery]
    s = session(c, f"{WA_PHONE_ID}:+{user}")
    assert s.turns == 1 and s.state == "menu"


def test_05_killed_after_saving_the_retry_is_deduped(cluster: Servers) -> None:
    c, a, _ = cluster
    contact = "+15555550501"
    assert twiml_messages(post(a, signed_sms("hi", "SM0501a", contact)).content)
    faulty = c.spawn(KILL_APP, KILL_AT="after_save")
    second = signed_sms("1", "SM0501b", contact)
    with pytest.raises(httpx.HTTPError):  # the process dies before answering
        post(faulty, second)
    assert faulty.proc is not None and faulty.proc.wait(10) == 137
    saved = session(c, f"{CLINIC}:{contact}")
    assert (saved.turns, saved.state) == (2, "ask_name")  # the turn was saved before the crash
    retry = post(a, second)  # Twilio's retry lands on the other process
    assert retry.status_code == 200
    assert twiml_messages(retry.content) == ["Great! What's your name?"]
    after = session(c, f"{CLINIC}:{contact}")
    assert (after.turns, after.state, after.version) == (2, "ask_name", saved.version)


def test_06_killed_before_saving_the_retry_completes_the_turn(cluster: Servers) -> None:
    c, a, b = cluster
    contact, clean = "+15555550601", "+15555550602"
    assert post(a, signed_sms("hi", "SM0601a", contact)).status_code == 200
    faulty = c.spawn(KILL_APP, KILL_AT="before_save")
    second = signed_sms("1", "SM0601b", contact)
    with pytest.raises(httpx.HTTPError):
        post(faulty, second)
    assert faulty.proc is not None and faulty.proc.wait(10) == 137
    untouched = session(c, f"{CLINIC}:{contact}")
    assert (untouched.turns, untouched.state) == (1, "menu")  # nothing partial
    retry = post(b, second)  # waits out the dead holder's lock (2 s TTL), then runs the turn
    assert retry.status_code == 200
    assert twiml_messages(retry.content) == ["Great! What's your name?"]
    # the same two turns without a crash give the same state
    post(a, signed_sms("hi", "SM0602a", clean))
    post(b, signed_sms("1", "SM0602b", clean))
    crashed, reference = session(c, f"{CLINIC}:{contact}"), session(c, f"{CLINIC}:{clean}")
    for field in ("state", "vars", "turns", "status", "retries", "path"):
        assert getattr(crashed, field) == getattr(reference, field), field


def test_07_two_processes_x_50_messages_no_lost_update_order_kept(cluster: Servers) -> None:
    c, a, b = cluster
    contact = "+15555550701"

    async def stream(client: httpx.AsyncClient, server: ServerProcess, tag: str) -> list[int]:
        codes = []
        for i in range(50):  # each stream is sequential: its own order must be kept
            hook = signed_sms(f"{tag}-{i:02d}", f"SM07{tag}{i:02d}", contact, to=ECHO_NUMBER)
            codes.append((await apost(client, server, hook)).status_code)
        return codes

    async def both() -> list[list[int]]:
        async with httpx.AsyncClient() as client:
            return list(await asyncio.gather(stream(client, a, "a"), stream(client, b, "b")))

    codes = asyncio.run(both())
    assert codes == [[200] * 50, [200] * 50]
    s = session(c, f"{ECHO_NUMBER}:{contact}")
    assert s.turns == 100  # the first message starts the flow and counts as a turn too
    heard = [e.text for e in transcript(c, f"{ECHO_NUMBER}:{contact}") if e.dir == "in"]
    assert sorted(heard) == sorted([f"a-{i:02d}" for i in range(50)] + [f"b-{i:02d}" for i in range(50)])
    for tag in "ab":
        mine = [t for t in heard if t.startswith(tag)]
        assert mine == sorted(mine)


def hammer_during(c: Cluster, servers: list[ServerProcess], fault: Any, seconds: float
                  ) -> list[tuple[float, int, float]]:
    """SMS turns on 8 conversations from 8 tasks while `fault` runs; (sent at, status, seconds
    to answer) of each."""
    results: list[tuple[float, int, float]] = []

    async def worker(client: httpx.AsyncClient, k: int, stop: float) -> None:
        n = 0
        while time.monotonic() < stop:
            server = servers[(k + n) % len(servers)]
            text = "hi" if n == 0 else f"m{n}"
            hook = signed_sms(text, f"SM-{c.prefix}-{k}-{n}-{time.monotonic_ns()}", f"+1555555{k:04d}", to=ECHO_NUMBER)
            t = time.monotonic()
            try:
                code = (await apost(client, server, hook)).status_code
            except httpx.HTTPError:
                code = -1
            results.append((t, code, time.monotonic() - t))
            n += 1
            await asyncio.sleep(0.01)

    async def run() -> None:
        stop = time.monotonic() + seconds
        async with httpx.AsyncClient() as client:
            tasks = [asyncio.create_task(worker(client, k, stop)) for k in range(8)]
            await asyncio.sleep(0.5)
            await asyncio.to_thread(fault)
            await asyncio.gather(*tasks)

    asyncio.run(run())
    return results


def check_sessions_intact(c: Cluster) -> None:
    client = redis.Redis(port=c.redis.port)
    for key in client.scan_iter(match=f"{c.prefix}:*:s", count=1000):
        version, _, data = parse_session_value(client.get(key))
        s = decode_session(data)
        assert s.state in ("listen", "echo", "done") or s.flow == "dental_booking"
        assert version == s.version
        assert client.ttl(key) > 0


def test_10_redis_killed_then_restarted_503_while_down_intact_after(cluster: Servers) -> None:
    c, a, b = cluster
    marks: dict[str, float] = {}

    def fault() -> None:
        marks["down"] = time.monotonic()
        c.redis.kill()
        time.sleep(2.5)
        c.redis.start()
        marks["up"] = time.monotonic()

    results = hammer_during(c, [a, b], fault, seconds=6.0)
    codes = {code for _, code, _ in results}
    assert 500 not in codes and -1 not in codes, codes
    down = [(code, took) for t, code, took in results if marks["down"] + 0.05 < t < marks["up"] - 0.05]
    assert down and {code for code, _ in down} == {503}, down
    assert max(took for _, took in down) < 2.0, down  # 503 within 2 s
    assert all(code == 200 for t, code, _ in results if t > marks["up"] + 1.0)
    check_sessions_intact(c)
    # everything continues: a fresh conversation runs
    assert twiml_messages(post(a, signed_sms("hi", "SM1001", "+15555551001")).content)


def test_11_redis_paused_3s_503_well_inside_15s_nothing_partial(cluster: Servers) -> None:
    c, a, b = cluster
    marks: dict[str, float] = {}

    def fault() -> None:
        marks["stop"] = time.monotonic()
        c.redis.pause()
        time.sleep(3.0)
        c.redis.resume()
        marks["cont"] = time.monotonic()

    started = time.monotonic()
    results = hammer_during(c, [a, b], fault, seconds=6.0)
    assert time.monotonic() - started < 15
    codes = {code for _, code, _ in results}
    assert 500 not in codes and -1 not in codes, codes
    # requests in flight during the pause: answered (503, or 200 if they slipped through) fast
    during = [(code, took) for t, code, took in results if t + took > marks["stop"] + 0.1 and t < marks["cont"]]
    assert during and 503 in {code for code, _ in during}, during
    assert max(took for _, took in during) < 5.0, during  # well inside Twilio's 15 s
    assert all(code == 200 for t, code, _ in results if t > marks["cont"] + 1.0)
    check_sessions_intact(c)
    assert twiml_messages(post(b, signed_sms("hi", "SM1101", "+15555551101")).content)


def test_server_env_never_points_at_the_shared_redis(cluster: Servers) -> None:
    c, _, _ = cluster
    assert c.redis.port != 6379
    assert server_env(c.redis.url, ROOT / "flows")["ORCHESTRATOR_REDIS_URL"].endswith(f":{c.redis.port}/0")
