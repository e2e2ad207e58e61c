"""A rolling upgrade: the previous release's code and this one serve one private Redis side by
side (docs/ARCHITECTURE.md, "Stored formats"). Turns go alternately to each process and every
delivery is sent again to the other one: nothing is lost or done twice, a duplicate gets the
first copy's answer byte for byte, and each outbox message is sent once.

The previous release is checked out with `git archive` (PREVIOUS_RELEASE: bump it at each
release); without the repository's history the test is skipped, saying so.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import redis
from fakes.graph import FakeGraph
from fakes.twilio import FakeTwilio
from faultkit import (
    ECHO_NUMBER,
    PYTHON,
    ROOT,
    Cluster,
    RedisServer,
    ServerProcess,
    decode_session,
    session_key,
    signed_sms,
    signed_whatsapp,
)

from orchestrator.model import TranscriptEntry
from orchestrator.stores.codecs import parse_session_value, unpack_turn

pytestmark = [pytest.mark.fault, pytest.mark.timeout(120)]
PREVIOUS_RELEASE = "41b83cd"  # the last release: the code a rolling upgrade runs beside this one
WA_PHONE_ID = "106540352242922"
NUDGE_NUMBER = "+15555550166"  # routed to nudge: a 1 s no-reply timer, one reminder
NUDGE_FLOW = """\
flow: nudge
start: a
settings: {no_reply_timeout: 1s, max_retries: 1}
states:
  a:
    ask: "What's your name?"
    input: name
    save: who
    next: b
    on: {fail: b}
  b:
    say: "Thanks"
    end: done
"""
ROUTES = f"{ECHO_NUMBER}=echo_loop,{NUDGE_NUMBER}=nudge"


def previous_release(into: Path) -> Path:
    """The previous release's tree in `into`, or skip when this checkout has no such history."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed: cannot check out the previous release to run beside this one")
    known = subprocess.run(["git", "-C", str(ROOT), "cat-file", "-e", f"{PREVIOUS_RELEASE}^{{commit}}"],
                           capture_output=True)
    if known.returncode != 0:
        pytest.skip(f"commit {PREVIOUS_RELEASE} (the previous release) is not in this checkout's history "
                    "(a shallow clone?): fetch it (git fetch --unshallow) to run the rolling-upgrade test")
    archive = into / "previous.tar"
    subprocess.run(["git", "-C", str(ROOT), "archive", "-o", str(archive), PREVIOUS_RELEASE], check=True)
    tree = into / "previous"
    with tarfile.open(archive) as tar:
        tar.extractall(tree, filter="data")
    return tree


@pytest.fixture(scope="module")
def old_and_new(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, ServerProcess, ServerProcess]]:
    work = tmp_path_factory.mktemp("upgrade")
    tree = previous_release(work)
    with RedisServer() as rs, FakeGraph() as graph, FakeTwilio() as twilio:
        c = Cluster(rs, graph, twilio, work)
        (c.flows / "nudge.yaml").write_text(NUDGE_FLOW)
        try:
            new = c.spawn(ORCHESTRATOR_ROUTES=ROUTES)
            env = c.env(ORCHESTRATOR_ROUTES=ROUTES)
            # the old tree's packages win over the installed (current) ones: it runs from its folder
            where = subprocess.run([PYTHON, "-c", "import orchestrator, channels; print(orchestrator.__file__)"],
                                   cwd=tree, env=env, capture_output=True, text=True, check=True).stdout
            assert where.startswith(str(tree)), where
            # the previous release has its own layout (flat modules)
            old = ServerProcess(env, cwd=tree, app="orchestrator.server:create_app").start()
            c.servers.append(old)
            yield c, old, new
        finally:
            c.close()


def post(server: ServerProcess, hook: tuple[str, bytes, dict[str, str]]) -> httpx.Response:
    path, body, headers = hook
    return httpx.post(server.url + path, content=body, headers=headers, timeout=15.0)


def heard(c: Cluster, sid: str) -> list[str]:
    raw = redis.Redis(port=c.redis.port).lrange(f"{c.prefix}:{{{sid}}}:t", 0, -1)
    entries = [msgspec.msgpack.decode(e, type=TranscriptEntry) for x in raw for e in unpack_turn(x)]
    return [e.text or "" for e in entries if e.dir == "in"]


def stored_session(c: Cluster, sid: str) -> Any:
    return decode_session(parse_session_value(redis.Redis(port=c.redis.port).get(session_key(c.prefix, sid)))[2])


def test_previous_release_beside_this_one_sms_turns_and_duplicates_agree(
    old_and_new: tuple[Cluster, ServerProcess, ServerProcess],
) -> None:
    c, old, new = old_and_new
    contact = "+15555552001"
    said = ["hi"] + [f"m{i}" for i in range(1, 10)]
    for i, text in enumerate(said):
        first, other = (old, new) if i % 2 == 0 else (new, old)
        hook = signed_sms(text, f"SM-upgrade-{i:02d}", contact, to=ECHO_NUMBER)
        answer = post(first, hook)
        again = post(other, hook)  # the provider's retry lands on the other process
        assert answer.status_code == again.status_code == 200, (i, answer.content, again.content)
        assert again.content == answer.content, (i, answer.content, again.content)
    sid = f"{ECHO_NUMBER}:{contact}"
    assert heard(c, sid) == said  # each turn once, none lost, in order
    assert stored_session(c, sid).turns == len(said)


def sent_texts(c: Cluster, user: str) -> list[str]:
    out = []
    for m in c.graph.sent():
        if m.get("to") != user:
            continue
        body = (m.get("text") or {}).get("body") or ((m.get("interactive") or {}).get("body") or {}).get("text")
        out.append(f"{m.get('type')}:{body}")
    return out


def test_previous_release_beside_this_one_whatsapp_outbox_sends_each_message_once(
    old_and_new: tuple[Cluster, ServerProcess, ServerProcess],
) -> None:
    c, old, new = old_and_new
    script = ["hi", "1", "Alex Morgan", "cleaning"]
    control, user = "16315552101", "16315552102"
    for i, text in enumerate(script):  # the same conversation on this release alone
        assert post(new, signed_whatsapp(text, f"wamid.upgrade-control-{i}", control)).status_code == 200
        time.sleep(0.3)
    for i, text in enumerate(script):
        first, other = (old, new) if i % 2 == 0 else (new, old)
        hook = signed_whatsapp(text, f"wamid.upgrade-{i}", user)
        assert post(first, hook).status_code == 200
        assert post(other, hook).status_code == 200
        time.sleep(0.3)
    deadline = time.monotonic() + 10
    while len(sent_texts(c, user)) < len(sent_texts(c, control)) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)  # both processes' senders had time to send a copy, if either would
    expected = [t.replace("control", "") for t in sent_texts(c, control)]
    assert sent_texts(c, user) == expected, json.dumps([sent_texts(c, user), expected], indent=1)
    assert heard(c, f"{WA_PHONE_ID}:+{user}") == script


def test_previous_release_beside_this_one_concurrent_turns_of_one_conversation_share_its_lock(
    old_and_new: tuple[Cluster, ServerProcess, ServerProcess],
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    c, old, new = old_and_new
    contact = "+15555552003"
    assert post(old, signed_sms("hi", "SM-lock-00", contact, to=ECHO_NUMBER)).status_code == 200
    said = [f"c{i}" for i in range(12)]

    def send(i: int) -> httpx.Response:  # half to each release, all at once: one lock between them
        return post(old if i % 2 else new, signed_sms(said[i], f"SM-lock-{i + 1:02d}", contact, to=ECHO_NUMBER))

    with ThreadPoolExecutor(len(said)) as pool:
        answers = list(pool.map(send, range(len(said))))
    assert [a.status_code for a in answers] == [200] * len(said), [a.content for a in answers]
    sid = f"{ECHO_NUMBER}:{contact}"
    got = heard(c, sid)
    assert got[0] == "hi" and sorted(got[1:]) == sorted(said), got  # each turn once, none lost
    assert stored_session(c, sid).turns == 1 + len(said)


def test_previous_release_beside_this_one_each_no_reply_timer_fires_once(
    old_and_new: tuple[Cluster, ServerProcess, ServerProcess],
) -> None:
    c, old, new = old_and_new
    contacts = {"+15555552011": old, "+15555552012": new}  # armed by each release, polled by both
    for i, (contact, server) in enumerate(contacts.items()):
        answer = post(server, signed_sms("hi", f"SM-timer-{i}", contact, to=NUDGE_NUMBER))
        assert answer.status_code == 200 and b"name" in answer.content, answer.content

    def reminders(contact: str) -> list[Any]:
        return [m for m in c.twilio.messages() if m.get("To") == [contact]]

    deadline = time.monotonic() + 10
    while any(not reminders(x) for x in contacts) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(3.0)  # the other release's poller, the second timeout: no second reminder
    for contact in contacts:
        assert len(reminders(contact)) == 1, (contact, reminders(contact))
        assert stored_session(c, f"{NUDGE_NUMBER}:{contact}").status == "ended"
