"""Flows directory reload: an edit is a new revision without a restart; an invalid edit is
rejected and logged while the old revision keeps serving."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from orchestrator.engine.turn import Engine
from orchestrator.model import Event
from orchestrator.plugins.connectors import ConnectorRegistry
from orchestrator.runtime.catalog import FlowCatalog
from orchestrator.runtime.reloader import FlowWatcher
from orchestrator.stores.memory import MemoryStore

FLOW = """\
flow: hello
title: Hello
start: greet
states:
  greet:
    ask: "{greeting}, your name?"
    input: text
    save: name
    next: bye
  bye:
    say: "Bye {{{{ name }}}}"
    end: done
"""


def write(path: Path, text: str, bump: float) -> None:
    path.write_text(text)
    st = path.stat()
    os.utime(path, (st.st_atime, st.st_mtime + bump))  # a distinct mtime even on coarse clocks


@pytest.fixture
async def catalog(tmp_path: Path) -> FlowCatalog:
    write(tmp_path / "hello.yaml", FLOW.format(greeting="Hi"), 0)
    cat = FlowCatalog(MemoryStore(), ConnectorRegistry(), flows_dir=tmp_path)
    assert await cat.reload() == {}
    return cat


async def test_an_edit_becomes_a_new_revision_and_running_conversations_keep_theirs(
    catalog: FlowCatalog, tmp_path: Path
) -> None:
    watcher = FlowWatcher(catalog, interval_seconds=0.01)
    assert await watcher.check() is None  # nothing changed
    r1 = await catalog.latest("hello")
    engine1 = Engine(r1, ConnectorRegistry())
    running = (await engine1.turn(engine1.new_session("b:c", business="b", contact="c", channel="sms", now=0),
                                  Event(kind="start", channel="sms"), 0)).session
    write(tmp_path / "hello.yaml", FLOW.format(greeting="Hello there"), 5)
    assert await watcher.check() == {}
    r2 = await catalog.latest("hello")
    assert r2.revision != r1.revision and watcher.reloads == 1
    assert await catalog.store.list_revisions("hello") == [r1.revision, r2.revision]
    # the running conversation continues on revision 1 (pinned by its session)
    pinned = await catalog.for_revision(running.revision)
    assert pinned.revision == r1.revision
    new = Engine(r2, ConnectorRegistry())
    first = await new.turn(new.new_session("b:d", business="b", contact="d", channel="sms", now=0),
                           Event(kind="start", channel="sms"), 0)
    assert first.messages[0].text == "Hello there, your name?"


async def test_an_invalid_edit_is_rejected_and_logged(
    catalog: FlowCatalog, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    watcher = FlowWatcher(catalog, interval_seconds=0.01)
    before = (await catalog.latest("hello")).revision
    write(tmp_path / "hello.yaml", FLOW.format(greeting="Hi").replace("next: bye", "next: nowhere"), 5)
    with caplog.at_level(logging.ERROR, logger="orchestrator.runtime.reloader"):
        problems = await watcher.check()
    assert problems and "nowhere" in str(next(iter(problems.values())))
    assert "rejected; the previous revision keeps running" in caplog.text and "hello.yaml:" in caplog.text
    assert (await catalog.latest("hello")).revision == before
    # fixing the file publishes the fix
    write(tmp_path / "hello.yaml", FLOW.format(greeting="Fixed"), 10)
    assert await watcher.check() == {}
    assert (await catalog.latest("hello")).revision != before


async def test_a_new_file_adds_a_flow(catalog: FlowCatalog, tmp_path: Path) -> None:
    watcher = FlowWatcher(catalog, interval_seconds=0.01)
    write(tmp_path / "other.yaml", FLOW.format(greeting="Yo").replace("flow: hello", "flow: other"), 0)
    assert await watcher.check() == {}
    assert catalog.flow_ids() == ["hello", "other"]
