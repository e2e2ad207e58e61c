"""Redis faults the store must turn into consistent answers, against a private redis-server:
at maxmemory (and the other write refusals) a webhook is a 503 with nothing written, a STOP is
still recorded and /health says why; a commit left unanswered by a paused Redis is answered as
it was stored (its reply when it ran, a 503 only when it did not and never will); and values of
a newer stored format are refused cleanly (503, or left for a newer process), never misread.
Rolling upgrades against the previous release's code: test_rolling_upgrade.py.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import anyio
import msgspec
import pytest
import redis
from fakes.signing import sms_form, twilio_signature
from faultkit import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    CLINIC,
    ECHO_FLOW,
    ECHO_NUMBER,
    PUBLIC_URL,
    RedisServer,
    decode_session,
    session_key,
    twiml_messages,
)
from litestar import Litestar
from litestar.testing import AsyncTestClient
from redis.exceptions import ReadOnlyError, ResponseError

from orchestrator.model import Session, TranscriptEntry
from orchestrator.runtime.outbox import OutboxItem
from orchestrator.runtime.replies import StoredReply
from orchestrator.settings import AppSettings
from orchestrator.stores.codecs import delivery_tag, pack_turn, parse_session_value, session_value, unpack_turn
from orchestrator.stores.redis import write_refusal
from orchestrator.web.app import create_app

pytestmark = [pytest.mark.fault, pytest.mark.timeout(90)]
PREFIX = "sf"
CONTACT = "+15555550901"
SID = f"{ECHO_NUMBER}:{CONTACT}"


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    with RedisServer() as rs:
        yield rs


def settings_for(url: str, flows: Path, **extra: Any) -> AppSettings:
    return AppSettings(
        redis_url=url, key_prefix=PREFIX, flows_dir=str(flows), public_url=PUBLIC_URL, default_flow="echo_loop",
        timer_poll_seconds=0.05, twilio_account_sid=ACCOUNT_SID, twilio_auth_token=AUTH_TOKEN,
        twilio_from_number=CLINIC, twilio_api_base="http://127.0.0.1:9", lock_ttl_seconds=10.0, **extra,
    )


@pytest.fixture
async def app(private_redis: RedisServer, tmp_path: Path) -> AsyncIterator[AsyncTestClient[Litestar]]:
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "echo_loop.yaml").write_text(ECHO_FLOW)
    async with AsyncTestClient(create_app(settings_for(private_redis.url, flows))) as client:
        yield client


async def on_app_loop(client: AsyncTestClient[Litestar], fn: Callable[[], Awaitable[int]]) -> int:
    """Run a runtime coroutine on the loop the app's lifespan runs on (the test client's portal):
    its Redis clients belong to that loop."""
    return await anyio.to_thread.run_sync(client.blocking_portal.call, fn)


def sms(client: AsyncTestClient[Litestar], text: str, mid: str, sender: str = CONTACT) -> Any:
    form = sms_form(text, sid=mid, sender=sender, to=ECHO_NUMBER)
    path = "/webhooks/twilio/sms"
    headers = {"X-Twilio-Signature": twilio_signature(AUTH_TOKEN, PUBLIC_URL + path, form),
               "Content-Type": "application/x-www-form-urlencoded"}
    return client.post(path, content=urlencode(form).encode(), headers=headers)


def snapshot(r: redis.Redis) -> dict[bytes, bytes | None]:
    """Every key of the store but the /health probe, with its serialized value."""
    return {k: r.dump(k) for k in r.scan_iter(match=f"{PREFIX}:*", count=1000) if k != f"{PREFIX}:health".encode()}


def fill_to_maxmemory(r: redis.Redis) -> int:
    r.config_set("maxmemory", "5mb")
    r.config_set("maxmemory-policy", "noeviction")
    n = 0
    with pytest.raises(ResponseError, match="maxmemory"):
        while True:
            r.set(f"junk:{n}", b"x" * 20_000)
            n += 1
    return n


async def eventually(check: Any, timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not within the time"
        await asyncio.sleep(0.01)


def heard(r: redis.Redis, sid: str = SID) -> list[str]:
    raw = r.lrange(f"{PREFIX}:{{{sid}}}:t", 0, -1)
    entries = [msgspec.msgpack.decode(e, type=TranscriptEntry) for x in raw for e in unpack_turn(x)]
    return [e.text or "" for e in entries if e.dir == "in"]


# ---- Redis refuses writes -----------------------------------------------------------------------


async def test_redis_at_maxmemory_webhooks_503_nothing_written_stop_recorded_health_says_why(
    app: AsyncTestClient[Litestar], private_redis: RedisServer,
) -> None:
    r = redis.Redis(port=private_redis.port)
    first = await sms(app, "hi", "SM-oom-0")
    assert first.status_code == 200 and twiml_messages(first.content) == ["Say something."]
    assert (await app.get("/health")).status_code == 200
    junk = fill_to_maxmemory(r)
    before = snapshot(r)

    turns = [await sms(app, f"m{i}", f"SM-oom-{i}") for i in range(1, 9)]
    fresh = [await sms(app, "hi", f"SM-oom-new-{i}", sender=f"+1555555{i:04d}") for i in range(8)]
    for reply in turns + fresh:  # the provider retries a 503; a 200 "Sorry" would lose the message
        assert reply.status_code == 503, (reply.status_code, reply.content)
        assert reply.headers["retry-after"]
    assert snapshot(r) == before  # nothing half-written (nor whole)

    duplicate = await sms(app, "hi", "SM-oom-0")  # reads still work: the first copy's reply again
    assert duplicate.status_code == 200 and duplicate.content == first.content

    health = await app.get("/health")
    assert health.status_code == 503
    assert health.json()["store"] == "StoreWriteRefused" and health.json()["reason"] == "out_of_memory"

    stop = await sms(app, "STOP", "SM-oom-stop")  # an opt-out is recorded even so
    assert stop.status_code == 200 and "unsubscribed" in twiml_messages(stop.content)[0]
    assert r.exists(f"{PREFIX}:optout:{CONTACT}")

    r.delete(*[f"junk:{n}" for n in range(junk)])
    assert (await app.get("/health")).status_code == 200
    # the providers' retries of the refused turns now go through, each once
    await sms(app, "START", "SM-oom-start")
    for i in range(1, 9):
        again = await sms(app, f"m{i}", f"SM-oom-{i}")
        assert again.status_code == 200, again.content
    assert heard(r) == ["hi"] + [f"m{i}" for i in range(1, 9)]


@pytest.mark.parametrize(("message", "reason"), [
    # as Redis 7 words them, from a script's refused write and from a plain command
    ("OOM command not allowed when used memory > 'maxmemory'. script: 9405b0, on @user_script:1.", "out_of_memory"),
    ("READONLY You can't write against a read only replica. script: 9405b0, on @user_script:1.", "read_only"),
    ("MISCONF Redis is configured to save RDB snapshots, but it's currently unable to persist to disk.",
     "disk_error"),
    ("NOREPLICAS Not enough good replicas to write.", "no_replicas"),
    ("ERR Error running script: @user_script:12: Script attempted to access nonexistent global variable", None),
])
def test_write_refusals_are_recognised_from_their_error_replies(message: str, reason: str | None) -> None:
    assert write_refusal(ResponseError(message)) == reason
    assert write_refusal(ReadOnlyError("You can't write against a read only replica.")) == "read_only"


async def test_read_only_replica_webhooks_503_and_health_says_why(
    app: AsyncTestClient[Litestar], private_redis: RedisServer,
) -> None:
    with RedisServer() as primary:
        redis.Redis(port=private_redis.port).replicaof("127.0.0.1", primary.port)
        reply = await sms(app, "hi", "SM-ro-1")
        assert reply.status_code == 503
        health = await app.get("/health")
        assert health.status_code == 503 and health.json()["reason"] == "read_only"
        redis.Redis(port=private_redis.port).replicaof("NO", "ONE")
    assert (await sms(app, "hi", "SM-ro-1")).status_code == 200


# ---- a commit left unanswered by a paused Redis -------------------------------------------------


def pause_at_commit(app: AsyncTestClient[Litestar], server: RedisServer, seconds: float) -> None:
    """SIGSTOP Redis just before the next commit is sent, SIGCONT `seconds` later."""
    store = app.app.state.runtime.store
    commit = store.commit

    async def paused_commit(*args: Any, **kwargs: Any) -> Any:
        store.commit = commit
        server.pause()
        threading.Timer(seconds, server.resume).start()
        return await commit(*args, **kwargs)

    store.commit = paused_commit


@pytest.mark.parametrize("pause", [2.5, 6.5])
async def test_redis_paused_at_commit_answer_matches_what_was_stored(
    app: AsyncTestClient[Litestar], private_redis: RedisServer, pause: float,
) -> None:
    """2.5 s: inside the commit's settle time (4 s at the 1 s Redis timeout): the answer is the
    stored reply, or a 503 with the commit fenced off. 6.5 s: past it: a 503, and the commit,
    read by Redis when it resumes, is refused (its deadline passed)."""
    r = redis.Redis(port=private_redis.port)
    assert (await sms(app, "hi", "SM-pause-0")).status_code == 200
    pause_at_commit(app, private_redis, pause)
    started = time.monotonic()
    reply = await sms(app, "one", "SM-pause-1")
    took = time.monotonic() - started
    assert took < 6.0  # well inside Twilio's 15 s
    if pause > 4.0:
        assert reply.status_code == 503
    await asyncio.sleep(max(0.0, pause - took) + 0.5)  # Redis resumed and read what was sent
    applied = "one" in heard(r)
    if reply.status_code == 200:
        assert applied and twiml_messages(reply.content) == ["Heard one.\nSay something."]
    else:
        assert reply.status_code == 503 and not applied, "a 503 for a turn that was saved: Twilio will not retry"
    # the conversation goes on: the provider's retry (or the next message) is handled once
    again = await sms(app, "one", "SM-pause-1")
    assert again.status_code == 200 and twiml_messages(again.content) == ["Heard one.\nSay something."]
    assert heard(r) == ["hi", "one"]


# ---- values of a newer stored format --------------------------------------------------------------


async def test_newer_stored_formats_are_refused_cleanly_and_left_alone(
    app: AsyncTestClient[Litestar], private_redis: RedisServer,
) -> None:
    r = redis.Redis(port=private_redis.port)
    assert (await sms(app, "hi", "SM-fmt-0")).status_code == 200
    key = session_key(PREFIX, SID)
    version, turns, data = parse_session_value(r.get(key))
    newer_session = msgspec.structs.replace(decode_session(data), fmt=2)
    newer_values = [
        session_value(version, msgspec.msgpack.encode(newer_session), None, SID),  # a newer Session map
        b"%d,%s," % (version, turns.encode()) + b"\xc1\x07" + data,  # a newer session encoding mark
        b"v2|%d|" % version + data,  # a newer layout of the value
    ]
    for value in newer_values:
        r.set(key, value)
        reply = await sms(app, "one", "SM-fmt-1")
        assert reply.status_code == 503, value[:12]
        assert r.get(key) == value and not r.exists(f"{PREFIX}:{{{SID}}}:l")  # left as it was, lock released
    r.set(key, session_value(version, data, None, SID))
    assert (await sms(app, "one", "SM-fmt-1")).status_code == 200

    # a duplicate whose stored turn (or its reply) is in a newer format: 503, not a second advance
    transcript = f"{PREFIX}:{{{SID}}}:t"
    last = r.lindex(transcript, -1)
    assert r.lindex(transcript, -2) == delivery_tag("SM-fmt-1")
    for element in (b"\xc1\x09" + last[2:],
                    pack_turn([], msgspec.msgpack.encode(StoredReply(fmt=2)))):
        r.lset(transcript, -1, element)
        assert (await sms(app, "one", "SM-fmt-1")).status_code == 503
    assert heard(r) == ["hi"]  # the last element was overwritten above: its "one" is gone, none added


async def test_timer_and_outbox_item_of_a_newer_format_are_left_for_a_newer_process(
    app: AsyncTestClient[Litestar], private_redis: RedisServer,
) -> None:
    r = redis.Redis(port=private_redis.port)
    runtime = app.app.state.runtime
    sid = f"{ECHO_NUMBER}:+15555550902"
    newer = Session(id=sid, flow="echo_loop", revision="x", state="listen", business=ECHO_NUMBER,
                    contact="+15555550902", channel="sms", turns=3, version=3, fmt=2)
    r.set(session_key(PREFIX, sid), session_value(3, msgspec.msgpack.encode(newer), f"{sid}|3", sid))
    r.zadd(f"{PREFIX}:timers", {f"{sid}|3": 1.0})
    assert await on_app_loop(app, runtime.fire_due_timers) == 0
    # put back, not lost (the app's own poller may hold it for a moment: it leaves it too)
    await eventually(lambda: r.zscore(f"{PREFIX}:timers", f"{sid}|3") is not None)
    assert r.get(session_key(PREFIX, sid)) == session_value(3, msgspec.msgpack.encode(newer), f"{sid}|3", sid)

    item = OutboxItem(id=f"{sid}|abc", adapter="twilio_sms", business=ECHO_NUMBER, contact="+15555550902",
                      messages=[], fmt=2)
    r.set(f"{PREFIX}:{{{sid}}}:o:abc", msgspec.msgpack.encode(item), ex=600)
    r.zadd(f"{PREFIX}:outbox", {item.id: 1.0})
    assert await on_app_loop(app, runtime.send_outbox) == 0
    assert r.exists(f"{PREFIX}:{{{sid}}}:o:abc") and r.zscore(f"{PREFIX}:outbox", item.id) is not None
